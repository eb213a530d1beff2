"""`dbc-accept fix --snapshot`: each fault of the fault selftests gives the expected steps.

The faults are those of test_faults_host_a/b (one change to a good snapshot); the good
snapshots give a script with no step. Steps are compared line by line with what the script
must run; what needs a person must be a comment, never a command.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dbc_accept.cli import main
from selftests import test_faults_host_a as fa
from selftests import test_faults_host_b as fb
from selftests.fix_support import commands, notes, steps, write_fix
from selftests.snapshot_harness import Snapshot, copy_snapshot

INTEL, AMD = "intel-2204-4gpu", "amd-2004-1gpu"
MUTATIONS: dict[str, tuple[Callable[[Snapshot], object], str]] = {
    **{f.name: (f.mutate, f.base) for f in fa.FAULTS},
    **{f.name: (f.mutate, f.base) for f in fb.FAULTS},
}
FB_OFF = [f"grub_param {p}" for p in
          ("nofb", "video=vesafb:off", "video=efifb:off", "vga=off",
           "initcall_blacklist=sysfb_init")]
RESTART = "restart_pending libvirtd libvirtd.service"
INITRAMFS = "update_initramfs_pending"


def no_iommu_pt(s: Snapshot) -> None:
    s.replace("/proc/cmdline", "iommu=pt ", "")
    s.replace("/etc/default/grub", "iommu=pt ", "")


def amd_iommu_off(s: Snapshot) -> None:
    for path in ("/proc/cmdline", "/etc/default/grub"):
        s.replace(path, "amd_iommu=on", "amd_iommu=off")


@dataclass(frozen=True)
class Case:
    faults: tuple[str, ...]
    lines: list[str]  # every line of every step, in order
    note: str = ""  # text the comments for a person must hold
    base: str = ""
    args: tuple[str, ...] = ()
    extra: tuple[Callable[[Snapshot], object], ...] = field(default=())


CASES = {
    "ip-forward-now": Case(("ip-forward-0",), ["set_sysctl net.ipv4.ip_forward 1"]),
    "ip-forward-at-boot": Case(("ip-forward-not-persisted",),
                               ["set_sysctl net.ipv4.ip_forward 1"]),
    "br-netfilter": Case(("br-netfilter-not-loaded",), [
        "load_module br_netfilter", "set_sysctl net.bridge.bridge-nf-call-iptables 1",
        "set_sysctl net.bridge.bridge-nf-call-ip6tables 1"]),
    "br-netfilter-at-boot": Case(("br-netfilter-not-at-boot",), ["load_module br_netfilter"]),
    "blacklist": Case(("blacklist-missing",), [
        *(f"blacklist_module {m}" for m in ("snd_hda_intel", "vga16fb", "nouveau", "rivatv")),
        INITRAMFS]),
    "nvidia-loaded-blacklisted": Case(("nvidia-loaded",), [], note="[drivers.not_loaded] FAIL"),
    "audio-function-off-vfio": Case(("audio-on-snd-hda-intel",),
                                    ["vfio_before snd_hda_intel",
                                     "bind_vfio 0000:3b:00.1", INITRAMFS]),
    "binding-not-persisted": Case(("manual-binding-only",),
                                  ["vfio_ids 10de:1aef,10de:2204", INITRAMFS]),
    "binding-not-persisted-fails-only": Case(("manual-binding-only",), [],
                                             args=("--fails-only",)),
    "amd-modprobe-ids": Case(("amd-modprobe-ids-removed",),
                             ["vfio_ids 10de:1aef,10de:2231", INITRAMFS]),
    "stray-in-gpu-group": Case(("nic-shares-gpu-group",), [], note="[gpu.iommu_group] FAIL"),
    "framebuffer": Case(("bar-cant-reserve",), [*FB_OFF, "update_grub_pending"]),
    "iommu-pt": Case((), ["grub_param iommu=pt iommu", "update_grub_pending"],
                     extra=(no_iommu_pt,)),
    "amd-iommu-off": Case((), ["grub_param amd_iommu=on amd_iommu", "update_grub_pending"],
                          base=AMD, extra=(amd_iommu_off,)),
    "iommu-in-grub-not-booted": Case(("intel-iommu-off",), [],
                                     note="intel_iommu=on iommu=pt already in /etc/default/grub"),
    "no-vt-x": Case(("no-vmx",), [], note="[cpu.virt_flags] FAIL: enable VT-x"),
    "no-vt-d": Case(("no-dmar",), [], note="[iommu.firmware] FAIL: enable VT-d"),
    "listen-tcp": Case(("listen-tcp-commented",), ["libvirtd_conf listen_tcp 1", RESTART]),
    "auth-tcp": Case(("auth-tcp-sasl",), ["libvirtd_conf auth_tcp '\"none\"'", RESTART]),
    "libvirtd-conf-unreadable": Case(("conf-garbage",), [
        "libvirtd_conf listen_tls 0", "libvirtd_conf listen_tcp 1",
        "libvirtd_conf auth_tcp '\"none\"'", RESTART]),
    "listen-arg-2204": Case(("no-listen-arg-2204",), [
        "libvirtd_arg LIBVIRT_ARGS", "libvirtd_arg LIBVIRTD_ARGS", RESTART]),
    "listen-arg-2004": Case(("no-listen-arg-2004",), ["libvirtd_arg libvirtd_opts", RESTART]),
    "socket": Case(("socket-not-masked",), ["mask_unit libvirtd-tcp.socket", RESTART]),
    "service-disabled": Case(("service-disabled",), ["enable_unit libvirtd.service"]),
    "service-inactive": Case(("service-inactive",), ["enable_unit libvirtd.service"]),
    "package": Case(("package-missing",), ["apt_install virt-manager"]),
    "default-network": Case(("default-network-inactive",), ["libvirt_network default"]),
    # libvirtd down: the network check could not judge, and the script that starts libvirtd
    # sees to the network too (one script suffices)
    "libvirtd-down": Case(("service-inactive", "connection-refused"),
                          ["enable_unit libvirtd.service", "libvirt_network default"]),
    "libvirtd-unreachable-no-step": Case(("connection-refused",), [],
                                         note="[libvirtd.connect] FAIL"),
    "tun": Case(("no-tun",), ["load_module tun"]),
    "vhost-net-warn": Case(("no-vhost-net",), ["load_module vhost_net"]),
    "fstab-pquota": Case(("fstab-without-pquota",), ["fstab_quota /data /dev/sdb xfs"],
                         note="pquota takes effect when /data is mounted again"),
    "fstab-line": Case(("not-in-fstab",), ["fstab_quota /data /dev/sdb xfs"]),
    "mounted-without-pquota": Case(("no-pquota",), [], note="`sudo umount /data && sudo "
                                   "mount -a` (a remount cannot turn quotas on)"),
    "data-not-xfs": Case(("data-ext4",), [], note="mkfs.xfs"),
    "no-data-disk": Case(("data-missing",), [], note="[storage.mount] FAIL"),
    "small-ram": Case(("ram-16g",), [], note="[host.memory] FAIL"),
}


def fixed_script(case: Case, tmp_path: Path) -> str:
    base = case.base or (MUTATIONS[case.faults[0]][1] if case.faults else INTEL)
    snap = copy_snapshot(base, tmp_path)
    for name in case.faults:
        MUTATIONS[name][0](snap)
    for mutate in case.extra:
        mutate(snap)
    return write_fix(snap, *case.args)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fault_gives_its_steps(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    text = fixed_script(case, tmp_path)
    assert commands(text) == case.lines, text
    assert case.note in notes(text), text
    if not case.lines:
        assert "echo 'dbc-accept fix: nothing to fix'" in text
        assert "set -eu" not in text, "a script without steps has nothing to run"
    for line in text.splitlines():  # never a disk formatted, whatever the fault
        assert "mkfs" not in line or line.startswith("#"), line


def test_step_names_its_checks_and_guide_step(tmp_path: Path) -> None:
    text = fixed_script(Case(("br-netfilter-not-loaded",), []), tmp_path)
    by_title = {s.title: s for s in steps(text)}
    modules = by_title["kernel modules loaded now and at boot (/etc/modules-load.d/NAME.conf)"]
    assert modules.checks == "# for: net.br_netfilter (FAIL), net.bridge_nf (FAIL); install " \
                             "guide (三) 3, (三) vfio"
    assert text.startswith("#!/bin/sh\n") and "\nset -eu\n" in text


GROUPED = {
    "sysctl-now-and-at-boot": (("ip-forward-0", "ip-forward-not-persisted"),
                               ["set_sysctl net.ipv4.ip_forward 1"]),
    "module-for-two-checks": (("br-netfilter-not-loaded", "br-netfilter-not-at-boot"), [
        "load_module br_netfilter", "set_sysctl net.bridge.bridge-nf-call-iptables 1",
        "set_sysctl net.bridge.bridge-nf-call-ip6tables 1"]),
    "one-grub-edit": (("bar-cant-reserve", "no-iommu-pt-anywhere"),
                      [*FB_OFF, "grub_param iommu=pt iommu", "update_grub_pending"]),
    "one-apt-get": (("package-missing", "no-ovmf"), ["apt_install virt-manager ovmf"]),
    "libvirtd-restarted-once": (("listen-tcp-commented", "no-listen-arg-2204",
                                 "socket-not-masked", "service-disabled"), [
        "libvirtd_conf listen_tcp 1", "libvirtd_arg LIBVIRT_ARGS", "libvirtd_arg LIBVIRTD_ARGS",
        "mask_unit libvirtd-tcp.socket", RESTART, "enable_unit libvirtd.service"]),
    "initramfs-once": (("blacklist-missing", "manual-binding-only"), [
        *(f"blacklist_module {m}" for m in ("snd_hda_intel", "vga16fb", "nouveau", "rivatv")),
        "vfio_ids 10de:1aef,10de:2204", INITRAMFS]),
}


@pytest.mark.parametrize("name", sorted(GROUPED))
def test_one_step_per_remedy(name: str, tmp_path: Path) -> None:
    faults, lines = GROUPED[name]
    snap = copy_snapshot(INTEL, tmp_path)
    for fault in faults:
        (no_iommu_pt if fault == "no-iommu-pt-anywhere" else MUTATIONS[fault][0])(snap)
    text = write_fix(snap)
    assert sorted(commands(text)) == sorted(lines), text
    titles = [s.title for s in steps(text)]
    assert len(titles) == len(set(titles)), text


@pytest.mark.parametrize("base", [INTEL, AMD])
def test_good_snapshot_has_nothing_to_fix(base: str, tmp_path: Path) -> None:
    snap = copy_snapshot(base, tmp_path)
    text = write_fix(snap)
    assert steps(text) == [] and "set -eu" not in text
    assert "echo 'dbc-accept fix: nothing to fix'" in text
    # The good snapshots only WARN that no monitor server is set (a person's choice).
    assert "[dbc.monitor] WARN" in notes(text)
    quiet = write_fix(snap, "--fails-only")
    assert notes(quiet) == "" and "# Nothing to fix: no FAIL." in quiet


@pytest.mark.parametrize("args,message", [
    (["--yes"], "--yes goes with --apply"),
    (["--snapshot", "SNAP", "--apply"], "--snapshot writes the script only"),
    (["--snapshot", "/nonexistent/snap"], "not a snapshot folder"),
    (["--hosts", "ssh://a,ssh://b"], "one host at a time"),
    (["--hosts", "ssh://a", "--apply", "-o", "-"], "--apply writes the script to a file"),
    (["-o", "/nonexistent/folder/fix.sh"], "not a file in an existing folder"),
    (["--hosts", "bogus://x"], "--hosts bogus://x"),
])
def test_usage_errors(args: list[str], message: str, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    snap = copy_snapshot(INTEL, tmp_path)
    argv = ["fix", *[str(snap.root) if a == "SNAP" else a for a in args]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dbc-accept fix: ") and message in err and err.count("\n") == 1, err


def test_unreachable_host_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fix.sh"
    rc = main(["fix", "--hosts", "ssh://root@127.0.0.1:1", "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists(), err
    assert err.startswith("dbc-accept fix: ") and "cannot connect" in err, err
    assert err.count("\n") == 1, err


def test_live_run_writes_a_script_it_does_not_run(tmp_path: Path) -> None:
    # This machine, whatever it is: the script is written, parses, and nothing ran.
    out = tmp_path / "fix.sh"
    assert main(["fix", "-o", str(out), "-q"]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("#!/bin/sh\n# dbc-accept fix for this machine (") and os.access(
        out, os.X_OK)
    for shell in ("sh", "bash"):
        done = subprocess.run([shell, "-n", str(out)], capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, done.stderr
    assert not Path("/run/dbc-accept-fix").exists()


def test_hosts_gives_the_live_script(tmp_path: Path) -> None:
    # --hosts reads the node through testinfra (here its local backend): the same script.
    live, remote = tmp_path / "live.sh", tmp_path / "remote.sh"
    assert main(["fix", "-o", str(live), "-q"]) == 0
    assert main(["fix", "--hosts", "local://", "-o", str(remote), "-q"]) == 0

    def body(path: Path) -> list[str]:
        return path.read_text(encoding="utf-8").splitlines()[3:]

    assert remote.read_text(encoding="utf-8").startswith("#!/bin/sh\n# dbc-accept fix for local://")
    assert body(remote) == body(live)
