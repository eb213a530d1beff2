"""HTML pieces for pytest-html: per-test extras and the run summary (bench table, plot)."""

from __future__ import annotations

import base64
import json
from html import escape
from typing import Any

from dbc_accept.bench.output import BenchRow, time_split
from dbc_accept.messages import t
from dbc_accept.remedies import localized
from dbc_accept.report.redact import Redactor
from dbc_accept.report.results import TestResult

# (row key, column heading with its unit, how a value is shown)
BENCH_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("id", "Run", "text"),
    ("images_per_s", "Throughput (images/s)", "number"),
    ("reference_images_per_s", "Reference (images/s)", "number"),
    ("ratio", "Share of reference (x)", "ratio"),
    ("verdict", "Verdict", "text"),
    ("spread", "Spread over the run (%)", "percent"),
    ("cv", "Step time variation (%)", "percent"),
    ("batch", "Batch (images per GPU)", "text"),
    ("world", "GPUs", "text"),
    ("dtype", "Precision", "text"),
    ("anchor_ratio", "Against the second figure (x)", "anchor"),
    ("scaling", "DDP scaling (x)", "ratio"),
    ("reference_source", "Reference source", "text"),
)


def _pre(text: str) -> str:
    return f"<pre style='white-space:pre-wrap'>{escape(text)}</pre>"


def _details(name: str, text: str, r: Redactor) -> str:
    return f"<details><summary>{escape(name)}</summary>{_pre(r.scrub(text))}</details>"


def test_extras(result: TestResult, r: Redactor) -> list[str]:
    """HTML blocks shown under one test: findings with their fix, observed values, texts."""
    blocks = []
    if result.findings:
        rows = "".join(
            f"<tr><td>{escape(t(str(f['level']).upper()))}</td><td>{escape(str(f['check']))}</td>"
            f"<td>{escape(r.scrub(str(f['observed'])))}</td>"
            f"<td>{escape(r.scrub(str(f['expected'])))}</td>"
            f"<td>{escape(r.scrub(localized(str(f['check']), str(f['fix']))))}</td></tr>"
            for f in result.findings)
        heads = "".join(f"<th>{escape(t(k))}</th>"
                        for k in ("level", "check", "observed", "expected", "fix"))
        blocks.append(f"<table class='dbc-findings'><tr>{heads}</tr>{rows}</table>")
    if result.values:
        text = json.dumps(result.values, indent=1, default=str, sort_keys=True)
        blocks.append(f"<div><b>{escape(t('observed'))}</b>{_pre(r.scrub(text))}</div>")
    blocks.extend(_details(name, text, r) for name, text in result.attachments)
    return blocks


def bench_table(rows: list[BenchRow]) -> str:
    """The benchmark table: one row per run, headings in words with their units."""
    head = "".join(f"<th>{escape(label)}</th>" for _, label, _ in BENCH_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(row, key, kind))}</td>"
                         for key, _, kind in BENCH_COLUMNS) + "</tr>" for row in rows)
    return f"<table class='dbc-bench'><tr>{head}</tr>{body}</table>"


def _cell(row: BenchRow, key: str, kind: str) -> str:
    value = getattr(row, key)
    if value is None or value == "":
        return ""
    if kind == "number" and isinstance(value, (int, float)):
        return f"{value:,.0f}" if value >= 10 else f"{value:,.4g}"
    if kind == "percent" and isinstance(value, (int, float)):
        return f"{100 * value:.1f}"
    if kind in ("ratio", "anchor") and isinstance(value, (int, float)):
        label = f" of the {row.anchor_label} figure" if kind == "anchor" else ""
        return f"{value:.2f}{label}"
    return str(value)


def summary_html(folder: str, info: dict[str, Any], rows: list[BenchRow],
                 png: bytes | None, attachments: dict[str, str], r: Redactor) -> str:
    """The block above the results table: where the folder is, the benchmark, run texts."""
    parts = [f"<p>Result folder: <code>{escape(folder)}</code></p>"]
    guest = info.get("guest")
    if guest:
        parts.append(_details("guest software (from the benchmark probe)",
                              json.dumps(guest, indent=1, sort_keys=True), r))
    if rows:
        split = time_split(rows)
        parts.append(f"<h2>{escape(t('bench_heading'))}</h2><p>set-up {split['setup_s']:.0f} s, "
                     f"warm-up {split['warmup_s']:.0f} s, measured {split['measure_s']:.0f} s</p>")
        if png:
            data = base64.b64encode(png).decode()
            parts.append(f"<img id='dbc-plot' alt='{escape(t('plot_caption'))}' "
                         f"title='{escape(t('plot_caption'))}' "
                         f"src='data:image/png;base64,{data}'/>")
        parts.append(bench_table(rows))
    parts.extend(_details(name, text, r) for name, text in sorted(attachments.items()))
    return "".join(parts)
