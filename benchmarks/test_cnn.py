"""CNN throughput: one test per model, mode and setting of the chosen --bench-profile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dbc_accept.bench.profiles import RunSpec
from dbc_accept.bench.session import MAX_CV, CnnBench
from dbc_accept.verdict import check, observe

pytestmark = [pytest.mark.benchmark, pytest.mark.gpu]


def test_cnn(cnn_bench: CnnBench, bench_run: RunSpec,
             record_property: Callable[[str, Any], None]) -> None:
    r = cnn_bench.judged(bench_run)
    record_property("dbc_bench", r.row)
    record_property("dbc_guest_env", cnn_bench.probe.env)
    observe(images_per_s=r.row["images_per_s"], cv=r.row["cv"], batch=r.row["batch"],
            gpus=r.row["world"], dtype=r.row["dtype"], steps=r.row["steps"],
            reference=r.comparison.reference.describe() if r.comparison.reference else None)
    check(r.summary.cv <= MAX_CV, "bench.spread", level="warn",
          observed=f"step times vary by {100 * r.summary.cv:.1f}% (CV)",
          expected=f"<= {100 * MAX_CV:.0f}%")
    ref, cmp = r.comparison.reference, r.comparison
    if ref is None:
        pytest.skip(f"no reference for {cmp.setting.describe()}: measured "
                    f"{r.row['images_per_s']:,.0f} images/s (no verdict)")
    check(bool(cmp.ok), "bench.throughput",
          observed=f"{cmp.measured:,.0f} images/s ({cmp.ratio:.2f} x the reference)",
          expected=f">= {cmp.min_ratio:.2f} x {ref.describe()}")
