"""The three outcomes of a check: PASS, FAIL and WARN, each FAIL/WARN with its fix.

Tests call :func:`check` (or :func:`fail`/:func:`warn`) with what they saw and what they
expected; the fix comes from :mod:`dbc_accept.remedies` by check id, so every message
names it. A fact that could not be gathered raises :class:`FactError`, which the plugin
reports as a failure of the check concerned ("could not read X: why"), never as an
internal error.
"""

from __future__ import annotations

import contextvars
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NoReturn

from dbc_accept.messages import t
from dbc_accept.remedies import localized, remedy_for

Level = Literal["fail", "warn"]


@dataclass(frozen=True)
class Finding:
    """One thing a check found wrong: what was seen, what was expected, what to do."""

    check: str
    level: Level
    observed: str
    expected: str
    fix: str
    node: str = ""

    def render(self) -> str:
        """The finding as the reader's language (--lang) has it; ids and values as they are."""
        head = t("WARN" if self.level == "warn" else "FAIL")
        where = f" {t('on_node')} {self.node}" if self.node else ""
        names = [t(k) for k in ("observed", "expected", "fix")]
        width = max(len(n) for n in names) + 1
        observed, expected, fix = (f"{n}:".ljust(width) for n in names)
        return (
            f"{head} [{self.check}]{where}\n"
            f"  {observed} {self.observed}\n"
            f"  {expected} {self.expected}\n"
            f"  {fix} {localized(self.check, self.fix)}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CheckFailed(AssertionError):
    """A check failed; carries its :class:`Finding`."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.render())
        self.finding = finding


class FactError(Exception):
    """A fact could not be gathered: ``could not read/parse <source>: <why>``."""

    def __init__(self, source: str, why: str, verb: str = "read") -> None:
        super().__init__(f"could not {verb} {source}: {why}")
        self.source = source
        self.why = why


@dataclass
class ItemRecord:
    """What the checks of the running test found; read by the plugin's report hooks."""

    node: str = ""
    findings: list[Finding] = field(default_factory=list)
    observed: dict[str, Any] = field(default_factory=dict)


_current: contextvars.ContextVar[ItemRecord | None] = contextvars.ContextVar(
    "dbc_accept_item", default=None
)


def begin_item(record: ItemRecord) -> contextvars.Token[ItemRecord | None]:
    """Called by the plugin around each test call."""
    return _current.set(record)


def end_item(token: contextvars.Token[ItemRecord | None]) -> None:
    _current.reset(token)


def _record() -> ItemRecord:
    rec = _current.get()
    if rec is None:  # used outside a test (a helper script): keep the data, report nothing
        rec = ItemRecord()
        _current.set(rec)
    return rec


def observe(**values: Any) -> None:
    """Attach observed values (figures, versions) to the running test's report."""
    _record().observed.update(values)


def _finding(check: str, level: Level, observed: object, expected: object,
             fix: str | None) -> Finding:
    return Finding(
        check=check, level=level, observed=str(observed), expected=str(expected),
        fix=fix or remedy_for(check, "en"), node=_record().node,
    )


def fail(check: str, observed: object, expected: object, fix: str | None = None) -> NoReturn:
    """Fail the running test with observed / expected / fix."""
    __tracebackhide__ = True
    finding = _finding(check, "fail", observed, expected, fix)
    _record().findings.append(finding)
    raise CheckFailed(finding)


def warn(check: str, observed: object, expected: object, fix: str | None = None) -> None:
    """Record a WARN: the test passes, the warning shows in the summary and report."""
    _record().findings.append(_finding(check, "warn", observed, expected, fix))


def check(ok: bool, check: str, observed: object, expected: object,
          fix: str | None = None, level: Level = "fail") -> None:
    """Fail (or warn) unless ``ok``."""
    __tracebackhide__ = True
    if ok:
        return
    if level == "warn":
        warn(check, observed, expected, fix)
    else:
        fail(check, observed, expected, fix)
