"""Unit: every GPU is the renter's alone before anything runs: no other process on it, its
memory as free as the driver leaves it, and idle. These run first (see the conftest)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.gpu_guest import gather_inventory, model_of
from dbc_accept.guest.slots import Slot, entry_of, inventory_gpu
from dbc_accept.verdict import check, observe, warn

pytestmark = [pytest.mark.vm, pytest.mark.unit, pytest.mark.gpu]
Probe = Callable[[str], "dict[str, Any]"]

# Memory used at start may exceed what the driver takes on an idle card of the model
# (gpu_models.json idle_used_mib_ref, measured) by this much; CUDA contexts of other
# programs take ~500 MiB each, and the process check names them.
IDLE_MEMORY_SLACK_MIB = 512
# Without a measured figure: this share of the card's memory, at least IDLE_MEMORY_FLOOR_MIB.
IDLE_MEMORY_SHARE, IDLE_MEMORY_FLOOR_MIB = 0.015, 1024
IDLE_UTIL_PCT = 5  # mean utilization over the sample (NVML: share of time a kernel ran)


def describe(procs: list[dict[str, Any]]) -> str:
    """'pid 123 python3 (compute, 80.0 GiB)' for each process."""
    out = []
    for p in procs:
        used = p.get("used_bytes")
        mem = f", {used / 2**30:.1f} GiB" if isinstance(used, int) else ""
        out.append(f"pid {p['pid']} {p.get('name') or '(name not visible here)'} "
                   f"({p.get('type', '?')}{mem})")
    return "; ".join(out)


def test_gpu_no_other_process(slot: Slot, probe: Probe) -> None:
    entry = entry_of(probe("gpu_free"), slot, "guest.gpu_in_use")
    procs = entry.get("processes") or []
    observe(gpu_processes=describe(procs) or "none")
    check(not procs, "guest.gpu_in_use",
          observed=f"GPU {slot.index} runs {len(procs)} other process(es): {describe(procs)}",
          expected="no compute or graphics process on the GPU before the tests")
    kinds = set(entry.get("process_kinds") or [])
    if kinds != {"compute", "graphics"}:
        warn("guest.nvml", observed=f"NVML lists only {sorted(kinds) or 'no'} process kinds",
             expected="compute and graphics processes listed")


def idle_allowance_mib(device_id: str, total_mib: float) -> tuple[float, str]:
    """Most memory.used an idle GPU of this model may show, and where that figure comes from."""
    known = model_of(device_id) or {}
    ref = known.get("idle_used_mib_ref")
    if ref is not None:
        return float(ref) + IDLE_MEMORY_SLACK_MIB, (
            f"{ref} MiB the driver takes on an idle {known['name']} (measured) "
            f"+ {IDLE_MEMORY_SLACK_MIB} MiB")
    most = max(IDLE_MEMORY_FLOOR_MIB, IDLE_MEMORY_SHARE * total_mib)
    return most, f"{IDLE_MEMORY_SHARE:.1%} of {total_mib:.0f} MiB, at least " \
                 f"{IDLE_MEMORY_FLOOR_MIB} MiB (no measured figure for this model)"


def test_gpu_memory_free_at_start(slot: Slot, probe: Probe, guest_facts: HostFacts) -> None:
    gpu = inventory_gpu(guest_facts.get(gather_inventory), slot)
    entry = entry_of(probe("gpu_free"), slot, "guest.gpu_in_use")
    used, total = entry["memory_used"] / 2**20, entry["memory_total"] / 2**20
    most, why = idle_allowance_mib(gpu.device_id, total)
    observe(memory_used_at_start_mib=round(used), memory_used_allowance_mib=round(most))
    check(used <= most, "guest.gpu_in_use",
          observed=f"GPU {slot.index}: {used:.0f} MiB of {total:.0f} MiB in use before the "
          f"tests", expected=f"<= {most:.0f} MiB ({why})")


def test_gpu_idle(slot: Slot, probe: Probe) -> None:
    doc = probe("gpu_free")
    entry = entry_of(doc, slot, "guest.gpu_in_use")
    util = entry.get("utilization") or []
    observe(utilization_at_start_pct=util)
    check(bool(util), "guest.nvml", observed="no utilization reading",
          expected=f"NVML utilization sampled over {doc.get('seconds', 1):g} s")
    mean = sum(util) / len(util)
    check(mean <= IDLE_UTIL_PCT, "guest.gpu_in_use",
          observed=f"GPU {slot.index} busy {mean:.0f}% of the time over "
          f"{doc.get('seconds', 1):g} s before the tests (samples {util})",
          expected=f"idle (<= {IDLE_UTIL_PCT}%)")
