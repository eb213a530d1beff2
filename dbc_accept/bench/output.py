"""A probe result as a table row: figures, reference, verdict; CSV and progress lines."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from dbc_accept.bench.lines import ProbeEnv, RunResult
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


@dataclass(frozen=True)
class BenchRow:
    """One row of the benchmark table (the report's CSV, JSON and plot).

    ``as_dict`` is what the JSON files and the junit property hold, keys in field order;
    :func:`row_of` reads it back. A figure that does not apply is None.
    """

    id: str = ""
    gpu: str = ""
    gpus: int = 0
    model: str = ""
    mode: str = ""
    precision: str = ""
    dtype: str = ""
    parallel: str = ""
    batch: int = 0
    world: int = 1
    images_per_s: float = 0.0
    images_per_s_per_gpu: float = 0.0
    median_step_ms: float = 0.0
    cv: float = 0.0
    spread: float = 0.0
    steps: int = 0
    reference_images_per_s: float | None = None
    reference_source: str = ""
    ratio: float | None = None
    verdict: str = ""
    anchor_images_per_s: float | None = None
    anchor_source: str = ""
    anchor_ratio: float | None = None
    anchor_label: str = "anchor"  # "single-GPU" where the anchor is the single-GPU figure
    setup_s: float | None = None
    warmup_s: float | None = None
    warmup_steps: int | None = None
    first_step_s: float | None = None
    measure_s: float | None = None
    scaling: float | None = None  # DDP: images/s per GPU against the single-GPU figure

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


ROW_KEYS = tuple(f.name for f in fields(BenchRow))


def row_of(doc: Mapping[str, Any]) -> BenchRow:
    """A row from its JSON form (a test's ``dbc_bench`` property); unknown keys dropped."""
    return BenchRow(**{k: doc[k] for k in ROW_KEYS if k in doc})


def setting_of(result: RunResult, env: ProbeEnv) -> Setting:
    """The reference key of a result line (ValueError when it had no readable spec)."""
    spec = result.setting
    if spec is None:
        raise ValueError(result.problem or f"{result.id} has no spec")
    return Setting(gpu=env.gpu_name, model=spec.model, mode=spec.mode,
                   precision=spec.precision, parallel=spec.parallel,
                   batch=spec.batch if result.batch is None else result.batch,
                   world=spec.world, legacy=spec.legacy)


def slowest_rank(summary: Summary, result: RunResult, images_per_step: int) -> Summary:
    """A DDP run's throughput is its slowest rank's: every rank handles the same batch, and
    the job (the renter's training) goes at the pace of the last rank to finish its step.
    A sum of per-rank rates would let fast ranks hide a slow one. The step times are rank
    0's; the median step is the slowest rank median (``rank_median_s``) when it is longer."""
    medians = result.rank_median_s
    if not medians or max(medians) <= summary.median_s:
        return summary
    slow = max(medians)
    return replace(summary, median_s=slow, images_per_s=images_per_step / slow)


def judge(result: RunResult, env: ProbeEnv, table: ReferenceTable,
          min_ratio: float) -> tuple[Summary, Comparison]:
    """Statistics of a successful result line and its comparison with the reference."""
    s = setting_of(result, env)
    summary = slowest_rank(summarize(list(result.times_s), s.batch * s.world), result,
                           s.batch * s.world)
    return summary, compare(table, s, summary.images_per_s, min_ratio)


def row(result: RunResult, env: ProbeEnv, summary: Summary, cmp: Comparison) -> BenchRow:
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
    return BenchRow(
        id=result.id, gpu=s.gpu, gpus=len(env.gpus), model=s.model,
        mode=s.mode, precision=s.precision, dtype=result.dtype,
        parallel=s.parallel, batch=s.batch, world=s.world,
        images_per_s=round(summary.images_per_s, 1),
        images_per_s_per_gpu=round(summary.images_per_s / max(1, s.world), 1),
        median_step_ms=round(summary.median_s * 1000, 3), cv=round(summary.cv, 5),
        spread=round(summary.spread, 5), steps=summary.steps,
        reference_images_per_s=ref.images_per_s if ref else None,
        reference_source=ref.source if ref else "",
        ratio=_ratio(cmp.ratio), verdict=verdict,
        anchor_images_per_s=anchor.images_per_s if anchor else None,
        anchor_source=anchor.source if anchor else "", anchor_ratio=_ratio(cmp.anchor_ratio),
        anchor_label="single-GPU" if anchor and anchor.per_gpu_of_single else "anchor",
        setup_s=_r(result.setup_s), warmup_s=_r(result.warmup_s),
        warmup_steps=result.warmup_steps, first_step_s=_r(result.first_step_s),
        measure_s=_r(result.measure_s),
    )


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def progress_line(r: BenchRow) -> str:
    """What the terminal shows when a model's figures arrive."""
    ref = ""
    if r.ratio is not None:
        ref = f"  {r.ratio:.2f} x ref {r.reference_images_per_s:,.0f} [{r.verdict}]"
    if r.anchor_ratio is not None:  # information only: no verdict
        ref += f"  {r.anchor_ratio:.2f} x {r.anchor_label} {r.anchor_images_per_s:,.0f}"
    if r.scaling is not None:
        ref += f"  scaling {r.scaling:.2f}"
    return (f"{r.id:<40} {r.images_per_s:>10,.0f} img/s  spread {100 * r.spread:4.1f}%"
            f"  step cv {100 * r.cv:4.1f}%  b{r.batch}x{r.world} {r.dtype}{ref}"
            f"  (set-up {r.setup_s:.1f} s, warm-up {r.warmup_s:.1f} s,"
            f" measured {r.measure_s:.1f} s)")


def rows_to_csv(rows: list[BenchRow]) -> str:
    """The benchmark table as CSV text (columns FIELDS)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(r.as_dict())
    return buf.getvalue()


def time_split(rows: list[BenchRow]) -> dict[str, float]:
    """Seconds spent setting up, warming up and measuring over all rows."""
    return {"setup_s": round(sum(r.setup_s or 0.0 for r in rows), 2),
            "warmup_s": round(sum(r.warmup_s or 0.0 for r in rows), 2),
            "measure_s": round(sum(r.measure_s or 0.0 for r in rows), 2)}
