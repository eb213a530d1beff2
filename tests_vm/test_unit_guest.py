"""Unit: the guest's CPUs, RAM and root disk against the --profile's thresholds."""

from __future__ import annotations

from typing import Any

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.cpu import gather_cpu_count
from dbc_accept.facts.gpu_guest import gather_inventory
from dbc_accept.facts.storage import gather_memory, gather_size
from dbc_accept.guest.probe import ProbeRunner
from dbc_accept.guest.slots import expected_gpu_count
from dbc_accept.guest.thresholds import GIB, Need, Thresholds, gib, need
from dbc_accept.settings import settings
from dbc_accept.verdict import check, observe

pytestmark = [pytest.mark.vm, pytest.mark.unit]


def _need(request: pytest.FixtureRequest, guest: Any, facts: HostFacts,
          thresholds: Thresholds) -> Need:
    """The thresholds for the GPUs this guest must have (or shows, when that is unknown)."""
    inventory = facts.try_get(gather_inventory) or []
    count = expected_gpu_count(request.config, guest)
    vram = sum((g.memory_mib or 0) for g in inventory) / 1024
    return need(thresholds, len(inventory) if count is None else count, vram)


def test_cpu_cores(request: pytest.FixtureRequest, guest: Any, guest_facts: HostFacts,
                   thresholds: Thresholds) -> None:
    want = _need(request, guest, guest_facts, thresholds)
    if want.cpus is None:
        pytest.skip(f"profile {settings(request.config).profile} sets no CPU threshold")
    cpus = guest_facts.get(gather_cpu_count)
    have = cpus.physical if want.cpu_kind == "physical" else cpus.logical
    observe(cpu_logical=cpus.logical, cpu_physical=cpus.physical)
    check(have >= want.cpus, "guest.cpu", observed=f"{have} {want.cpu_kind} cores",
          expected=f">= {want.cpus} {want.cpu_kind} cores")


def test_memory(request: pytest.FixtureRequest, guest: Any, guest_facts: HostFacts,
                thresholds: Thresholds) -> None:
    want = _need(request, guest, guest_facts, thresholds)
    if want.ram_gib is None:
        pytest.skip(f"profile {settings(request.config).profile} sets no RAM threshold")
    total = guest_facts.get(gather_memory)
    observe(ram_gib=gib(total))
    check(total >= want.ram_gib * GIB, "guest.memory", observed=f"{gib(total)} GiB",
          expected=f">= {want.ram_gib:.1f} GiB")


def test_root_disk(request: pytest.FixtureRequest, guest: Any, guest_facts: HostFacts,
                   thresholds: Thresholds) -> None:
    want = _need(request, guest, guest_facts, thresholds)
    if want.root_disk_gib is None:
        pytest.skip(f"profile {settings(request.config).profile} sets no disk threshold")
    size = guest_facts.get(gather_size, "/")
    observe(root_disk_gib=gib(size))
    check(size >= want.root_disk_gib * GIB, "guest.disk", observed=f"/ is {gib(size)} GiB",
          expected=f">= {want.root_disk_gib} GiB")


def test_guest_python(probes: ProbeRunner) -> None:
    doc = probes.get("sysinfo")
    observe(guest_python=doc["python"], guest_kernel=doc["kernel"])
    check(tuple(doc["python_tuple"]) >= (3, 8), "guest.python", observed=doc["python"],
          expected=">= 3.8 (what the in-guest probes need)")
