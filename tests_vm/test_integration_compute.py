"""Integration: matrix products, training and inference give right answers on every GPU."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from dbc_accept.facts.gpu_guest import MATMUL_MAX_TOLERANCE, MATMUL_TOLERANCE
from dbc_accept.guest.slots import Slot, entry_of
from dbc_accept.verdict import check, observe

pytestmark = [pytest.mark.vm, pytest.mark.integration, pytest.mark.gpu]
Probe = Callable[[str], "dict[str, Any]"]

TRAIN_ACCURACY = 0.95  # the synthetic task is learnt to 100% in 150 steps on a CPU
CURVE_TOLERANCE = 1e-3  # |loss - loss of GPU 0| <= tol x (1 + loss), every step
INFER_TOLERANCE = 1e-4  # max |GPU output - CPU output|, fp32 without TF32


@pytest.mark.parametrize("precision", list(MATMUL_TOLERANCE))
def test_matmul(slot: Slot, precision: str, probe: Probe) -> None:
    entry = entry_of(probe("matmul"), slot, "guest.matmul")
    result = entry["precisions"][precision]
    if not result["supported"]:
        pytest.skip(f"{entry['name']} has no native {precision}")
    tol, worst = MATMUL_TOLERANCE[precision], MATMUL_MAX_TOLERANCE[precision]
    observe(**{f"matmul_{precision}_rel_error": result["error"],
               f"matmul_{precision}_max_error": result["max_error"]})
    check(result["error"] <= tol and result["max_error"] <= worst, "guest.matmul",
          observed=f"relative error {result['error']:.2e}, worst element "
          f"{result['max_error']:.2e} x RMS, against float64",
          expected=f"<= {tol:.0e} and <= {worst:.0e} for {precision}")


def test_training(slot: Slot, probe: Probe) -> None:
    doc = probe("train")
    entry = entry_of(doc, slot, "guest.training")
    observe(train_accuracy=entry["accuracy"], train_seconds=round(entry["seconds"], 2),
            final_loss=entry["losses"][-1])
    check(entry["accuracy"] >= TRAIN_ACCURACY, "guest.training",
          observed=f"accuracy {entry['accuracy']:.3f} after {doc['steps']} steps",
          expected=f">= {TRAIN_ACCURACY}")
    first = entry_of(doc, Slot(0), "guest.training")["losses"]
    worst = max(abs(a - b) / (1 + abs(b)) for a, b in zip(entry["losses"], first))
    check(worst <= CURVE_TOLERANCE, "guest.training",
          observed=f"loss curve differs from GPU 0's by up to {worst:.2e}",
          expected=f"<= {CURVE_TOLERANCE:.0e} (same seed, same curve)")


def test_inference(slot: Slot, probe: Probe) -> None:
    entry = entry_of(probe("train"), slot, "guest.inference")
    diff = entry["infer_max_abs_diff"]
    observe(infer_max_abs_diff_vs_cpu=diff)
    check(entry["infer_finite"] and diff <= INFER_TOLERANCE, "guest.inference",
          observed=f"outputs differ from the CPU's by up to {diff:.2e}",
          expected=f"<= {INFER_TOLERANCE:.0e}, all finite")
