"""pytest plugin of scripts/gpu-verdicts.sh: one JSON line per test with its outcome, when it
ended (seconds since the session began), how long it took, and what it said.

Loaded with ``-p gpu_verdicts_plugin`` (scripts/ on the path); the file comes from the
environment variable GPU_VERDICTS_LOG.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

START: list[float] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    START[:] = [time.monotonic()]


def message(report: pytest.TestReport) -> str:
    """What a failed or skipped test said: its findings, else the last lines of its error."""
    for name, value in report.user_properties:
        if name == "dbc_findings" and value:
            f = next((x for x in value if x["level"] == "fail"), value[0])
            return f"[{f['check']}] observed: {f['observed']}; expected: {f['expected']}"
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    text = str(report.longrepr or "").strip()
    return " / ".join(text.splitlines()[-3:])[:600]


def record(report: pytest.TestReport) -> dict[str, Any]:
    observed: dict[str, Any] = {}
    for name, value in report.user_properties:
        if name == "dbc_observed":
            observed.update(value)
    since = time.monotonic() - START[0] if START else 0.0
    return {"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
            "duration_s": round(report.duration, 3), "ended_s": round(since, 3),
            "message": "" if report.passed else message(report), "observed": observed}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = os.environ.get("GPU_VERDICTS_LOG")
    if not path:
        return
    # One line per test: its call, or the setup/teardown phase that failed or skipped it.
    if report.when != "call" and report.passed:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record(report), default=str) + "\n")
