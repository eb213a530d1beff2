"""CNN throughput: one test per model, mode and setting of the chosen --bench-profile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dbc_accept.bench.profiles import RunSpec
from dbc_accept.bench.session import MAX_SPREAD, CnnBench
from dbc_accept.bench.stats import WINDOWS
from dbc_accept.verdict import check, observe

pytestmark = [pytest.mark.benchmark, pytest.mark.gpu]


def test_cnn(cnn_bench: CnnBench, bench_run: RunSpec,
             record_property: Callable[[str, Any], None]) -> None:
    r = cnn_bench.judged(bench_run)
    record_property("dbc_bench", r.row)
    record_property("dbc_guest_env", cnn_bench.probe.env)
    ref, cmp = r.comparison.reference, r.comparison
    observe(images_per_s=r.row["images_per_s"], spread=r.row["spread"], cv=r.row["cv"],
            batch=r.row["batch"], gpus=r.row["world"], dtype=r.row["dtype"],
            steps=r.row["steps"], reference=ref.describe() if ref else None,
            anchor=f"{cmp.anchor_ratio:.2f} x {cmp.anchor.describe()}" if cmp.anchor else None)
    check(r.summary.spread <= MAX_SPREAD, "bench.spread", level="warn",
          observed=f"the throughput moves by {100 * r.summary.spread:.1f}% within the run "
                   f"(CV of the medians of {WINDOWS} parts of the measurement; "
                   f"single steps: {100 * r.summary.cv:.1f}%)",
          expected=f"<= {100 * MAX_SPREAD:.0f}%")
    if ref is None:
        scaling = ""
        if cmp.anchor is not None and cmp.anchor.per_gpu_of_single:
            scaling = (f", {cmp.measured:,.0f} per GPU = {cmp.anchor_ratio:.2f} x the "
                       "single-GPU figure (scaling efficiency)")
        pytest.skip(f"no reference for {cmp.setting.describe()}: measured "
                    f"{r.row['images_per_s']:,.0f} images/s{scaling} (no verdict)")
    check(bool(cmp.ok), "bench.throughput",
          observed=f"{cmp.measured:,.0f} images/s ({cmp.ratio:.2f} x the reference)",
          expected=f">= {cmp.min_ratio:.2f} x {ref.describe()}")
