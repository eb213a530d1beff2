"""HTML pieces for pytest-html: per-test extras and the run summary (bench table, plot)."""

from __future__ import annotations

import base64
import json
from html import escape
from typing import Any

from dbc_accept.bench.output import time_split
from dbc_accept.report.redact import Redactor
from dbc_accept.report.results import TestResult

BENCH_COLUMNS = ("id", "images_per_s", "spread", "cv", "batch", "world", "dtype",
                 "reference_images_per_s", "ratio", "verdict", "anchor_label", "anchor_ratio",
                 "scaling", "reference_source")


def _pre(text: str) -> str:
    return f"<pre style='white-space:pre-wrap'>{escape(text)}</pre>"


def _details(name: str, text: str, r: Redactor) -> str:
    return f"<details><summary>{escape(name)}</summary>{_pre(r.scrub(text))}</details>"


def test_extras(result: TestResult, r: Redactor) -> list[str]:
    """HTML blocks shown under one test: findings with their fix, observed values, texts."""
    blocks = []
    if result.findings:
        rows = "".join(
            f"<tr><td>{escape(str(f['level']).upper())}</td><td>{escape(str(f['check']))}</td>"
            f"<td>{escape(r.scrub(str(f['observed'])))}</td>"
            f"<td>{escape(r.scrub(str(f['expected'])))}</td>"
            f"<td>{escape(r.scrub(str(f['fix'])))}</td></tr>" for f in result.findings)
        blocks.append("<table class='dbc-findings'><tr><th>level</th><th>check</th>"
                      f"<th>observed</th><th>expected</th><th>fix</th></tr>{rows}</table>")
    if result.values:
        text = json.dumps(result.values, indent=1, default=str, sort_keys=True)
        blocks.append(f"<div><b>observed</b>{_pre(r.scrub(text))}</div>")
    blocks.extend(_details(name, text, r) for name, text in result.attachments)
    return blocks


def bench_table(rows: list[dict[str, Any]]) -> str:
    """The benchmark table: one row per run."""
    head = "".join(f"<th>{escape(c)}</th>" for c in BENCH_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(row.get(c)))}</td>" for c in BENCH_COLUMNS)
        + "</tr>" for row in rows)
    return f"<table class='dbc-bench'><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if value < 10 else f"{value:,.0f}"
    return "" if value is None else str(value)


def summary_html(folder: str, info: dict[str, Any], rows: list[dict[str, Any]],
                 png: bytes | None, attachments: dict[str, str], r: Redactor) -> str:
    """The block above the results table: where the folder is, the benchmark, run texts."""
    parts = [f"<p>Result folder: <code>{escape(folder)}</code></p>"]
    guest = info.get("guest")
    if guest:
        parts.append(_details("guest software (from the benchmark probe)",
                              json.dumps(guest, indent=1, sort_keys=True), r))
    if rows:
        split = time_split(rows)
        parts.append(f"<h2>CNN benchmark</h2><p>set-up {split['setup_s']:.0f} s, "
                     f"warm-up {split['warmup_s']:.0f} s, measured {split['measure_s']:.0f} s</p>")
        if png:
            data = base64.b64encode(png).decode()
            parts.append(f"<img alt='images/s against reference' "
                         f"src='data:image/png;base64,{data}'/>")
        parts.append(bench_table(rows))
    parts.extend(_details(name, text, r) for name, text in sorted(attachments.items()))
    return "".join(parts)
