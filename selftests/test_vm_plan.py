"""The test VM's plan from the run's request and the host's facts (a pure function)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dbc_accept import gpuids
from dbc_accept.facts.pci import PciFunction
from dbc_accept.verdict import FactError
from dbc_accept.vm.plan import PlanError, VmRequest, plan_vm
from dbc_accept.vm.spec import size_like_check_env

GIB_KIB = 1024 * 1024
REQUEST = VmRequest(uri="test:///default", image="/data/ubuntu.qcow2")


def _fn(bdf: str, vendor: str, pci_class: int, group: str) -> PciFunction:
    return PciFunction(bdf, vendor, "2335", pci_class, "vfio-pci", group)


# Two GPUs with their audio functions (one IOMMU group each) and a NIC.
HOST = [
    _fn("0000:01:00.0", "10de", 0x030200, "14"),
    _fn("0000:01:00.1", "10de", 0x040300, "14"),
    _fn("0000:02:00.0", "10de", 0x030200, "15"),
    _fn("0000:02:00.1", "10de", 0x040300, "15"),
    _fn("0000:05:00.0", "8086", 0x020000, "7"),
]


@pytest.fixture(autouse=True)
def _nvidia_rule() -> Iterator[None]:
    gpuids.set_gpu_ids(None)  # NVIDIA display controllers, whatever DBC_ACCEPT_GPU_IDS says
    yield
    gpuids.reset()


def test_all_gpus_sized_as_check_env() -> None:
    plan = plan_vm(REQUEST, HOST, 512 * GIB_KIB, 64)
    assert plan.spec.gpus == ("0000:01:00.0", "0000:01:00.1", "0000:02:00.0", "0000:02:00.1")
    assert (plan.spec.memory_mib, plan.spec.vcpus) == size_like_check_env(512 * GIB_KIB, 2, 2, 64)
    assert plan.pci_functions == HOST and plan.spec.uri == "test:///default"


def test_one_gpu_gets_its_share_and_given_sizes_win() -> None:
    one = plan_vm(VmRequest(REQUEST.uri, REQUEST.image, gpus="1"), HOST, 512 * GIB_KIB, 64)
    assert one.spec.gpus == ("0000:01:00.0", "0000:01:00.1")
    assert (one.spec.memory_mib, one.spec.vcpus) == size_like_check_env(512 * GIB_KIB, 1, 2, 64)
    given = VmRequest(REQUEST.uri, REQUEST.image, gpus="0", memory_mib=2048, vcpus=2)
    plan = plan_vm(given, HOST, 512 * GIB_KIB, 64)
    assert (plan.spec.gpus, plan.spec.memory_mib, plan.spec.vcpus) == ((), 2048, 2)


def test_gpu_not_on_this_host_is_refused_with_the_gpus_it_has() -> None:
    with pytest.raises(PlanError, match=r"0000:65:00.0 is not a GPU on this node \(GPUs: "
                                        r"0000:01:00.0, 0000:02:00.0\)"):
        plan_vm(VmRequest(REQUEST.uri, REQUEST.image, gpus="0000:65:00.0"), HOST, GIB_KIB, 4)
    with pytest.raises(PlanError, match=r"--gpus 3: this node has 2 GPU\(s\)"):
        plan_vm(VmRequest(REQUEST.uri, REQUEST.image, gpus="3"), HOST, GIB_KIB, 4)


def test_unreadable_sysfs_needs_gpus_0() -> None:
    unreadable = FactError("/sys/bus/pci/devices", "no PCI devices listed (is /sys mounted?)")
    with pytest.raises(PlanError, match=r"--gpus all: .*no PCI devices listed.*; use --gpus 0"):
        plan_vm(REQUEST, unreadable, 8 * GIB_KIB, 4)
    plan = plan_vm(VmRequest(REQUEST.uri, REQUEST.image, gpus="0"), unreadable, 8 * GIB_KIB, 4)
    assert plan.spec.gpus == () and plan.pci_functions == []


def test_unknown_memory_and_bad_spec_are_refused() -> None:
    with pytest.raises(PlanError, match=r"cannot read MemTotal from /proc/meminfo: give "
                                        r"--vm-memory"):
        plan_vm(REQUEST, HOST, None, 4)
    qemu_typo = VmRequest(REQUEST.uri, REQUEST.image, virt_type="kvmm")
    with pytest.raises(PlanError, match=r"test VM options: virt_type must be kvm or qemu"):
        plan_vm(qemu_typo, HOST, 8 * GIB_KIB, 4)
