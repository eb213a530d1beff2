"""PCI functions from sysfs (ids, class, driver, IOMMU group, BARs) and the IOMMU's state.

The test VM reuses :func:`gather_pci_devices`, :func:`nvidia_gpus` and
:func:`iommu_group_members` to choose the GPUs it passes through: a GPU goes to a VM
together with every function of its IOMMU group.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from dbc_accept import gpuids
from dbc_accept.facts import link_optional, list_optional, read, read_optional
from dbc_accept.target import Target
from dbc_accept.verdict import FactError

PCI_DEVICES = "/sys/bus/pci/devices"
IOMMU_GROUPS = "/sys/kernel/iommu_groups"
ACPI_TABLES = "/sys/firmware/acpi/tables"
NVIDIA = "10de"
VFIO_DRIVER = "vfio-pci"

IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
BAR_COUNT = 6  # lines 0-5 of `resource` are the BARs; then the ROM, SR-IOV and windows

# Classes (class code >> 8) of the functions a GPU card carries, by name for messages.
GPU_FUNCTION_KINDS = {
    0x0300: "VGA", 0x0302: "3D", 0x0380: "display", 0x0403: "audio",
    0x0c03: "USB", 0x0c80: "serial bus",
}
PCI_BRIDGE_CLASS = 0x0604


@dataclass(frozen=True)
class Bar:
    """One base address register: index and the host address range it decodes."""

    index: int
    start: int
    end: int
    flags: int

    @property
    def is_memory(self) -> bool:
        return bool(self.flags & IORESOURCE_MEM)

    def overlaps(self, start: int, end: int) -> bool:
        return self.start <= end and start <= self.end

    def __str__(self) -> str:
        kind = "mem" if self.is_memory else "io"
        return f"BAR {self.index} [{kind} {self.start:#x}-{self.end:#x}]"


@dataclass(frozen=True)
class PciFunction:
    """One PCI function as sysfs shows it under /sys/bus/pci/devices/<bdf>/."""

    bdf: str  # 0000:01:00.0
    vendor: str  # 10de (4 lowercase hex digits)
    device: str  # 2204
    pci_class: int  # 0x030000 (class, subclass, prog-if)
    driver: str | None  # vfio-pci; None when no driver is bound
    iommu_group: str | None  # "12"; None when the IOMMU is off
    bars: tuple[Bar, ...] = ()

    @property
    def pci_id(self) -> str:
        """`vendor:device` as lspci -nn and vfio-pci.ids write it."""
        return f"{self.vendor}:{self.device}"

    @property
    def class_code(self) -> int:
        """Class and subclass (0x0300 VGA, 0x0403 audio, 0x0604 PCI bridge)."""
        return self.pci_class >> 8

    @property
    def is_nvidia(self) -> bool:
        return self.vendor == NVIDIA

    @property
    def is_gpu(self) -> bool:
        """A GPU's display function: NVIDIA class 03xx, or an id of --gpu-ids."""
        return gpuids.is_gpu(self.vendor, self.device, self.pci_class)

    @property
    def is_display(self) -> bool:
        return self.pci_class >> 16 == 0x03

    @property
    def is_bridge(self) -> bool:
        return self.class_code == PCI_BRIDGE_CLASS

    @property
    def kind(self) -> str:
        """A short name of the function's class for messages (VGA, audio, USB, ...)."""
        return GPU_FUNCTION_KINDS.get(self.class_code, f"class {self.pci_class:06x}")

    def describe(self) -> str:
        return f"{self.bdf} [{self.pci_id}] {self.kind}, driver {self.driver or 'none'}"


def parse_resource(text: str) -> tuple[Bar, ...]:
    """The used BARs (0-5) from sysfs `resource`: one `start end flags` hex triple a line."""
    bars = []
    for index, line in enumerate(text.splitlines()):
        fields = line.split()
        if len(fields) != 3:
            raise ValueError(f"line {index + 1} is not `start end flags`: {line[:60]!r}")
        try:
            start, end, flags = (int(f, 16) for f in fields)
        except ValueError:
            raise ValueError(f"line {index + 1} is not hexadecimal: {line[:60]!r}") from None
        if index < BAR_COUNT and flags and end > start:
            bars.append(Bar(index, start, end, flags))
    return tuple(bars)


def parse_hex(text: str, bits: int) -> int:
    """A sysfs id like `0x10de` or `0x030000`; ValueError unless it fits in ``bits``."""
    value = int(text.strip(), 16)
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{text.strip()!r} is out of range")
    return value


def gather_pci_function(target: Target, bdf: str) -> PciFunction:
    """One function's facts; FactError naming the sysfs file that could not be read/parsed."""
    base = f"{PCI_DEVICES}/{bdf}"
    values: dict[str, int] = {}
    for name, bits in (("vendor", 16), ("device", 16), ("class", 24)):
        path = f"{base}/{name}"
        try:
            values[name] = parse_hex(read(target, path), bits)
        except ValueError as exc:
            raise FactError(path, str(exc), verb="parse") from None
    resource = read_optional(target, f"{base}/resource")
    try:
        bars = parse_resource(resource or "")
    except ValueError as exc:
        raise FactError(f"{base}/resource", str(exc), verb="parse") from None
    driver = link_optional(target, f"{base}/driver")
    group = link_optional(target, f"{base}/iommu_group")
    return PciFunction(
        bdf=bdf, vendor=f"{values['vendor']:04x}", device=f"{values['device']:04x}",
        pci_class=values["class"],
        driver=os.path.basename(driver) if driver else None,
        iommu_group=os.path.basename(group) if group else None,
        bars=bars,
    )


def gather_pci_devices(target: Target) -> list[PciFunction]:
    """Every PCI function of the host, sorted by address."""
    names = list_optional(target, PCI_DEVICES)
    if not names:
        raise FactError(PCI_DEVICES, "no PCI devices listed (is /sys mounted?)")
    return [gather_pci_function(target, bdf) for bdf in sorted(names)]


def nvidia_gpus(functions: Iterable[PciFunction]) -> list[PciFunction]:
    """The GPUs' display functions (NVIDIA VGA or 3D controllers, or --gpu-ids): one a GPU."""
    return [f for f in functions if f.is_gpu]


def nvidia_functions(functions: Iterable[PciFunction]) -> list[PciFunction]:
    """Every function of the GPU cards that a VM gets: display, audio, USB, serial bus."""
    everything = list(functions)
    cards = gpuids.card_bdfs([(f.bdf, f.vendor, f.device, f.pci_class) for f in everything])
    return [f for f in everything if f.bdf in cards]


def iommu_group_members(functions: Iterable[PciFunction], group: str) -> list[PciFunction]:
    """The functions in IOMMU group ``group`` (all of them go to a VM together)."""
    return [f for f in functions if f.iommu_group == group]


def gpu_iommu_groups(functions: Iterable[PciFunction]) -> dict[str, list[PciFunction]]:
    """IOMMU group -> its members, for every group that holds a GPU card's function."""
    everything = list(functions)
    groups = sorted({f.iommu_group for f in nvidia_functions(everything) if f.iommu_group},
                    key=lambda g: (len(g), g))
    return {g: iommu_group_members(everything, g) for g in groups}


def gather_acpi_tables(target: Target) -> frozenset[str]:
    """Names of the firmware's ACPI tables (DMAR on Intel, IVRS on AMD, ...)."""
    return frozenset(list_optional(target, ACPI_TABLES))


def gather_iommu_groups(target: Target) -> list[str]:
    """The IOMMU groups the kernel made (none when the IOMMU is off)."""
    return list_optional(target, IOMMU_GROUPS)


GATHERERS = [gather_pci_devices, gather_acpi_tables, gather_iommu_groups]
