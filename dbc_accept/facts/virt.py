"""(一) What libvirt's virt-host-validate checks besides CPU and IOMMU, and the packages.

Device nodes (/dev/vhost-net, /dev/net/tun), cgroup controllers (v1: /proc/cgroups; v2:
/sys/fs/cgroup/cgroup.controllers), the install guide's packages (/var/lib/dpkg/status)
and the OVMF firmware for UEFI guests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dbc_accept.facts import list_optional, read, read_optional
from dbc_accept.target import Target
from dbc_accept.verdict import FactError

DPKG_STATUS = "/var/lib/dpkg/status"
# The guide's `apt-get install` line (vim and expect left out: not needed by a node), and
# xfsprogs from (二). qemu-kvm is a transitional name: qemu-system-x86 provides it.
PACKAGES: dict[str, tuple[str, ...]] = {
    "qemu-kvm": ("qemu-kvm", "qemu-system-x86"),
    "libvirt-clients": ("libvirt-clients",),
    "libvirt-daemon-system": ("libvirt-daemon-system",),
    "bridge-utils": ("bridge-utils",),
    "virt-manager": ("virt-manager",),
    "ovmf": ("ovmf",),
    "cpu-checker": ("cpu-checker",),
    "xfsprogs": ("xfsprogs",),
}
CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "devices", "blkio")
# cgroup v2 renamed or folded some v1 controllers: cpuacct is part of cpu, blkio is io,
# and devices is enforced with eBPF (no controller file); libvirt handles all of them.
V2_EQUIVALENT = {"cpuacct": "cpu", "blkio": "io", "devices": None}
OVMF_DIRS = ("/usr/share/OVMF", "/usr/share/ovmf")


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    status: str

    @property
    def installed(self) -> bool:
        return self.status.split()[-1:] == ["installed"]


@dataclass(frozen=True)
class Cgroups:
    version: int  # 1 (or hybrid) or 2
    enabled: frozenset[str]

    def has(self, controller: str) -> bool:
        if self.version == 2 and controller in V2_EQUIVALENT:
            other = V2_EQUIVALENT[controller]
            return other is None or other in self.enabled
        return controller in self.enabled


@dataclass(frozen=True)
class DeviceNodes:
    vhost_net: bool
    tun: bool


def parse_dpkg_status(text: str) -> dict[str, Package]:
    """Parse dpkg's status file (RFC 822-like stanzas) into {package: Package}."""
    packages: dict[str, Package] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if not line or line[0] in " \t" or ":" not in line:
                continue  # continuation lines of Description, Conffiles, ...
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        if "Package" in fields:
            packages[fields["Package"]] = Package(fields["Package"], fields.get("Version", ""),
                                                  fields.get("Status", ""))
    if text.strip() and not packages:
        raise ValueError("no 'Package:' stanza")
    return packages


def parse_proc_cgroups(text: str) -> frozenset[str]:
    """The enabled v1 controllers of /proc/cgroups (name hierarchy num_cgroups enabled)."""
    enabled = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 4 or not fields[3].isdigit():
            raise ValueError(f"line {number}: expected 4 fields, got {line!r}")
        if fields[3] == "1":
            enabled.add(fields[0])
    return frozenset(enabled)


def parse_cgroup_controllers(text: str) -> frozenset[str]:
    """The controllers of cgroup v2's cgroup.controllers (one line of names)."""
    names = text.split()
    bad = [n for n in names if not re.fullmatch(r"[a-z_]+", n)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a controller name")
    return frozenset(names)


def gather_packages(target: Target) -> dict[str, Package]:
    try:
        return parse_dpkg_status(read(target, DPKG_STATUS))
    except ValueError as exc:
        raise FactError(DPKG_STATUS, str(exc), verb="parse") from None


def gather_cgroups(target: Target) -> Cgroups:
    unified = read_optional(target, "/sys/fs/cgroup/cgroup.controllers")
    if unified is not None:
        try:
            return Cgroups(2, parse_cgroup_controllers(unified))
        except ValueError as exc:
            raise FactError("/sys/fs/cgroup/cgroup.controllers", str(exc), verb="parse") from None
    try:
        return Cgroups(1, parse_proc_cgroups(read(target, "/proc/cgroups")))
    except ValueError as exc:
        raise FactError("/proc/cgroups", str(exc), verb="parse") from None


def gather_device_nodes(target: Target) -> DeviceNodes:
    dev = list_optional(target, "/dev")
    if not dev:
        raise FactError("/dev", "empty or missing")
    return DeviceNodes("vhost-net" in dev, "tun" in list_optional(target, "/dev/net"))


def gather_ovmf(target: Target) -> list[str]:
    """The OVMF firmware files found (paths)."""
    found: list[str] = []
    for folder in OVMF_DIRS:
        found.extend(f"{folder}/{name}" for name in list_optional(target, folder)
                     if name.startswith(("OVMF_CODE", "OVMF.fd")) and name.endswith(".fd"))
    return found


GATHERERS = [gather_packages, gather_cgroups, gather_device_nodes, gather_ovmf]
