"""(三) 1-2 Hardware virtualization: VT-x/AMD-V, a working /dev/kvm, kvm.ignore_msrs."""

from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.cpu import KVM_API_VERSION, gather_cpuinfo, gather_ignore_msrs, gather_kvm
from dbc_accept.verdict import check, observe

pytestmark = pytest.mark.host


def test_cpu_virtualization_flags(node: HostFacts) -> None:
    cpu = node.get(gather_cpuinfo)
    observe(cpu=cpu.model_name, vendor=cpu.vendor, processors=cpu.processors)
    check(bool(cpu.virt_flags), "cpu.virt_flags",
          observed=f"{cpu.model_name or cpu.vendor}: no vmx or svm flag in /proc/cpuinfo",
          expected="vmx (Intel VT-x) or svm (AMD-V) among the CPU flags")


def test_kvm_device(node: HostFacts) -> None:
    kvm = node.get(gather_kvm)
    if not kvm.exists:
        seen = "/dev/kvm does not exist"
    elif kvm.error:
        seen = f"/dev/kvm exists but {kvm.error}"
    else:
        seen = f"KVM_GET_API_VERSION answered {kvm.api_version}"
    check(kvm.usable, "cpu.kvm_device", observed=seen,
          expected=f"/dev/kvm answers KVM_GET_API_VERSION with {KVM_API_VERSION}")


def test_kvm_ignore_msrs(node: HostFacts) -> None:
    msrs = node.get(gather_ignore_msrs)
    seen = (f"kvm module ignore_msrs={msrs.module_value}" if msrs.module_value is not None
            else f"kvm.ignore_msrs={msrs.cmdline_value} on the kernel command line")
    check(msrs.enabled, "cpu.ignore_msrs", observed=seen,
          expected="kvm.ignore_msrs=1 (guests with NVIDIA drivers read MSRs KVM does not know)",
          level="warn")
