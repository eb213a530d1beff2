"""(三) vfio: NVIDIA GPUs present, every function on vfio-pci, whole IOMMU groups, persisted."""

from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.kernel import (
    gather_cmdline,
    gather_grub_cmdline,
    gather_modprobe_config,
    persisted_vfio_ids,
)
from dbc_accept.facts.pci import (
    VFIO_DRIVER,
    PciFunction,
    gather_pci_devices,
    gpu_iommu_groups,
    nvidia_functions,
    nvidia_gpus,
)
from dbc_accept.plugin import each
from dbc_accept.verdict import check, observe

pytestmark = pytest.mark.host


def _nvidia_functions(node: HostFacts) -> list[tuple[str, PciFunction]]:
    return [(f.bdf, f) for f in nvidia_functions(node.get(gather_pci_devices))]


def _gpu_groups(node: HostFacts) -> list[tuple[str, list[PciFunction]]]:
    groups = gpu_iommu_groups(node.get(gather_pci_devices))
    return [(f"group{g}", members) for g, members in groups.items()]


def test_nvidia_gpu_present(node: HostFacts) -> None:
    gpus = nvidia_gpus(node.get(gather_pci_devices))
    observe(gpus=[g.describe() for g in gpus])
    check(bool(gpus), "gpu.present",
          observed="no NVIDIA display controller (vendor 10de, class 03xx) in "
                   "/sys/bus/pci/devices",
          expected="at least one NVIDIA GPU")


@each(_nvidia_functions, empty="no NVIDIA PCI function on this node")
def test_function_on_vfio(node: HostFacts, entry: PciFunction) -> None:
    check(entry.driver == VFIO_DRIVER, "gpu.vfio_bound",
          observed=f"{entry.describe()}",
          expected=f"{entry.bdf} bound to {VFIO_DRIVER} (its id {entry.pci_id} in vfio-pci.ids=)")


@each(_nvidia_functions, empty="no NVIDIA PCI function on this node")
def test_vfio_binding_persisted(node: HostFacts, entry: PciFunction) -> None:
    ids = persisted_vfio_ids(node.get(gather_cmdline), node.get(gather_modprobe_config),
                             node.get(gather_grub_cmdline))
    check(entry.pci_id in ids, "gpu.vfio_persistent",
          observed=f"{entry.pci_id} ({entry.bdf}) is in no vfio-pci.ids= (/proc/cmdline, "
                   f"/etc/default/grub) and no `options vfio-pci ids=` (/etc/modprobe.d) "
                   f"(persisted ids: {', '.join(sorted(ids)) or 'none'})",
          expected=f"vfio-pci claims {entry.pci_id} at every boot", level="warn")


@each(_gpu_groups, empty="no IOMMU group holds an NVIDIA function")
def test_iommu_group_isolated(node: HostFacts, entry: list[PciFunction]) -> None:
    members = entry
    strays = [f for f in members if f.driver != VFIO_DRIVER and not f.is_bridge]
    observe(members=[f.describe() for f in members])
    check(not strays, "gpu.iommu_group",
          observed="; ".join(f.describe() for f in strays) + " shares the IOMMU group "
                   f"{members[0].iommu_group} with a GPU",
          expected="every device in a GPU's IOMMU group bound to vfio-pci (or a PCI bridge)")
