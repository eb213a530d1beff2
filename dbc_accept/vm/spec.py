"""What the test VM is made of: the spec, check_env's sizing, the choice of GPU functions.

A run id tags everything one run creates: the domain ``dbc-accept-<run id>`` carries it in
its ``<metadata>``, the overlay volume in its name ``dbc-accept-<run id>.qcow2``. The ids
made by :func:`new_run_id` also name the process that made them, so a sweep can tell a
live run's VM from a leftover.
"""

from __future__ import annotations

import calendar
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dbc_accept import gpuids

PREFIX = "dbc-accept-"
NS = "urn:dbc-accept:vm:1"  # the metadata namespace that marks a domain as this tool's
NS_PREFIX = "dbca"
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# new_run_id(): UTC time, creating pid, random part
_CONTROL_RE = re.compile("[\x00-\x1f\ufffe\uffff]")  # not carried by XML 1.0
_MADE_ID_RE = re.compile(r"^(?P<stamp>\d{8}T\d{6})-p(?P<pid>\d+)-[0-9a-f]{6}$")

GIB_KIB = 1024 * 1024
HOST_RESERVED_KIB = 32 * GIB_KIB  # check_env keeps 32 GB for the host
CHECK_ENV_MAX_KIB = 1_000_000_000  # check_env caps the VM's memory at 1e9 KiB
MIN_MEMORY_MIB = 1024
NVIDIA = "10de"


@dataclass(frozen=True)
class VmSpec:
    """Everything needed to create one test VM."""

    uri: str
    image: str  # the template; never written
    gpus: tuple[str, ...]  # host PCI addresses, every function of each chosen GPU's group
    memory_mib: int
    vcpus: int
    virt_type: str = "kvm"  # or "qemu" (TCG: no host-passthrough CPU, no KVM hiding)
    network: str = "default"
    uefi: bool = False
    kernel: str | None = None  # direct kernel boot
    initrd: str | None = None
    cmdline: str | None = None
    console_log: str = ""  # serial console written to this file ("" = not logged)
    run_id: str = ""  # "" = a fresh one (see new_run_id)

    def __post_init__(self) -> None:
        if self.virt_type not in ("kvm", "qemu"):
            raise ValueError(f"virt_type must be kvm or qemu, not {self.virt_type!r}")
        if self.memory_mib < 64 or self.vcpus < 1:
            raise ValueError(f"memory {self.memory_mib} MiB / {self.vcpus} vCPUs is too small")
        if self.run_id and not RUN_ID_RE.match(self.run_id):
            raise ValueError(f"run id {self.run_id!r}: use letters, digits, '.', '_', '-'")
        for bdf in self.gpus:
            normalize_bdf(bdf)
        for name in ("uri", "image", "network", "kernel", "initrd", "cmdline", "console_log"):
            value = getattr(self, name) or ""
            if _CONTROL_RE.search(value):
                raise ValueError(f"{name} {value!r} contains control characters")


def new_run_id(now: float | None = None, pid: int | None = None) -> str:
    """A fresh run id: ``20261128T190501-p1234-a1b2c3`` (UTC, creating pid, random)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-p{os.getpid() if pid is None else pid}-{secrets.token_hex(3)}"


def run_id_origin(run_id: str) -> tuple[float, int] | None:
    """(creation time, creating pid) of an id made by new_run_id; None for other ids."""
    m = _MADE_ID_RE.match(run_id)
    if not m:
        return None
    made = time.strptime(m["stamp"], "%Y%m%dT%H%M%S")
    return float(calendar.timegm(made)), int(m["pid"])


def domain_name(run_id: str) -> str:
    return f"{PREFIX}{run_id}"


def volume_name(run_id: str) -> str:
    return f"{PREFIX}{run_id}.qcow2"


_BDF_RE = re.compile(r"^(?:(?P<dom>[0-9a-fA-F]{4}):)?(?P<bus>[0-9a-fA-F]{2}):"
                     r"(?P<slot>[0-9a-fA-F]{2})\.(?P<fn>[0-7])$")


def normalize_bdf(text: str) -> str:
    """``01:00.0`` or ``0000:01:00.0`` -> ``0000:01:00.0``; ValueError otherwise."""
    m = _BDF_RE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a PCI address (like 0000:01:00.0)")
    return f"{m['dom'] or '0000'}:{m['bus']}:{m['slot']}.{m['fn']}".lower()


def size_like_check_env(host_mem_kib: int, gpus_used: int, gpus_total: int, host_cpus: int,
                        sockets: int = 1, threads_per_core: int = 1) -> tuple[int, int]:
    """(memory MiB, vCPUs) as check_env sizes its VM for a share of the node's GPUs.

    Memory: (RAM - 32 GB) x used/total, or 10% of RAM without a GPU, capped at 1e9 KiB.
    vCPUs: check_env keeps one core per socket for the host; the VM gets the same share
    of the rest as of the GPUs (10% without a GPU). Never less than 1 GiB / 1 vCPU.
    """
    if gpus_used < 0 or gpus_total < 0 or gpus_used > gpus_total:
        raise ValueError(f"{gpus_used} of {gpus_total} GPUs")
    share = gpus_used / gpus_total if gpus_used else 0.1
    base_kib = host_mem_kib - HOST_RESERVED_KIB if gpus_used else host_mem_kib
    mem_kib = min(int(max(0, base_kib) * share), CHECK_ENV_MAX_KIB)
    usable = max(1, host_cpus - max(1, sockets) * max(1, threads_per_core))
    vcpus = max(1, int(usable * share))
    return max(MIN_MEMORY_MIB, mem_kib // 1024), vcpus


# --- choosing the GPUs -------------------------------------------------------------------

@dataclass(frozen=True)
class _Fn:
    bdf: str
    vendor: str  # "10de"
    pci_class: str  # "0300"
    group: str | None  # IOMMU group, None without an IOMMU
    device: str = ""  # "2204"


def _field(obj: Any, *names: str) -> Any:
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    return None


def _hex(value: Any, width: int, int_width: int | None = None) -> str:
    """Leading hex digits of an id given as text ("0x030000", "0300") or as an int."""
    if isinstance(value, int):
        digits = int_width or width
        return f"{value:0{digits}x}"[:width]
    text = str(value or "").lower()
    text = text[2:] if text.startswith("0x") else text
    return text[:width].rjust(width, "0") if text else ""


def _as_fn(obj: Any) -> _Fn:
    """Read a PCI function from the facts gatherer's dataclass (or a dict of the same)."""
    bdf = _field(obj, "bdf", "address", "slot")
    if not bdf:
        raise ValueError(f"PCI function without an address: {obj!r}")
    group = _field(obj, "iommu_group", "group")
    return _Fn(
        bdf=normalize_bdf(str(bdf)),
        vendor=_hex(_field(obj, "vendor", "vendor_id"), 4),
        # the facts gatherer's pci_class is the 24-bit int (class, subclass, prog-if)
        pci_class=_hex(_field(obj, "pci_class", "device_class"), 4, int_width=6),
        group=None if group is None or group == "" else str(group),
        device=_hex(_field(obj, "device", "device_id"), 4),
    )


def _is_gpu(fn: _Fn) -> bool:
    # NVIDIA display controllers (VGA 0300, 3D 0302, other 0380), or --gpu-ids: one per GPU
    return gpuids.is_gpu(fn.vendor, fn.device, int(fn.pci_class or "0", 16) << 8)


def _companions(gpu: _Fn, fns: list[_Fn]) -> list[str]:
    """Every function that must go with the GPU: its IOMMU group, bridges left out."""
    if gpu.group is not None:
        mates = [f for f in fns if f.group == gpu.group]
    else:  # no IOMMU: the functions of the GPU's slot (check_env's lspci choice)
        mates = [f for f in fns if f.bdf[:-1] == gpu.bdf[:-1]]
    return sorted(f.bdf for f in mates if not f.pci_class.startswith("06"))


def choose_gpus(pci_functions: Iterable[Any], spec: str) -> list[str]:
    """``--gpus all | N | addr,addr`` -> every function of each chosen GPU's IOMMU group."""
    fns = sorted((_as_fn(f) for f in pci_functions), key=lambda f: f.bdf)
    gpus = [f for f in fns if _is_gpu(f)]
    text = spec.strip().lower()
    have = ", ".join(g.bdf for g in gpus) or "none"
    if text == "all":
        chosen = gpus
    elif text.isdigit():
        count = int(text)
        if count > len(gpus):
            raise ValueError(f"--gpus {spec}: this node has {len(gpus)} GPU(s) ({have})")
        chosen = gpus[:count]
    else:
        chosen = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            try:
                bdf = normalize_bdf(part)
            except ValueError as exc:
                raise ValueError(f"--gpus {spec}: {exc}; or use 'all' or a count") from None
            match = [g for g in gpus if g.bdf == bdf]
            if not match:
                raise ValueError(f"--gpus {spec}: {bdf} is not a GPU on this node "
                                 f"(GPUs: {have})")
            chosen.extend(m for m in match if m not in chosen)
        if not chosen:
            raise ValueError(f"--gpus {spec!r}: give 'all', a count, or PCI addresses")
    out: list[str] = []
    for gpu in chosen:
        out.extend(b for b in _companions(gpu, fns) if b not in out)
    return out
