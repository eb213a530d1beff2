"""(三) 1 and vfio: the IOMMU in firmware, enabled on the kernel command line, groups made."""

from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.cpu import gather_cpuinfo
from dbc_accept.facts.kernel import gather_cmdline
from dbc_accept.facts.pci import gather_acpi_tables, gather_iommu_groups
from dbc_accept.verdict import check, fail, warn

pytestmark = pytest.mark.host


def test_iommu_in_firmware(node: HostFacts) -> None:
    tables = node.get(gather_acpi_tables)
    check(bool(tables & {"DMAR", "IVRS"}), "iommu.firmware",
          observed="no DMAR or IVRS table in /sys/firmware/acpi/tables "
                   "(VT-d/AMD-Vi off in the BIOS)",
          expected="a DMAR (Intel VT-d) or IVRS (AMD-Vi) ACPI table")


def test_iommu_on_cmdline(node: HostFacts) -> None:
    cmdline = node.get(gather_cmdline)
    cpu = node.get(gather_cpuinfo)
    param = "amd_iommu" if cpu.is_amd else "intel_iommu"
    # Given twice (GRUB_CMDLINE_LINUX and _DEFAULT), the kernel keeps the last one.
    values = [v for v in (cmdline.get(param) or "").split(",") if v]
    if "on" in values:
        return
    seen = f"{param}={','.join(values) or '(absent)'} in /proc/cmdline: {cmdline.raw}"
    expected = f"{param}=on on the kernel command line ({cpu.vendor} CPU)"
    if not values and node.get(gather_iommu_groups):
        # The kernel turned the IOMMU on by default (AMD kernels do; some Intel builds
        # too): it works, but the guide sets the parameter, so its absence only warns.
        warn("iommu.cmdline", observed=seen + " (the IOMMU is on by the kernel's default)",
             expected=expected)
        return
    fail("iommu.cmdline", observed=seen, expected=expected)


def test_iommu_passthrough(node: HostFacts) -> None:
    cmdline = node.get(gather_cmdline)
    check("pt" in cmdline.values("iommu"), "iommu.passthrough",
          observed=f"iommu={','.join(cmdline.values('iommu')) or '(absent)'} "
                   f"in /proc/cmdline: {cmdline.raw}",
          expected="iommu=pt on the kernel command line")


def test_iommu_groups(node: HostFacts) -> None:
    groups = node.get(gather_iommu_groups)
    check(bool(groups), "iommu.groups",
          observed="/sys/kernel/iommu_groups is empty: the kernel did not enable the IOMMU",
          expected="IOMMU groups under /sys/kernel/iommu_groups")
