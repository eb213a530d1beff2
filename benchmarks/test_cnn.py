"""CNN throughput: one test per model, mode and setting of the chosen --bench-profile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dbc_accept.bench.output import MIN_SCALING
from dbc_accept.bench.profiles import RunSpec
from dbc_accept.bench.session import MAX_SPREAD, CnnBench
from dbc_accept.bench.stats import WINDOWS
from dbc_accept.verdict import check, observe

pytestmark = [pytest.mark.benchmark, pytest.mark.gpu]


def test_cnn(cnn_bench: CnnBench, bench_run: RunSpec,
             record_property: Callable[[str, Any], None]) -> None:
    r = cnn_bench.judged(bench_run)
    record_property("dbc_bench", r.row.as_dict())
    record_property("dbc_guest_env", dict(cnn_bench.probe.env.doc))
    ref, cmp = r.comparison.reference, r.comparison
    observe(images_per_s=r.row.images_per_s, spread=r.row.spread, cv=r.row.cv,
            batch=r.row.batch, gpus=r.row.world, dtype=r.row.dtype,
            steps=r.row.steps, reference=ref.describe() if ref else None,
            anchor=f"{cmp.anchor_ratio:.2f} x {cmp.anchor.describe()}" if cmp.anchor else None)
    check(r.summary.spread <= MAX_SPREAD, "bench.spread", level="warn",
          observed=f"the throughput moves by {100 * r.summary.spread:.1f}% within the run "
                   f"(CV of the medians of {WINDOWS} parts of the measurement; "
                   f"single steps: {100 * r.summary.cv:.1f}%)",
          expected=f"<= {100 * MAX_SPREAD:.0f}%")
    sc = r.scaling
    if sc is not None:  # DDP: how much of the single-GPU speed each GPU keeps
        observe(scaling=round(sc.efficiency, 3))
        check(sc.efficiency >= MIN_SCALING, "bench.scaling", level="warn",
              observed=f"{sc.per_gpu:,.0f} images/s per GPU over {r.row.world} GPUs = "
                       f"{sc.efficiency:.2f} x {sc.single:,.0f} ({sc.against})",
              expected=f">= {MIN_SCALING:.2f} x the single-GPU figure")
    if ref is None:
        if sc is not None:
            return  # judged on its scaling above: DDP figures depend on the interconnect
        if cmp.no_verdict:
            anchor = f" = {cmp.anchor_ratio:.2f} x {cmp.anchor.describe()}" if cmp.anchor else ""
            pytest.skip(f"{cmp.setting.describe()}: measured {r.row.images_per_s:,.0f} "
                        f"images/s{anchor}; no verdict: {cmp.no_verdict}")
        pytest.skip(f"no reference for {cmp.setting.describe()}: measured "
                    f"{r.row.images_per_s:,.0f} images/s (no verdict)")
    check(bool(cmp.ok), "bench.throughput",
          observed=f"{cmp.measured:,.0f} images/s ({cmp.ratio:.2f} x the reference)",
          expected=f">= {cmp.min_ratio:.2f} x {ref.describe()}")
