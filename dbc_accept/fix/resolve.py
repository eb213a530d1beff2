"""From the findings of a host run to the steps of one script, with this node's values.

Every finding's check id leads to its :class:`~dbc_accept.remedies.Remedy`; its actions
become *pieces* (shell lines under a group name). Pieces of one group merge into one step,
so a remedy that several checks ask for (``net.ip_forward`` now and at boot, eight GPU
functions off vfio-pci) is one step, and the kernel parameters of every check are one GRUB
edit. What needs a person (no actions, or :class:`~dbc_accept.fix.actions.Manual`) becomes a
note: a comment, never a command.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

from dbc_accept.facts import HostFacts
from dbc_accept.fix import actions as a
from dbc_accept.remedies import REMEDIES, Remedy, remedy_for
from dbc_accept.verdict import Finding

QUOTA_OPTIONS = ("prjquota", "pquota", "pqnoenforce")
DATA = "/data"
REPLACEABLE = ("intel_iommu", "amd_iommu", "iommu", "kvm.ignore_msrs")


@dataclass(frozen=True)
class Piece:
    """Shell lines of one group; ``order`` places the group's step in the script."""

    group: str
    order: int
    title: str
    lines: tuple[str, ...]
    words: tuple[str, ...] = ()  # merged by union into the first line (package names)


@dataclass
class Step:
    """One step of the script: lines, what it is for, which checks asked for it."""

    group: str
    order: int
    title: str
    lines: list[str]
    words: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # "net.ip_forward (FAIL)"
    guide: list[str] = field(default_factory=list)

    def body(self) -> list[str]:
        if not self.words:
            return list(self.lines)
        return [f"{self.lines[0]} {' '.join(shlex.quote(w) for w in self.words)}",
                *self.lines[1:]]


@dataclass
class Note:
    """What a person must do (a comment in the script)."""

    check: str
    level: str
    text: str


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # tests that failed without a finding

    @property
    def empty(self) -> bool:
        return not self.steps and not self.notes and not self.unchecked


def _quote(*words: str) -> str:
    return " ".join(shlex.quote(w) for w in words)


# --- each action, with this node's values, as pieces -------------------------------------


def _sysctl(act: a.Sysctl, node: HostFacts) -> list[Piece]:
    return [Piece("sysctl", 20, "sysctl settings now and at boot (/etc/sysctl.conf)",
                  (f"set_sysctl {_quote(act.key, act.value)}",))]


def _module(act: a.Module, node: HostFacts) -> list[Piece]:
    return [Piece("modules", 10, "kernel modules loaded now and at boot "
                  "(/etc/modules-load.d/NAME.conf)", (f"load_module {_quote(act.name)}",))]


def _libvirtd_conf(act: a.LibvirtdConf, node: HostFacts) -> list[Piece]:
    from dbc_accept.facts.libvirtd import gather_libvirtd_conf

    conf = node.try_get(gather_libvirtd_conf)
    if conf is not None and str(conf.get(act.key)) == act.value.strip('"'):
        return []  # this key is right; another one failed the check
    return [Piece("libvirtd.conf", 30, "libvirtd's TCP settings in /etc/libvirt/libvirtd.conf",
                  (f"libvirtd_conf {_quote(act.key, act.value)}",))]


def _listen_arg(act: a.LibvirtdListenArg, node: HostFacts) -> list[Piece]:
    from dbc_accept.facts.libvirtd import args_variables, gather_daemon_args

    args = node.try_get(gather_daemon_args)
    variables = args.variables if args else args_variables("")
    return [Piece("libvirtd.args", 31, "libvirtd started with -l (/etc/default/libvirtd)",
                  tuple(f"libvirtd_arg {_quote(v)}" for v in variables))]


def _mask(act: a.MaskUnits, node: HostFacts) -> list[Piece]:
    from dbc_accept.facts.libvirtd import gather_socket_masks

    links = node.try_get(gather_socket_masks) or {}
    units = [u for u in act.units if links.get(u) != "/dev/null"]
    return [Piece("mask", 32, "libvirtd's socket units masked (libvirtd listens itself)",
                  tuple(f"mask_unit {_quote(u)}" for u in units))] if units else []


def _enable(act: a.EnableUnit, node: HostFacts) -> list[Piece]:
    return [Piece(f"enable:{act.unit}", 36, f"{act.unit} enabled and running",
                  (f"enable_unit {_quote(act.unit)}",))]


def _network(act: a.LibvirtNetwork, node: HostFacts) -> list[Piece]:
    return [Piece(f"network:{act.name}", 40, f"libvirt network '{act.name}' defined, active "
                  "and autostarted", (f"libvirt_network {_quote(act.name)}",))]


def _packages(act: a.Packages, node: HostFacts) -> list[Piece]:
    from dbc_accept.facts.virt import PACKAGES, gather_packages

    if act.names:
        wanted = list(act.names)
    else:
        installed = node.try_get(gather_packages)
        wanted = ["|".join(alts) for alts in PACKAGES.values()
                  if installed is None or not any(
                      n in installed and installed[n].installed for n in alts)]
    return [Piece("packages", 0, "the guide's Debian packages installed (apt-get)",
                  ("apt_install",), tuple(wanted))] if wanted else []


def _gpu_functions(node: HostFacts) -> list[tuple[str, str, str]]:
    """(bdf, vendor:device, driver) of every GPU function a VM gets."""
    from dbc_accept.facts.pci import gather_pci_devices, nvidia_functions

    functions = node.try_get(gather_pci_devices) or []
    return [(f.bdf, f.pci_id, f.driver or "") for f in nvidia_functions(functions)]


def _persisted_ids(node: HostFacts) -> tuple[set[str], list[str]]:
    """The ids vfio-pci claims at boot, and those given in modprobe.d (kept when rewritten)."""
    from dbc_accept.facts.kernel import (
        gather_cmdline,
        gather_grub_cmdline,
        gather_modprobe_config,
        parse_cmdline,
        persisted_vfio_ids,
    )

    config = node.try_get(gather_modprobe_config)
    given = [i for w in (config.module_options("vfio-pci") if config else [])
             if w.startswith("ids=") for i in w.partition("=")[2].split(",") if i]
    if config is None:
        return set(), given
    cmdline = node.try_get(gather_cmdline) or parse_cmdline("")
    return persisted_vfio_ids(cmdline, config, node.try_get(gather_grub_cmdline)), given


def _vfio(act: a.VfioIds, node: HostFacts) -> list[Piece]:
    functions = _gpu_functions(node)
    persisted, given = _persisted_ids(node)
    lines = []
    if any(i not in persisted for _, i, _ in functions):
        ids = sorted({i for _, i, _ in functions} | {i.lower() for i in given})
        lines.append(f"vfio_ids {_quote(','.join(ids))}")
    drivers = sorted({drv for _, _, drv in functions if drv and drv != "vfio-pci"})
    lines += [f"vfio_before {_quote(drv)}" for drv in drivers]
    lines += [f"bind_vfio {_quote(bdf)}" for bdf, _, drv in functions if drv != "vfio-pci"]
    if not lines:
        return []
    return [Piece("vfio", 50, "the GPU functions on vfio-pci now and at every boot "
                  "(/etc/modprobe.d/vfio.conf, initramfs)", tuple(lines))]


def _blacklist(act: a.Blacklist, node: HostFacts) -> list[Piece]:
    from dbc_accept.facts.kernel import gather_modprobe_config

    config = node.try_get(gather_modprobe_config)
    missing = [m for m in act.modules if config is None or m not in config.blacklist]
    if not missing:
        return []
    return [Piece("blacklist", 45, "the guide's driver blacklist "
                  "(/etc/modprobe.d/blacklist.conf)",
                  tuple(f"blacklist_module {_quote(m)}" for m in missing))]


def _kernel_params(act: a.KernelParams, node: HostFacts) -> list[Piece | str]:
    from dbc_accept.facts.cpu import gather_cpuinfo
    from dbc_accept.facts.kernel import gather_grub_cmdline

    cpu = node.try_get(gather_cpuinfo)
    iommu = "amd_iommu=on" if cpu is not None and cpu.is_amd else "intel_iommu=on"
    grub = node.try_get(gather_grub_cmdline)
    present = set(grub.raw.split()) if grub else set()
    lines, booted = [], []
    for param in (iommu if p == a.IOMMU_ON else p for p in act.params):
        if param in present:
            booted.append(param)  # set for the next boot already: a reboot applies it
            continue
        key = param.partition("=")[0]
        replace = key if act.replaces and key in REPLACEABLE else ""
        lines.append(f"grub_param {_quote(param)}" + (f" {_quote(replace)}" if replace else ""))
    found: list[Piece | str] = [Piece(
        "grub", 80, "kernel parameters in GRUB_CMDLINE_LINUX_DEFAULT (/etc/default/grub), "
        "then update-grub", tuple(lines))] if lines else []
    if booted:
        found.append(f"{' '.join(booted)} already in /etc/default/grub for the next boot: "
                     "reboot (after `sudo update-grub` if it did not run since the edit)")
    return found


def _fstab(act: a.FstabQuota, node: HostFacts) -> list[Piece]:
    from dbc_accept.facts.storage import gather_fstab, gather_mounts, mount_of

    entries = [e for e in node.try_get(gather_fstab) or [] if e.mount_point == DATA]
    mount = mount_of(node.try_get(gather_mounts) or [], DATA)
    if entries and set(QUOTA_OPTIONS) & set(entries[-1].options):
        return []
    if not entries and (mount is None or mount.fstype != "xfs"):
        return []  # no disk known for /data: the note says what to do
    spec, fstype = (entries[-1].spec, entries[-1].fstype) if entries else (
        mount.source, mount.fstype) if mount else ("", "")
    return [Piece("fstab", 60, f"pquota among the /etc/fstab options of {DATA}",
                  (f"fstab_quota {_quote(DATA, spec, fstype)}",))]


def _chmod(act: a.Chmod, node: HostFacts) -> list[Piece]:
    return [Piece(f"chmod:{act.path}", 61, f"{act.path} mode {act.mode}",
                  (f"chmod_dir {_quote(act.path, act.mode)}",))]


RESOLVERS: dict[type, Callable[..., Sequence[Piece | str]]] = {
    a.Sysctl: _sysctl, a.Module: _module, a.LibvirtdConf: _libvirtd_conf,
    a.LibvirtdListenArg: _listen_arg, a.MaskUnits: _mask, a.EnableUnit: _enable,
    a.LibvirtNetwork: _network, a.Packages: _packages, a.VfioIds: _vfio,
    a.Blacklist: _blacklist, a.KernelParams: _kernel_params, a.FstabQuota: _fstab,
    a.Chmod: _chmod,
}

LIBVIRTD_CONFIG = {"libvirtd.conf", "libvirtd.args", "mask"}  # the groups that change libvirtd

# Steps that only act when an earlier step changed something (a flag under /run).
FOLLOW_UPS = (
    (LIBVIRTD_CONFIG,
     Piece("libvirtd.restart", 35, "libvirtd restarted after its configuration changed",
           ("restart_pending libvirtd libvirtd.service",))),
    ({"grub"}, Piece("update-grub", 81, "update-grub after the GRUB change",
                     ("update_grub_pending",))),
    ({"blacklist", "vfio"}, Piece("initramfs", 90, "the initramfs rebuilt (blacklist, "
                                  "vfio-pci ids)", ("update_initramfs_pending",))),
)

# Checks a host run cannot judge while libvirtd does not answer (they skip behind
# libvirtd.connect, dbc_accept/prereqs.py). When the script configures or starts libvirtd, it
# takes their steps too, so that one script suffices; each step looks first, so a check that
# would have passed changes nothing.
LIBVIRTD_GROUPS = LIBVIRTD_CONFIG | {"enable:libvirtd.service"}
UNREACHABLE = {"libvirtd.connect", "libvirtd.listening"}
BEHIND_LIBVIRTD = ("virt.default_network",)

# Needs a person even when the remedy's actions ran (a remount, a reboot).
AFTER = {
    "FstabQuota": f"pquota takes effect when {DATA} is mounted again: reboot, or stop what "
                  f"uses {DATA} (VMs, the dbc program) and `umount {DATA} && mount {DATA}`; "
                  "never format a disk that holds data",
}


def plan(findings: list[Finding], node: HostFacts, warn_steps: bool = True,
         unchecked: list[str] | None = None) -> Plan:
    """The steps and notes for ``findings`` (WARNs left out when ``warn_steps`` is off)."""
    result = Plan(unchecked=list(unchecked or []))
    steps: dict[str, Step] = {}
    for finding in findings:
        if finding.level != "fail" and not warn_steps:
            continue
        remedy = REMEDIES.get(finding.check, Remedy(finding.fix))
        label = f"{finding.check} ({finding.level.upper()})"
        acted = False
        for act in remedy.actions:
            resolver = RESOLVERS.get(type(act))
            pieces = resolver(act, node) if resolver else ()
            for piece in pieces:
                if isinstance(piece, str):
                    _note(result, finding, piece)
                else:
                    _add(steps, piece, label, remedy.step)
                acted = True
            if pieces and type(act).__name__ in AFTER:
                _note(result, finding, AFTER[type(act).__name__])
        manual = not remedy.actions or any(
            isinstance(x, a.Manual) for x in remedy.actions)
        if manual or not acted:
            _note(result, finding, remedy_for(finding.check, "en") if finding.check in REMEDIES
                  else finding.fix)
    _behind_libvirtd(findings, steps, node)
    for groups, piece in FOLLOW_UPS:
        if groups & set(steps):
            _add(steps, piece, "", "")
    result.steps = sorted(steps.values(), key=lambda s: (s.order, s.group))
    return result


def _behind_libvirtd(findings: list[Finding], steps: dict[str, Step], node: HostFacts) -> None:
    """When libvirtd did not answer and a step configures or starts it: the steps of the
    checks that could not judge then."""
    if not (UNREACHABLE & {f.check for f in findings} and LIBVIRTD_GROUPS & set(steps)):
        return
    for check in BEHIND_LIBVIRTD:
        label = f"{check} (not judged: libvirtd did not answer)"
        for act in REMEDIES[check].actions:
            for piece in RESOLVERS[type(act)](act, node):
                if isinstance(piece, Piece) and piece.group not in steps:
                    _add(steps, piece, label, REMEDIES[check].step)


def _add(steps: dict[str, Step], piece: Piece, label: str, guide: str) -> None:
    step = steps.setdefault(piece.group, Step(piece.group, piece.order, piece.title, []))
    for line in piece.lines:
        if line not in step.lines:
            step.lines.append(line)
    for word in piece.words:
        if word not in step.words:
            step.words.append(word)
    if label and label not in step.checks:
        step.checks.append(label)
    if guide and guide not in step.guide:
        step.guide.append(guide)


def _note(result: Plan, finding: Finding, text: str) -> None:
    level = finding.level.upper()
    if not any(n.check == finding.check and n.text == text for n in result.notes):
        result.notes.append(Note(finding.check, level, text))
