"""The benchmark plot: images/s of each run against its reference (a PNG)."""

from __future__ import annotations

import io
from typing import Any

COLORS = {"pass": "#2e7d32", "fail": "#c62828", "no reference": "#757575"}


def bench_png(rows: list[dict[str, Any]]) -> bytes:
    """A horizontal bar per run (images/s, log scale), the reference as a black mark."""
    from matplotlib.figure import Figure  # the Agg canvas, no pyplot and no display needed

    rows = sorted(rows, key=lambda r: str(r["id"]), reverse=True)
    fig = Figure(figsize=(9, max(2.5, 0.24 * len(rows) + 1.2)), layout="constrained")
    ax = fig.subplots()
    ys = range(len(rows))
    ax.barh(ys, [float(r["images_per_s"]) for r in rows],
            color=[COLORS.get(str(r["verdict"]), "#757575") for r in rows])
    refs = [(y, r["reference_images_per_s"]) for y, r in zip(ys, rows, strict=True)
            if r.get("reference_images_per_s")]
    if refs:
        ax.scatter([v for _, v in refs], [y for y, _ in refs], marker="|", s=160,
                   color="black", label="reference", zorder=3)
        ax.legend(loc="lower right")
    ax.set_yticks(list(ys), [str(r["id"]) for r in rows], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("images/s (median step; green pass, red below the reference share, "
                  "grey no reference)")
    gpu = rows[0]["gpu"] if rows else ""
    ax.set_title(f"CNN throughput on {gpu}")
    ax.grid(axis="x", which="both", alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()
