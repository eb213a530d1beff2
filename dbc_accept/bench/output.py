"""A probe result as a table row: figures, reference, verdict; CSV and progress lines."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from typing import Any

from dbc_accept.bench.reference import Comparison, ReferenceTable, Setting, compare
from dbc_accept.bench.stats import Summary, summarize

# DDP images/s per GPU against the single-GPU figure below which the run is warned about:
# a healthy interconnect keeps the DDP models of the profiles within a few percent; a
# slow link (no P2P, a narrow PCIe slot, NCCL falling back to sockets) costs far more.
MIN_SCALING = 0.80

FIELDS = (
    "id", "gpu", "gpus", "model", "mode", "precision", "dtype", "parallel", "batch", "world",
    "images_per_s", "images_per_s_per_gpu", "median_step_ms", "cv", "spread", "steps",
    "reference_images_per_s", "reference_source", "ratio", "verdict",
    "anchor_images_per_s", "anchor_source", "anchor_ratio", "scaling",
    "setup_s", "warmup_s", "warmup_steps", "first_step_s", "measure_s",
)


def setting_of(line: dict[str, Any], env: dict[str, Any]) -> Setting:
    """The reference key of a result line."""
    spec = line["spec"]
    gpus = env.get("gpus") or [{"name": "cpu"}]
    return Setting(gpu=str(gpus[0]["name"]), model=spec["model"], mode=spec["mode"],
                   precision=spec["precision"], parallel=spec["parallel"],
                   batch=int(line.get("batch", spec["batch"])),
                   world=int(spec.get("world", 1)), legacy=bool(spec.get("legacy")))


def slowest_rank(summary: Summary, line: dict[str, Any], images_per_step: int) -> Summary:
    """A DDP run's throughput is its slowest rank's: every rank handles the same batch, and
    the job (the renter's training) goes at the pace of the last rank to finish its step.
    A sum of per-rank rates would let fast ranks hide a slow one. The step times are rank
    0's; the median step is the slowest rank median (``rank_median_s``) when it is longer."""
    medians = [float(m) for m in line.get("rank_median_s") or [] if m is not None]
    if not medians or max(medians) <= summary.median_s:
        return summary
    slow = max(medians)
    return replace(summary, median_s=slow, images_per_s=images_per_step / slow)


def judge(line: dict[str, Any], env: dict[str, Any], table: ReferenceTable,
          min_ratio: float) -> tuple[Summary, Comparison]:
    """Statistics of a successful result line and its comparison with the reference."""
    s = setting_of(line, env)
    summary = slowest_rank(summarize(line["times_s"], s.batch * s.world), line,
                           s.batch * s.world)
    return summary, compare(table, s, summary.images_per_s, min_ratio)


def row(line: dict[str, Any], env: dict[str, Any], summary: Summary,
        cmp: Comparison) -> dict[str, Any]:
    """One row of the benchmark table (the report's CSV, JSON and plot)."""
    s = cmp.setting
    ref, anchor = cmp.reference, cmp.anchor
    # Launch-bound only where a figure exists to be withheld; without one, "no reference".
    if ref is None and anchor is None:
        verdict = "no reference"
    elif cmp.no_verdict:
        verdict = "launch-bound"
    else:
        verdict = "no reference" if cmp.ok is None else ("pass" if cmp.ok else "fail")
    return {
        "id": line["id"], "gpu": s.gpu, "gpus": len(env.get("gpus") or []), "model": s.model,
        "mode": s.mode, "precision": s.precision, "dtype": line.get("dtype", ""),
        "parallel": s.parallel, "batch": s.batch, "world": s.world,
        "images_per_s": round(summary.images_per_s, 1),
        "images_per_s_per_gpu": round(summary.images_per_s / max(1, s.world), 1),
        "median_step_ms": round(summary.median_s * 1000, 3), "cv": round(summary.cv, 5),
        "spread": round(summary.spread, 5), "steps": summary.steps,
        "reference_images_per_s": ref.images_per_s if ref else None,
        "reference_source": ref.source if ref else "",
        "ratio": _ratio(cmp.ratio), "verdict": verdict,
        "anchor_images_per_s": anchor.images_per_s if anchor else None,
        "anchor_source": anchor.source if anchor else "", "anchor_ratio": _ratio(cmp.anchor_ratio),
        "anchor_label": "single-GPU" if anchor and anchor.per_gpu_of_single else "anchor",
        "setup_s": _r(line.get("setup_s")), "warmup_s": _r(line.get("warmup_s")),
        "warmup_steps": line.get("warmup_steps"), "first_step_s": _r(line.get("first_step_s")),
        "measure_s": _r(line.get("measure_s")),
    }


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _r(value: Any) -> float | None:
    return round(float(value), 3) if isinstance(value, (int, float)) else None


def progress_line(r: dict[str, Any]) -> str:
    """What the terminal shows when a model's figures arrive."""
    ref = ""
    if r["ratio"] is not None:
        ref = f"  {r['ratio']:.2f} x ref {r['reference_images_per_s']:,.0f} [{r['verdict']}]"
    if r.get("anchor_ratio") is not None:  # information only: no verdict
        label = r.get("anchor_label", "anchor")
        ref += f"  {r['anchor_ratio']:.2f} x {label} {r['anchor_images_per_s']:,.0f}"
    if r.get("scaling") is not None:
        ref += f"  scaling {r['scaling']:.2f}"
    return (f"{r['id']:<40} {r['images_per_s']:>10,.0f} img/s  spread {100 * r['spread']:4.1f}%"
            f"  step cv {100 * r['cv']:4.1f}%  b{r['batch']}x{r['world']} {r['dtype']}{ref}"
            f"  (set-up {r['setup_s']:.1f} s, warm-up {r['warmup_s']:.1f} s,"
            f" measured {r['measure_s']:.1f} s)")


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    """The benchmark table as CSV text (columns FIELDS)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    return buf.getvalue()


def time_split(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent setting up, warming up and measuring over all rows."""
    keys = ("setup_s", "warmup_s", "measure_s")
    return {k: round(sum(float(r.get(k) or 0.0) for r in rows), 2) for k in keys}
