"""The test VM to make, from what the run asks and what this host has (a pure function).

:func:`plan_vm` chooses the GPU functions (``--gpus``) and sizes the VM as check_env does
(unless ``--vm-memory`` / ``--vm-vcpus`` say otherwise). It reads nothing itself: the
caller passes the host's PCI functions, its memory and its CPU count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dbc_accept.facts.pci import nvidia_gpus
from dbc_accept.verdict import FactError
from dbc_accept.vm.spec import VmSpec, choose_gpus, size_like_check_env


class PlanError(ValueError):
    """The test VM cannot be made as asked; the message names the option to change."""


@dataclass(frozen=True)
class VmRequest:
    """What the run asks of the test VM (the ``--vm-*``, ``--gpus`` and ``--libvirt-uri``
    options); None: sized as check_env does."""

    uri: str
    image: str  # an absolute path
    gpus: str = "all"
    memory_mib: int | None = None
    vcpus: int | None = None
    virt_type: str = "kvm"
    network: str = "default"
    uefi: bool = False
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None


@dataclass(frozen=True)
class VmPlan:
    """The test VM to create (without its run id) and the host's PCI functions."""

    spec: VmSpec
    pci_functions: list[Any]


def plan_vm(request: VmRequest, functions: Sequence[Any] | FactError, memory_kib: int | None,
            cpus: int) -> VmPlan:
    """The test VM for ``request`` on a host with these PCI ``functions`` (or why they could
    not be read), ``memory_kib`` of memory (None: unknown) and ``cpus`` logical CPUs.

    PlanError with the fix when it cannot be made.
    """
    if isinstance(functions, FactError):
        if request.gpus.strip() != "0":
            raise PlanError(f"--gpus {request.gpus}: {functions}; use --gpus 0")
        functions = []
    try:
        chosen = choose_gpus(functions, request.gpus)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    all_gpus = nvidia_gpus(functions)
    used = sum(1 for g in all_gpus if g.bdf in chosen)
    if memory_kib is None:
        raise PlanError("cannot read MemTotal from /proc/meminfo: give --vm-memory")
    memory, vcpus = size_like_check_env(memory_kib, used, len(all_gpus), cpus)
    try:
        spec = VmSpec(
            uri=request.uri, image=request.image, gpus=tuple(chosen),
            memory_mib=request.memory_mib or memory, vcpus=request.vcpus or vcpus,
            virt_type=request.virt_type, network=request.network, uefi=request.uefi,
            kernel=request.kernel, initrd=request.initrd, cmdline=request.cmdline)
    except ValueError as exc:
        raise PlanError(f"test VM options: {exc}") from None
    return VmPlan(spec, list(functions))
