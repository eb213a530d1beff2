"""report.html's story: its title, its first screen and each failure told once."""

from __future__ import annotations

import time
from html import escape
from typing import TYPE_CHECKING, Any

import pytest

from dbc_accept.report import folder as rf
from dbc_accept.report.front import front_html, title
from dbc_accept.report.nodefacts import guest_facts, host_facts
from dbc_accept.settings import settings
from dbc_accept.story import Tally, group_findings

if TYPE_CHECKING:
    from dbc_accept.report.plugin import ReportState


def _tally(config: pytest.Config) -> Tally:
    from dbc_accept.terminal import TALLY_KEY

    return config.stash.get(TALLY_KEY, None) or Tally()


def report_title(config: pytest.Config) -> str:
    return title(rf.node_label(config), _tally(config).verdict())


def _profile(config: pytest.Config) -> str:
    guest = settings(config).profile
    bench = settings(config).bench_profile
    return f"{guest} (in-guest tests), {bench} (benchmark)"


def head(config: pytest.Config, state: ReportState) -> dict[str, Any]:
    """Node, node id, date, profile and counts, for the top of the report."""
    node_ids = sorted({str(r.values["node_id"]) for r in state.results.values()
                       if r.values.get("node_id")})
    return {"node": rf.node_label(config), "node_id": ", ".join(node_ids) or "unknown",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(state.started)),
            "profile": _profile(config), "counts": _tally(config).counts_text()}


def _host(config: pytest.Config) -> dict[str, Any]:
    """The first node's facts, when host checks ran (never gathered just for the report)."""
    from dbc_accept.plugin import NODES_KEY

    found = config.stash.get(NODES_KEY, [])
    return host_facts(found[0]) if found else {}


def front(config: pytest.Config, state: ReportState) -> str:
    from dbc_accept.plugin import session_findings

    return front_html(head(config, state), _tally(config).verdict(),
                      group_findings(session_findings(config)), _host(config),
                      guest_facts(state.info.get("guest"), state.results.values()),
                      state.info.get("controller") or {}, state.redactor)


def drop_told_log(report: pytest.TestReport, data: list[str]) -> None:
    """A failed check's message is in its findings table: not again in the log below it."""
    from dbc_accept.terminal import told_by_finding

    if told_by_finding(report) and data and data[0] == escape(report.longreprtext) + "\n":
        del data[0]
        if not data:
            data.append("")
