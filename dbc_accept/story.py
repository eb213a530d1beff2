"""The run as one story: outcomes counted, a verdict, and findings grouped by their fix.

Pure functions shared by the terminal summary and the report. A group is one fix and the
findings it covers; groups are ordered root causes first (the owners of the prerequisites
in dbc_accept.prereqs), then FAIL before WARN, then by install-guide step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dbc_accept.guide import step_number
from dbc_accept.messages import t
from dbc_accept.prereqs import ROOT_CHECKS
from dbc_accept.remedies import REMEDIES, localized
from dbc_accept.verdict import Finding

OUTCOMES = ("PASS", "FAIL", "WARN", "SKIP")


@dataclass
class Tally:
    """The outcome of each test: PASS, FAIL (errors too), WARN or SKIP."""

    outcomes: dict[str, str] = field(default_factory=dict)

    def add(self, nodeid: str, when: str, outcome: str, warned: bool) -> None:
        if outcome == "failed":
            self.outcomes[nodeid] = "FAIL"
        elif self.outcomes.get(nodeid) == "FAIL":
            return
        elif outcome == "skipped":
            self.outcomes[nodeid] = "SKIP"
        elif when == "call":
            self.outcomes[nodeid] = "WARN" if warned else "PASS"

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes.values() if o == outcome)

    @property
    def total(self) -> int:
        return len(self.outcomes)

    def verdict(self) -> str:
        if self.count("FAIL") or not self.count("PASS") + self.count("WARN"):
            return "NOT READY"
        return "READY WITH WARNINGS" if self.count("WARN") else "READY"

    def color(self) -> str:
        return {"READY": "green", "READY WITH WARNINGS": "yellow"}.get(self.verdict(), "red")

    def counts_text(self) -> str:
        return ", ".join(f"{self.count(o)} {t(o)}" for o in OUTCOMES)

    def line(self) -> str:
        return f"dbc-accept: {self.counts_text()}: {t(self.verdict())}"


@dataclass
class FixGroup:
    fix: str
    level: str  # "fail" when any finding it covers failed, else "warn"
    findings: list[tuple[str, Finding]] = field(default_factory=list)

    def alike(self) -> list[tuple[Finding, list[str]]]:
        """Findings that say the same (check, level, observed, expected), with their tests."""
        out: dict[tuple[str, str, str, str], tuple[Finding, list[str]]] = {}
        for nodeid, f in self.findings:
            key = (f.check, f.level, f.observed, f.expected)
            out.setdefault(key, (f, []))[1].append(nodeid)
        return list(out.values())

    def fix_text(self) -> str:
        """The fix in the reader's language: translated where it is a check's own remedy."""
        for check in self.checks:
            text = localized(check, self.fix)
            if text != self.fix:
                return text
        return self.fix

    @property
    def checks(self) -> list[str]:
        return sorted({f.check for _, f in self.findings})


def _rank(group: FixGroup, first: int) -> tuple[int, int, int, int]:
    roots = [ROOT_CHECKS.index(c) for c in group.checks if c in ROOT_CHECKS]
    steps = [step_number(REMEDIES[c].step) for c in group.checks if c in REMEDIES]
    known = [s for s in steps if s is not None]
    return (min(roots) if roots else len(ROOT_CHECKS), 0 if group.level == "fail" else 1,
            min(known) if known else 99, first)


def group_findings(found: list[tuple[str, Finding]]) -> list[FixGroup]:
    """One group per distinct fix, each finding once, root causes first."""
    groups: dict[str, FixGroup] = {}
    seen: set[tuple[str, str, str, str]] = set()
    for nodeid, f in found:
        key = (nodeid, f.check, f.observed, f.fix)
        if key in seen:
            continue
        seen.add(key)
        group = groups.setdefault(f.fix, FixGroup(f.fix, f.level))
        if f.level == "fail":
            group.level = "fail"
        group.findings.append((nodeid, f))
    order = list(groups)
    return sorted(groups.values(), key=lambda g: _rank(g, order.index(g.fix)))


def short_id(nodeid: str, node: str = "", nodes: int = 1) -> str:
    """``tests_host/test_os.py::test_x[local-a]`` as ``test_os.py::test_x[a]``.

    The node's name is left out of the parameters when the run has one node.
    """
    path, _, name = nodeid.partition("::")
    path = path.rsplit("/", 1)[-1]
    head, sep, param = name.partition("[")
    if sep and node and nodes <= 1:
        param = param[:-1]
        if param == node:
            param = ""
        elif param.startswith(node + "-"):
            param = param[len(node) + 1:]
        name = f"{head}[{param}]" if param else head
    return f"{path}::{name}" if name else path
