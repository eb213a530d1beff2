"""Structured remedies: what a script can do about a check, as data (never parsed from prose).

Each action names the things it changes (:meth:`tokens`); the selftests assert that the
fix text printed for the check names them too, so the printed fix and the script's step
cannot drift apart. Actions whose values depend on the node (the GPUs' PCI ids, the CPU
vendor, the packages missing) are completed by :mod:`dbc_accept.fix.resolve`.
Nothing here imports the facts or the checks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    """Base of every structured remedy."""

    def tokens(self) -> tuple[str, ...]:
        """Words the check's printed fix text must contain too."""
        return ()


@dataclass(frozen=True)
class Sysctl(Action):
    """A sysctl set now (`sysctl -w`) and at boot (/etc/sysctl.conf)."""

    key: str
    value: str

    def tokens(self) -> tuple[str, ...]:
        return (self.key, "sysctl")


@dataclass(frozen=True)
class Module(Action):
    """A kernel module loaded now (modprobe) and at boot (/etc/modules-load.d/NAME.conf)."""

    name: str

    def tokens(self) -> tuple[str, ...]:
        return (self.name, "modprobe")


@dataclass(frozen=True)
class LibvirtdConf(Action):
    """`key = value` in /etc/libvirt/libvirtd.conf; libvirtd restarted after the change."""

    key: str
    value: str  # as written in the file: 0, 1, "none"

    def tokens(self) -> tuple[str, ...]:
        return ("libvirtd.conf", self.key)


@dataclass(frozen=True)
class LibvirtdListenArg(Action):
    """`-l` in /etc/default/libvirtd (libvirtd_opts on 20.04, LIBVIRT_ARGS later)."""

    def tokens(self) -> tuple[str, ...]:
        return ("/etc/default/libvirtd", "-l")


@dataclass(frozen=True)
class MaskUnits(Action):
    """systemd units masked (and stopped)."""

    units: tuple[str, ...]

    def tokens(self) -> tuple[str, ...]:
        return ("mask", *self.units)


@dataclass(frozen=True)
class EnableUnit(Action):
    """A systemd unit enabled and running."""

    unit: str

    def tokens(self) -> tuple[str, ...]:
        return ("enable", self.unit)


@dataclass(frozen=True)
class KernelParams(Action):
    """Parameters added to GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub, then update-grub.

    ``params`` may hold the placeholder ``IOMMU_ON``: intel_iommu=on or amd_iommu=on by the
    node's CPU. A parameter whose key is in ``replaces`` takes the place of another value of
    that key (iommu=soft becomes iommu=pt); the others are only added.
    """

    params: tuple[str, ...]
    replaces: bool = True

    def tokens(self) -> tuple[str, ...]:
        shown = [("intel_iommu=on" if p == IOMMU_ON else p) for p in self.params]
        return ("GRUB_CMDLINE_LINUX_DEFAULT", "update-grub", *shown)


IOMMU_ON = "IOMMU_ON"


@dataclass(frozen=True)
class VfioIds(Action):
    """Every GPU function (and the other devices of its IOMMU group) claimed by vfio-pci:
    `options vfio-pci ids=...` in /etc/modprobe.d/vfio.conf and the initramfs at boot,
    bound through driver_override now."""

    def tokens(self) -> tuple[str, ...]:
        return ("vfio-pci",)


@dataclass(frozen=True)
class Blacklist(Action):
    """`blacklist NAME` lines in /etc/modprobe.d/blacklist.conf, then the initramfs."""

    modules: tuple[str, ...]

    def tokens(self) -> tuple[str, ...]:
        return ("blacklist", "update-initramfs")


@dataclass(frozen=True)
class Initramfs(Action):
    """`update-initramfs -u -k all` (once, at the end, when a step asked for it)."""

    def tokens(self) -> tuple[str, ...]:
        return ("update-initramfs",)


@dataclass(frozen=True)
class FstabQuota(Action):
    """`pquota` among the /etc/fstab options of /data (a line added from the mount when
    there is none); it takes effect when /data is mounted again, which needs a person."""

    def tokens(self) -> tuple[str, ...]:
        return ("pquota", "/etc/fstab")


@dataclass(frozen=True)
class Chmod(Action):
    """A folder's mode (only when it is a mount point that exists)."""

    path: str
    mode: str

    def tokens(self) -> tuple[str, ...]:
        return (f"chmod {self.mode} {self.path}",)


@dataclass(frozen=True)
class Packages(Action):
    """Debian packages installed with apt-get; empty: the guide's packages that are missing."""

    names: tuple[str, ...] = ()

    def tokens(self) -> tuple[str, ...]:
        return ("apt-get install", *self.names)


@dataclass(frozen=True)
class LibvirtNetwork(Action):
    """A libvirt network defined from libvirt's shipped XML, started and autostarted."""

    name: str = "default"

    def tokens(self) -> tuple[str, ...]:
        return ("net-define", "net-start", "net-autostart", self.name)


@dataclass(frozen=True)
class Manual(Action):
    """Needs a person (BIOS, hardware, a disk that holds data): written as a comment only."""
