"""The node as tested, for the report: the host's facts and the guest's.

Host facts come from the same gatherers as the checks (through :class:`HostFacts`, so the
report costs no extra reads): OS, kernel, CPU, RAM, each NVIDIA function by PCI address with
its driver and IOMMU group, and the number of IOMMU groups. On a correct node the GPUs sit
on vfio-pci, so the host's ``nvidia-smi`` cannot answer; the guest's GPUs, VRAM, driver,
CUDA and torch come from the guest's own probes (the benchmark's and NVML's).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from dbc_accept.facts import HostFacts
from dbc_accept.verdict import FactError

T = TypeVar("T")
GIB = 1024 ** 3


def _try(fn: Callable[[], T]) -> T | str:
    try:
        return fn()
    except FactError as exc:
        return f"unknown ({exc})"
    except Exception as exc:  # a fact for the report must never break the report
        return f"unknown ({type(exc).__name__}: {exc})"


def host_facts(node: HostFacts) -> dict[str, Any]:
    """OS, kernel, CPU, RAM, GPUs (PCI address, id, driver, IOMMU group), IOMMU groups."""
    from dbc_accept.facts.cpu import gather_cpuinfo
    from dbc_accept.facts.pci import gather_iommu_groups, gather_pci_devices
    from dbc_accept.facts.storage import gather_memory
    from dbc_accept.facts.system import gather_os_release

    def cpu() -> str:
        info = node.get(gather_cpuinfo)
        return f"{info.model_name} ({info.processors} threads)"

    def gpus() -> list[dict[str, str]]:
        return [{"pci": f.bdf, "id": f.pci_id, "kind": f.kind, "driver": f.driver or "none",
                 "iommu_group": f.iommu_group or "none"}
                for f in node.get(gather_pci_devices) if f.is_nvidia]

    return {
        "OS": _try(lambda: node.get(gather_os_release).pretty_name),
        "Kernel": _try(lambda: kernel_release(node)),
        "CPU": _try(cpu),
        "RAM": _try(lambda: f"{node.get(gather_memory) / GIB:.1f} GiB"),
        "GPUs": _try(gpus),
        "IOMMU groups": _try(lambda: str(len(node.get(gather_iommu_groups)))),
    }


def kernel_release(node: HostFacts) -> str:
    """The running kernel: /proc/sys/kernel/osrelease, else BOOT_IMAGE of /proc/cmdline."""
    try:
        return node.target.read_text("/proc/sys/kernel/osrelease").strip()
    except OSError as exc:
        try:
            cmdline = node.target.read_text("/proc/cmdline")
        except OSError:
            raise exc from None
        found = re.search(r"BOOT_IMAGE=\S*?vmlinuz-(\S+)", cmdline)
        if found is None:
            raise
        return found.group(1)


def _values(results: Iterable[Any]) -> dict[str, Any]:
    """Every value the guest tests observed (the last one of a name wins)."""
    seen: dict[str, Any] = {}
    for result in results:
        seen.update(getattr(result, "values", {}) or {})
    return seen


def guest_facts(env: dict[str, Any] | None, results: Iterable[Any]) -> dict[str, Any]:
    """The guest's GPUs (name, VRAM), driver, CUDA and torch; {} when no guest ran."""
    values = _values(results)
    env = env or {}
    if not env and not any(k in values for k in ("driver", "torch", "cuda")):
        return {}
    gpus = [f"{g.get('index', i)}: {g.get('name', '?')}, "
            f"{int(g.get('memory_bytes', 0)) / GIB:.0f} GiB"
            for i, g in enumerate(env.get("gpus") or [])]
    return {
        "GPUs": gpus or values.get("gpus") or "none seen",
        "Driver": values.get("driver") or env.get("driver") or "unknown",
        "CUDA": env.get("cuda") or values.get("cuda") or "unknown",
        "torch": env.get("torch") or values.get("torch") or "unknown",
        "Python": env.get("python") or "unknown",
    }
