"""The benchmark plot: images/s of each run against its reference (a PNG)."""

from __future__ import annotations

import io
from typing import Any

from dbc_accept.bench.output import MIN_SCALING

COLORS = {"pass": "#2e7d32", "fail": "#c62828", "no reference": "#757575"}
DDP_COLORS = {True: "#1565c0", False: "#ef6c00"}  # scaling kept / lost
SINGLE_MARK = "#8e24aa"


def _is_ddp(r: dict[str, Any]) -> bool:
    return r.get("scaling") is not None


def _bar(r: dict[str, Any]) -> tuple[float, str, str]:
    """A row's bar: length, colour and label. DDP rows show images/s per GPU, so that the
    bar sits next to the single-GPU figure it is compared with."""
    if _is_ddp(r):
        ok = float(r["scaling"]) >= MIN_SCALING
        return float(r["images_per_s_per_gpu"]), DDP_COLORS[ok], f"{r['id']} (per GPU)"
    return float(r["images_per_s"]), COLORS.get(str(r["verdict"]), "#757575"), str(r["id"])


def bench_png(rows: list[dict[str, Any]]) -> bytes:
    """A horizontal bar per run (images/s, log scale), the reference as a black mark and,
    for DDP runs, the single-GPU figure as a blue one."""
    from matplotlib.figure import Figure  # the Agg canvas, no pyplot and no display needed

    rows = sorted(rows, key=lambda r: str(r["id"]), reverse=True)
    fig = Figure(figsize=(9, max(2.5, 0.24 * len(rows) + 1.2)), layout="constrained")
    ax = fig.subplots()
    ys = list(range(len(rows)))
    bars = [_bar(r) for r in rows]
    ax.barh(ys, [b[0] for b in bars], color=[b[1] for b in bars])
    refs = [(y, float(r["reference_images_per_s"])) for y, r in zip(ys, rows)
            if r.get("reference_images_per_s")]
    singles = [(y, float(r["images_per_s_per_gpu"]) / float(r["scaling"]))
               for y, r in zip(ys, rows) if _is_ddp(r) and float(r["scaling"]) > 0]
    for marks, color, label in ((refs, "black", "reference"),
                                (singles, SINGLE_MARK, "single-GPU figure (DDP rows)")):
        if marks:
            ax.scatter([v for _, v in marks], [y for y, _ in marks], marker="|", s=160,
                       color=color, label=label, zorder=3)
    if refs or singles:
        ax.legend(loc="lower right")
    ax.set_yticks(ys, [b[2] for b in bars], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("images/s (median step; green pass, red below the reference share, grey no "
                  f"reference)\nDDP rows: images/s per GPU, blue when >= {MIN_SCALING:.2f} x the "
                  "single-GPU figure, orange below")
    gpu = rows[0]["gpu"] if rows else ""
    ax.set_title(f"CNN throughput on {gpu}")
    ax.grid(axis="x", which="both", alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()
