"""The run's results as the controller collects them from test reports (xdist or not)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

from dbc_accept.bench.output import BenchRow, row_of

MAX_TEXT = 4000


@dataclass
class TestResult:
    """One test: outcome, what its checks saw, expected and advise, its attachments."""

    __test__ = False  # not a test class

    id: str
    node: str = ""  # the node a host test checked ("" for the others)
    outcome: str = "passed"  # passed | warned | failed | error | skipped | xfailed | xpassed
    duration: float = 0.0
    observed: str = ""
    expected: str = ""
    fix: str = ""
    message: str = ""  # the failure text or the skip reason
    values: dict[str, Any] = field(default_factory=dict)  # observe(...) of the test
    findings: list[dict[str, Any]] = field(default_factory=list)
    bench: BenchRow | None = None  # a benchmark test's row
    attachments: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["attachments"] = [name for name, _ in self.attachments]
        return d


def props(report: pytest.TestReport) -> dict[str, Any]:
    """The report's user properties as a dict (the last value of a name wins)."""
    return {k: v for k, v in report.user_properties}


def _message(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        text = str(report.longrepr[2])
        return text[len("Skipped: "):] if text.startswith("Skipped: ") else text
    text = report.longreprtext or ""
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "\n[...]"


def _outcome(report: pytest.TestReport, warned: bool) -> str:
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.failed:
        return "failed" if report.when == "call" else "error"
    if report.skipped:
        return "skipped"
    return "warned" if warned else "passed"


def update(result: TestResult, report: pytest.TestReport) -> None:
    """Fold one phase's report (setup, call, teardown) into the test's result."""
    result.duration += float(report.duration or 0.0)
    p = props(report)
    result.node = str(p.get("dbc_node", result.node))
    result.attachments.extend((str(n), str(t)) for n, t in p.get("dbc_attachments", []))
    if report.when == "call" or not report.passed:
        findings = list(p.get("dbc_findings", []))
        if report.when == "call":
            result.findings = findings
            result.values = dict(p.get("dbc_observed", {}))
            bench = p.get("dbc_bench")
            result.bench = row_of(bench) if bench else None
        warned = any(f.get("level") == "warn" for f in result.findings)
        if result.outcome in ("passed", "warned") or not report.passed:
            result.outcome = _outcome(report, warned)
        if not report.passed:
            result.message = _message(report)
    result.observed = "; ".join(str(f["observed"]) for f in result.findings)
    result.expected = "; ".join(str(f["expected"]) for f in result.findings)
    result.fix = "; ".join(str(f["fix"]) for f in result.findings)
