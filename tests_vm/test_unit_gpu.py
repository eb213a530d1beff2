"""Unit: the guest's GPUs: count, model, driver, NVML, CUDA, VRAM, PCIe link, health."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable

import pytest

from dbc_accept.facts import HostFacts, read_optional
from dbc_accept.facts.gpu_guest import (
    HW_REASON_NAMES,
    THERMAL_REASON_NAMES,
    gather_health,
    gather_inventory,
    gather_kernel_log,
    gather_xconfig_displays,
    gpu_models,
    memory_tolerance,
    model_of,
    parse_xids,
)
from dbc_accept.guest.slots import (
    Slot,
    entry_of,
    expected_gpu_count,
    health_gpu,
    inventory_gpu,
)
from dbc_accept.guest.thresholds import Thresholds
from dbc_accept.messages import fill
from dbc_accept.settings import settings
from dbc_accept.verdict import check, observe, warn

pytestmark = [pytest.mark.vm, pytest.mark.unit, pytest.mark.gpu]
Probe = Callable[[str], "dict[str, Any]"]


def test_gpu_count(request: pytest.FixtureRequest, guest: Any, guest_facts: HostFacts,
                   thresholds: Thresholds) -> None:
    inventory = guest_facts.get(gather_inventory)
    want = expected_gpu_count(request.config, guest)
    observe(gpus=[f"{g.index}: {g.name} {g.bus_id} [{g.device_id}]" for g in inventory])
    if want is None:
        least = int(thresholds.gpu_min or 1)
        check(len(inventory) >= least, "guest.gpu_count", observed=f"{len(inventory)} GPU(s)",
              expected=f">= {least} GPU(s)")
        return
    check(len(inventory) == want, "guest.gpu_count", observed=f"{len(inventory)} GPU(s)",
          expected=f"{want} GPU(s) (passed through or --expect-gpus)")
    passed = getattr(guest, "passed_gpus", None)
    if passed and settings(request.config).expect_gpus is None:
        seen, sent = Counter(g.device_id for g in inventory), Counter(p.pci_id for p in passed)
        check(seen == sent, "guest.gpu_model", observed=dict(seen), expected=dict(sent))


def test_gpu_model(slot: Slot, guest: Any, guest_facts: HostFacts) -> None:
    gpu = inventory_gpu(guest_facts.get(gather_inventory), slot)
    observe(name=gpu.name, pci_id=gpu.device_id, bus_id=gpu.bus_id, uuid=gpu.uuid)
    passed = getattr(guest, "passed_gpus", None)
    if passed:
        ids = sorted({p.pci_id for p in passed})
        check(gpu.device_id in ids, "guest.gpu_model", observed=f"{gpu.name} [{gpu.device_id}]",
              expected=f"a GPU the host passed through: {', '.join(ids)}")
    known = model_of(gpu.device_id)
    if known is None:
        warn("guest.gpu_model", observed=f"{gpu.name} [{gpu.device_id}] is not in the model "
             "table", expected=f"one of {len(gpu_models())} known models (VRAM, bandwidth)")


def test_driver_loaded(guest: Any, guest_facts: HostFacts) -> None:
    text = read_optional(guest, "/proc/driver/nvidia/version")
    match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", text or "")
    check(match is not None, "guest.driver", observed=(text or "no /proc/driver/nvidia/version")
          .strip()[:200], expected="the nvidia kernel module loaded (NVRM version line)")
    observe(driver=match.group(1) if match else None)


def test_nvml_answers(probe: Probe, guest_facts: HostFacts) -> None:
    doc = probe("nvml")
    inventory = guest_facts.get(gather_inventory)
    count = len(doc["gpus"]) if doc.get("gpus") is not None else doc.get("count")
    observe(nvml_binding=doc["binding"], driver=doc["driver"], nvml=doc.get("nvml"),
            cuda_driver=doc.get("cuda_driver"))
    check(count == len(inventory), "guest.nvml", observed=f"NVML counts {count} GPU(s)",
          expected=f"{len(inventory)} (nvidia-smi's count)")


def test_cuda_available(probe: Probe, guest_facts: HostFacts) -> None:
    doc = probe("torch_info")
    observe(python=doc["python"], torch=doc["torch"], cuda=doc["cuda"], cudnn=doc["cudnn"])
    check(doc["cuda_available"], "guest.cuda", observed=doc.get("cuda_error", "no CUDA"),
          expected=f"torch {doc['torch']} sees the GPUs")
    inventory = guest_facts.get(gather_inventory)
    check(len(doc["devices"]) == len(inventory), "guest.cuda",
          observed=f"torch sees {len(doc['devices'])} GPU(s)",
          expected=f"{len(inventory)} (nvidia-smi's count)")


def test_vram_total(slot: Slot, guest_facts: HostFacts, thresholds: Thresholds) -> None:
    gpu = inventory_gpu(guest_facts.get(gather_inventory), slot)
    mib = gpu.memory_mib or 0
    observe(memory_mib=mib)
    least = thresholds.vram_gib_min
    if least is not None:
        check(mib >= least * 1024, "guest.vram", observed=f"{mib:.0f} MiB",
              expected=f">= {least} GiB (profile)")
    known = model_of(gpu.device_id)
    if known is not None:
        tol = memory_tolerance()
        want = float(known["memory_mib"])
        check(abs(mib - want) <= tol * want, "guest.vram", observed=f"{mib:.0f} MiB",
              expected=f"{want:.0f} MiB ± {tol:.0%} for {known['name']}")


def test_pcie_link(slot: Slot, probe: Probe, guest_facts: HostFacts) -> None:
    gpu = inventory_gpu(guest_facts.get(gather_inventory), slot)
    entry = entry_of(probe("transfer"), slot, "guest.pcie")
    busy = (entry.get("pcie_gen_busy"), entry.get("pcie_width_busy"))
    observe(pcie_busy=f"gen{busy[0]} x{busy[1]}",
            pcie_max=f"gen{gpu.pcie_gen_max} x{gpu.pcie_width_max}", nvml=entry["nvml_source"])
    check(busy == (gpu.pcie_gen_max, gpu.pcie_width_max), "guest.pcie",
          observed=f"gen{busy[0]} x{busy[1]} while copying",
          expected=f"gen{gpu.pcie_gen_max} x{gpu.pcie_width_max} (the link's maximum)")


def test_ecc_mode(slot: Slot, guest_facts: HostFacts) -> None:
    gpu = inventory_gpu(guest_facts.get(gather_inventory), slot)
    health = health_gpu(guest_facts.get(gather_health), gpu)
    observe(ecc_current=health.ecc_current, ecc_pending=health.ecc_pending)
    if health.ecc_current in ("N/A", ""):
        pytest.skip(f"{gpu.name} has no ECC (nvidia-smi: ECC Mode N/A)")
    check(health.ecc_current == "Enabled", "guest.ecc", observed=f"ECC {health.ecc_current}",
          expected="ECC Enabled")
    check(health.ecc_pending == health.ecc_current, "guest.ecc", level="warn",
          observed=f"pending ECC mode {health.ecc_pending}", expected=health.ecc_current)


def test_ecc_errors(slot: Slot, guest_facts: HostFacts) -> None:
    gpu = inventory_gpu(guest_facts.get(gather_inventory), slot)
    health = health_gpu(guest_facts.get(gather_health), gpu)
    vol, agg = health.uncorrectable_volatile, health.uncorrectable_aggregate
    observe(uncorrectable_volatile=vol, uncorrectable_aggregate=agg)
    check(not vol, "guest.ecc_errors", observed=f"{vol} uncorrectable ECC errors since boot",
          expected="0")
    check(not agg, "guest.ecc_errors",
          observed=f"{agg} uncorrectable ECC errors in the GPU's life (aggregate)", expected="0")


def test_memory_repair(slot: Slot, guest_facts: HostFacts) -> None:
    gpu = inventory_gpu(guest_facts.get(gather_inventory), slot)
    h = health_gpu(guest_facts.get(gather_health), gpu)
    observe(retired_pending=h.retired_pending, remap_pending=h.remap_pending,
            remap_failure=h.remap_failure)
    check(h.remap_failure != "Yes", "guest.row_remap", observed="Remapping Failure Occurred: Yes",
          expected="No")
    check(h.remap_pending != "Yes" and h.retired_pending != "Yes", "guest.remap_pending",
          observed=f"row remap pending {h.remap_pending}, page retirement pending "
          f"{h.retired_pending}", expected="nothing pending")


def test_no_xid(guest: Any, guest_facts: HostFacts) -> None:
    xids = parse_xids(guest_facts.get(gather_kernel_log))
    observe(xids=[x.describe() for x in xids])
    check(not xids, "guest.xid", observed="; ".join(x.describe() for x in xids[:10]),
          expected="no NVRM Xid line in the kernel log")


def test_clock_reasons(slot: Slot, guest_facts: HostFacts) -> None:
    gpu = inventory_gpu(guest_facts.get(gather_inventory), slot)
    active = set(health_gpu(guest_facts.get(gather_health), gpu).reasons_active)
    observe(clock_reasons=sorted(active))
    bad = active & (HW_REASON_NAMES | THERMAL_REASON_NAMES)
    check(not bad, "guest.throttle", observed=f"active: {', '.join(sorted(bad))}",
          expected="no hardware or thermal slowdown (idle and power cap are fine)")


def test_display(slot: Slot, guest: Any, guest_facts: HostFacts,
                 thresholds: Thresholds) -> None:
    gpu = inventory_gpu(guest_facts.get(gather_inventory), slot)
    want = thresholds.display_devices
    if want is None:
        pytest.skip("the profile sets no display check")
    if (model_of(gpu.device_id) or {}).get("display") is False:
        pytest.skip(f"{gpu.name} has no display outputs")
    counts = guest_facts.get(gather_xconfig_displays)
    if counts is None:
        pytest.skip(fill("nvidia-xconfig is not installed on {guest} (DBC's display check)", "en"))
    have = counts[slot.index] if slot.index < len(counts) else None
    observe(display_devices=have)
    check(have == want, "guest.display", observed=f"{have} display device(s)",
          expected=f"{want} (a display or dummy plug on the GPU)")
