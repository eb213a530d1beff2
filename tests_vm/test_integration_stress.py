"""Integration: a GEMM burn on every GPU at once (--stress-seconds), results compared."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.gpu_guest import (
    HW_REASONS,
    THERMAL_REASONS,
    decode_reasons,
    gather_kernel_log,
    parse_xids,
)
from dbc_accept.guest.slots import Slot, entry_of
from dbc_accept.verdict import check, observe

pytestmark = [pytest.mark.vm, pytest.mark.integration, pytest.mark.gpu, pytest.mark.slow]
Probe = Callable[[str], "dict[str, Any]"]


def doc_tol(entry: dict[str, Any]) -> str:
    return f"{entry.get('tolerance', 0.05):.0%}"


def test_stress(slot: Slot, probe: Probe) -> None:
    entry = entry_of(probe("stress"), slot, "guest.stress")
    tele = entry["telemetry"]
    observe(stress_tflops=round(entry["tflops"], 1), stress_iterations=entry["iterations"],
            stress_inexact_elements=entry["inexact_elements"],
            temp_c_max=tele["temp_c_max"], power_w_max=tele["power_w_max"],
            sm_mhz=tele["sm_mhz"], clock_reasons=decode_reasons(tele["reasons_seen"]))
    check(entry["mismatched_elements"] == 0 and entry["first_finite"], "guest.stress",
          observed=f"{entry['mismatched_elements']} elements off the first product by more than "
          f"{doc_tol(entry)} ({entry['iterations']} products)",
          expected="the same result every iteration")
    check(tele["samples"] > 0, "guest.nvml", level="warn",
          observed="no NVML sample during the burn", expected="temperature, power, clocks "
          "and throttle reasons sampled (pynvml or nvidia-smi)")
    bad = tele["reasons_seen"] & (HW_REASONS | THERMAL_REASONS)
    check(not bad, "guest.throttle", observed=f"under load: {', '.join(decode_reasons(bad))} "
          f"({tele['hw_slowdown_samples']} of {tele['samples']} samples)",
          expected="no hardware or thermal slowdown (power cap is fine)")


def test_no_xid_under_load(guest: Any, guest_facts: HostFacts, probe: Probe) -> None:
    probe("stress")  # the burn has run (cached): read the kernel log again, fresh
    before = parse_xids(guest_facts.get(gather_kernel_log))
    new = parse_xids(gather_kernel_log(guest))[len(before):]
    observe(xids_under_load=[x.describe() for x in new])
    check(not new, "guest.xid", observed="; ".join(x.describe() for x in new[:10]),
          expected="no new NVRM Xid line during the tests")
