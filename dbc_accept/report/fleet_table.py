"""One page for a fleet: a row per node (verdict, FAILs, WARNs, the first fix), as HTML and CSV.

The verdict of a node: ``UNREACHABLE`` when it could not be read, else ``FAIL`` when one of
its tests failed, ``WARN`` when one warned, else ``PASS``. The first fix is that of its first
failed test (in run order), else of its first warning.
"""

from __future__ import annotations

import csv
import io
from html import escape
from typing import Any

from dbc_accept.messages import t
from dbc_accept.remedies import REMEDIES, localized
from dbc_accept.report.results import TestResult

COLUMNS = ("node", "verdict", "fails", "warns", "passed", "skipped", "first_fix",
           "remote_commands")


def _first_fix(results: list[TestResult], outcomes: tuple[str, ...]) -> str:
    for res in results:
        if res.outcome in outcomes:
            fixes = [str(f.get("fix", "")) for f in res.findings if f.get("fix")]
            if fixes:
                return fixes[0]
            if res.message:
                return res.message.strip().splitlines()[-1][:300]
    return ""


def fleet_rows(results: list[TestResult], nodes: list[str], unreachable: dict[str, str],
               trips: dict[str, int]) -> list[dict[str, Any]]:
    """One row per node, in the order given."""
    rows = []
    for name in nodes:
        mine = [r for r in results if r.node == name]
        fails = sum(1 for r in mine if r.outcome in ("failed", "error"))
        warns = sum(1 for r in mine if r.outcome == "warned")
        verdict = ("UNREACHABLE" if name in unreachable else
                   "FAIL" if fails else "WARN" if warns else "PASS")
        first = _first_fix(mine, ("failed", "error")) or _first_fix(mine, ("warned",))
        rows.append({
            "node": name, "verdict": verdict, "fails": fails, "warns": warns,
            "passed": sum(1 for r in mine if r.outcome in ("passed", "warned")),
            "skipped": sum(1 for r in mine if r.outcome == "skipped"),
            "first_fix": first, "remote_commands": trips.get(name, ""),
        })
    return rows


def fleet_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def shown_fix(fix: str) -> str:
    """A fix (English, as results keep it) in the reader's language when it is a remedy's."""
    return next((text for text in (localized(c, fix) for c in REMEDIES) if text != fix), fix)


def _cell(row: dict[str, Any], column: str) -> str:
    return shown_fix(str(row[column])) if column == "first_fix" else str(row[column])


def fleet_html(rows: list[dict[str, Any]]) -> str:
    """The table at the top of the report (the CSV keeps the English fix)."""
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(row, c))}</td>" for c in COLUMNS) + "</tr>"
        for row in rows)
    return (f"<h2>{escape(t('nodes_heading'))}</h2>"
            f"<table class='dbc-fleet'><tr>{head}</tr>{body}</table>"
            "<p>Also in <code>fleet.csv</code>.</p>")
