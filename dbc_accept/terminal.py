"""The run's story in the terminal: each finding once, fixes grouped, one verdict line.

By default a failed check is not printed again in pytest's FAILURES and short summary: its
finding appears once, under its fix, in "what to fix" (crashes and errors keep pytest's
sections). ``-v``, ``-r`` with ``A``/``a``/``p`` or an explicit ``--tb`` keep pytest's full
detail. The last line counts PASS, FAIL, WARN and SKIP and ends with the node's verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest

from dbc_accept.messages import current, set_lang, t
from dbc_accept.settings import settings
from dbc_accept.story import FixGroup, Tally, group_findings, short_id
from dbc_accept.verdict import Finding

TALLY_KEY = pytest.StashKey[Tally]()
LANG_BEFORE_KEY = pytest.StashKey[str]()  # put back after the run (runs in one process)


def full_detail(config: pytest.Config) -> bool:
    """Whether the user asked for pytest's own detail (-v, -rA/-ra/-rp, --tb=...)."""
    chars = str(getattr(config.option, "reportchars", "") or "")
    return (config.get_verbosity() > 0 or any(c in chars for c in "Aap")
            or str(getattr(config.option, "tbstyle", "auto")) != "auto")


def told_by_finding(report: Any) -> bool:
    """A failed check: its finding (observed, expected, fix) is in "what to fix"."""
    return report.when == "call" and any(
        k == "dbc_findings" and isinstance(v, list) and any(f.get("level") == "fail" for f in v)
        for k, v in report.user_properties)


def told_once(report: Any) -> bool:
    """A failure already told in full above: a finding, or a fact that could not be read."""
    return told_by_finding(report) or (
        report.when == "call" and isinstance(getattr(report, "longrepr", None), str))


def _filtered(tr: Any, method: Callable[[], None],
              told: Callable[[Any], bool]) -> Callable[[], None]:
    """``method`` run without the failures ``told`` says were told elsewhere."""

    def run() -> None:
        failed = tr.stats.get("failed", [])
        if failed:
            tr.stats["failed"] = [r for r in failed if not told(r)]
        try:
            method()
        finally:
            if failed:
                tr.stats["failed"] = failed

    return run


def _with_verdict(tr: Any, tally: Tally, method: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        method()
        if tally.total and tr.verbosity >= -1:
            tr.write_line(tally.line(), **{tally.color(): True, "bold": True})

    return run


class _Story:
    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not any(k == NODE_CHECK for k, _ in report.user_properties):
            return  # not a check of a node (a selftest): no part of the verdict
        warned = any(k == "dbc_findings" and isinstance(v, list)
                     and any(f.get("level") == "warn" for f in v)
                     for k, v in report.user_properties)
        self.tally.add(report.nodeid, report.when, report.outcome, warned)


NODE_CHECK = "dbc_node_check"
NODE_MARKS = ("host", "vm", "unit", "integration", "benchmark")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    fixtures = getattr(item, "fixturenames", ())
    if ("node" in fixtures or "guest" in fixtures
            or any(item.get_closest_marker(m) for m in NODE_MARKS)):
        report.user_properties.append((NODE_CHECK, True))
    return report


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[LANG_BEFORE_KEY] = current()
    set_lang(settings(config).lang)
    tally = config.stash[TALLY_KEY] = Tally()
    config.pluginmanager.register(_Story(tally), "dbc-accept-story")
    tr = config.pluginmanager.getplugin("terminalreporter")
    if tr is None:
        return
    if not full_detail(config):
        tr.summary_failures = _filtered(tr, tr.summary_failures, told_by_finding)
        tr.short_test_summary = _filtered(tr, tr.short_test_summary, told_once)
    tr.summary_stats = _with_verdict(tr, tally, tr.summary_stats)


def pytest_unconfigure(config: pytest.Config) -> None:
    if LANG_BEFORE_KEY in config.stash:
        set_lang(config.stash[LANG_BEFORE_KEY])


def write_fixes(tr: Any, found: list[tuple[str, Finding]]) -> None:
    """The "what to fix" section: one numbered fix each, the findings it covers below it."""
    groups = group_findings(found)
    if not groups:
        return
    nodes = len({f.node for _, f in found})
    tr.section(t("what_to_fix"), sep="=")
    width = len(str(len(groups)))
    for n, group in enumerate(groups, 1):
        _write_group(tr, n, width, group, nodes)


def _write_group(tr: Any, n: int, width: int, group: FixGroup, nodes: int) -> None:
    mark = {"red": True} if group.level == "fail" else {"yellow": True}
    tr._tw.write(f"{n:>{width}}. {t(group.level.upper())} ", bold=True, **mark)
    tr._tw.line(f"{t('fix')}: {group.fix_text()}")
    pad = " " * (width + 2)
    for f, nodeids in group.alike():
        tests = ", ".join(short_id(nodeid, f.node, nodes) if i == 0 else
                          short_id(nodeid, f.node, nodes).split("::")[-1]
                          for i, nodeid in enumerate(nodeids))
        tr._tw.line(f"{pad}{t(f.level.upper())} {tests} [{f.check}] "
                    f"{t('observed')}: {f.observed}; {t('expected')}: {f.expected}")
