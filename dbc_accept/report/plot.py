"""The benchmark plot: each run as a share of its reference, on a linear axis (a PNG).

A bar of 0.60 is 60% of the reference's length, so a short run looks short. DDP runs
without a reference of their own show their scaling (per-GPU images/s against the
single-GPU figure). Every text is ASCII: the plot's font has no CJK glyphs.
"""

from __future__ import annotations

import io

from dbc_accept.bench.output import MIN_SCALING, BenchRow
from dbc_accept.guide import readable

COLORS = {"pass": "#2e7d32", "fail": "#c62828", "no reference": "#757575"}
DDP_COLORS = {True: "#1565c0", False: "#ef6c00"}  # scaling kept / lost


def _ascii(text: str) -> str:
    return readable(text, ascii_only=True).encode("ascii", "replace").decode()


def _bar(r: BenchRow) -> tuple[float | None, str, str]:
    """A row's bar: its share of the reference (or DDP scaling), colour and label."""
    if r.ratio is not None:
        return float(r.ratio), COLORS.get(r.verdict, "#757575"), _ascii(r.id)
    if r.scaling is not None:
        ok = float(r.scaling) >= MIN_SCALING
        return float(r.scaling), DDP_COLORS[ok], _ascii(f"{r.id} (scaling)")
    return None, COLORS["no reference"], _ascii(f"{r.id} (no reference)")


def bench_png(rows: list[BenchRow], min_ratio: float = 0.85) -> bytes:
    """A horizontal bar per run: its share of the reference, 1.0 and the pass line marked."""
    from matplotlib.figure import Figure  # the Agg canvas, no pyplot and no display needed

    rows = sorted(rows, key=lambda r: r.id, reverse=True)
    fig = Figure(figsize=(9, max(2.5, 0.26 * len(rows) + 1.4)), layout="constrained")
    ax = fig.subplots()
    bars = [_bar(r) for r in rows]
    ys = list(range(len(rows)))
    ax.barh(ys, [b[0] or 0.0 for b in bars], color=[b[1] for b in bars])
    for y, (value, _, _) in zip(ys, bars):
        ax.text((value or 0.0) + 0.01, y, "no reference" if value is None else f"{value:.2f}x",
                va="center", fontsize=7)
    ax.axvline(1.0, color="black", linewidth=1, label="reference (1.0)")
    ax.axvline(min_ratio, color="#c62828", linestyle="--", linewidth=1,
               label=f"pass line ({min_ratio:.2f})")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_yticks(ys, [b[2] for b in bars], fontsize=7)
    top = max([1.2] + [(b[0] or 0.0) + 0.15 for b in bars])
    ax.set_xlim(0, top)
    ax.set_xlabel("share of the reference (images/s of the run / images/s of the reference; "
                  "green pass, red fail)\nDDP rows without a reference: scaling, blue when "
                  f">= {MIN_SCALING:.2f}, orange below")
    gpu = _ascii(rows[0].gpu) if rows else ""
    ax.set_title(f"CNN throughput on {gpu}, as a share of the reference")
    ax.grid(axis="x", alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()
