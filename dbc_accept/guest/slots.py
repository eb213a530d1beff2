"""GPU slots of the in-guest tests: which GPUs the guest must show, and their results.

The rule for skipping and failing GPU tests is in ``tests_vm/conftest.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from dbc_accept.facts.gpu_guest import GpuHealth, GpuInventory, model_of
from dbc_accept.guest.thresholds import safe_id
from dbc_accept.messages import fill
from dbc_accept.settings import settings
from dbc_accept.verdict import FactError, fail


@dataclass(frozen=True)
class Slot:
    """One GPU the guest must show: its index in PCI order, and the model if known."""

    index: int
    model: str = ""

    @property
    def id(self) -> str:
        return f"gpu{self.index}" + (f"-{safe_id(self.model)}" if self.model else "")


def _sysfs_models() -> list[str] | None:
    """NVIDIA GPU models in this machine's sysfs (model name or PCI id); None if unreadable."""
    from dbc_accept.facts.pci import gather_pci_devices, nvidia_gpus
    from dbc_accept.target import LocalTarget

    try:
        gpus = nvidia_gpus(gather_pci_devices(LocalTarget()))
    except FactError:
        return None
    return [(model_of(g.pci_id) or {}).get("name", g.pci_id) for g in gpus]


def gpu_slots(config: pytest.Config) -> list[Slot] | None:
    """The GPU slots known at collection; None when unknown (ssh:// without --expect-gpus)."""
    found = settings(config)
    expect = found.expect_gpus
    mode = found.guest.mode
    models: list[str] | None = None
    if mode in ("local", "vm"):
        models = _sysfs_models()
        gpus = found.gpus.strip()
        if mode == "vm" and models is not None and gpus.isdigit():
            models = models[:int(gpus)]
        elif mode == "vm" and models is not None and gpus != "all":
            models = [""] * len([p for p in gpus.split(",") if p.strip()])
    if expect is not None:
        models = (models or [])[:expect] + [""] * max(0, expect - len(models or []))
    if models is None:
        return None
    return [Slot(i, m) for i, m in enumerate(models)]


# The guest's kernel log read just before the burn (or why it could not be read): the Xid
# check after the burn compares with it, whichever test read the log first.
KERNEL_LOG_BEFORE_BURN = pytest.StashKey["str | FactError"]()


def expected_gpu_count(config: pytest.Config, guest: Any) -> int | None:
    """--expect-gpus, else the GPUs passed to the guest, else None (not known)."""
    expect = settings(config).expect_gpus
    if expect is not None:
        return expect
    passed = getattr(guest, "passed_gpus", None)
    return None if passed is None else len(passed)


def entry_of(doc: dict[str, Any], slot: Slot, check: str) -> dict[str, Any]:
    """The per-GPU entry of a probe's result for ``slot``; fail when absent or broken."""
    __tracebackhide__ = True
    gpus = doc.get("gpus") or []
    found = [g for g in gpus if g.get("index") == slot.index]
    if not found:
        fail("guest.gpu_count", observed=fill(f"GPU {slot.index} missing: {{guest}} shows "
             f"{len(gpus)} GPU(s)", "en"),
             expected=f"GPU {slot.index} ({slot.model or 'any model'})")
    entry: dict[str, Any] = found[0]
    if "error" in entry:
        fail(check, observed=f"GPU {slot.index} ({entry.get('name', '?')}): {entry['error']}",
             expected="the work runs on every GPU")
    return entry


def inventory_gpu(inventory: list[GpuInventory], slot: Slot) -> GpuInventory:
    """The guest's GPU of ``slot`` (PCI order); fail when the guest does not show it."""
    __tracebackhide__ = True
    if slot.index >= len(inventory):
        fail("guest.gpu_count", observed=fill(f"GPU {slot.index} missing: {{guest}} shows "
             f"{len(inventory)} GPU(s)", "en"),
             expected=f"GPU {slot.index} ({slot.model or 'any'})")
    return inventory[slot.index]


def health_gpu(healths: list[GpuHealth], gpu: GpuInventory) -> GpuHealth:
    """The ``nvidia-smi -q`` block of ``gpu`` (by bus id, else by position)."""
    __tracebackhide__ = True
    for health in healths:
        if health.bus_id.lower() == gpu.bus_id.lower():
            return health
    if gpu.index < len(healths):
        return healths[gpu.index]
    fail("guest.nvml", observed=f"nvidia-smi -q has no block for {gpu.bus_id}",
         expected="one block per GPU")
