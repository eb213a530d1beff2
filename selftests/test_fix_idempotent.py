"""A `dbc-accept fix` script run for real, twice, on a folder that stands for /.

The folder is a faulty snapshot's own file tree (``DBC_FIX_ROOT``), the commands are the
stand-ins of fake_node_bin.py (they change the tree as the kernel, systemd, libvirt and apt
would). The first run must fix every check that reads files, which a replay of the host
checks on the same snapshot proves; the second run must change nothing: the tree is the
same file for file, and no command that changes anything ran.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from selftests import test_faults_host_a as fa
from selftests import test_faults_host_b as fb
from selftests.fake_node_bin import install
from selftests.fix_support import BACKUP, commands, notes, write_fix
from selftests.snapshot_harness import Snapshot, copy_snapshot

MUTATIONS = {**{f.name: f.mutate for f in fa.FAULTS}, **{f.name: f.mutate for f in fb.FAULTS}}
# Every fault a script can fix, at once, as on a node just installed (Intel, Ubuntu 22.04).
FAULTS = ("ip-forward-0", "ip-forward-not-persisted", "br-netfilter-not-loaded",
          "br-netfilter-not-at-boot", "blacklist-missing", "audio-on-snd-hda-intel",
          "manual-binding-only", "listen-tcp-commented", "auth-tcp-sasl", "no-listen-arg-2204",
          "socket-not-masked", "service-disabled", "package-missing", "fstab-without-pquota",
          "no-tun", "no-vhost-net", "bar-cant-reserve", "default-network-inactive")
# What a replay of the snapshot cannot see fixed: the kernel command line of this boot and
# its log (a reboot), and what libvirt's own answer says (a recorded command).
AFTER_REBOOT = {"test_iommu.py::test_iommu_passthrough",
                "test_framebuffer.py::test_no_bar_reserve_errors",
                "test_virt_parity.py::test_default_network"}


def faulty_node(tmp_path: Path) -> Snapshot:
    snap = copy_snapshot("intel-2204-4gpu", tmp_path)
    for name in FAULTS:
        MUTATIONS[name](snap)
    snap.replace("/proc/cmdline", "iommu=pt ", "")
    snap.replace("/etc/default/grub", "iommu=pt ", "")
    # As on a node: a module that is not loaded has no device node (and the other way round).
    snap.replace("/proc/modules", "vhost_net 32768 0 - Live 0xffffffffc0d8e000\n", "")
    snap.path("/sys/bus/pci/drivers/snd_hda_intel").mkdir(parents=True, exist_ok=True)
    return snap


def run_script(script: str, root: Path, log: Path, bin_dir: Path) -> str:
    log.write_text("", encoding="utf-8")
    env = {**os.environ, "DBC_FIX_ROOT": str(root), "FAKE_LOG": str(log),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return log.read_text(encoding="utf-8")


def kernel_probes(root: Path) -> list[str]:
    """What the kernel does on `echo BDF > drivers_probe` after a driver_override."""
    probe = root / "sys/bus/pci/drivers_probe"
    bound = probe.read_text(encoding="utf-8").split() if probe.exists() else []
    for bdf in bound:
        device = root / "sys/bus/pci/devices" / bdf
        assert (device / "driver_override").read_text(encoding="utf-8") == "vfio-pci\n"
        os.unlink(device / "driver")
        os.symlink("../../../../bus/pci/drivers/vfio-pci", device / "driver")
    return bound


def tree(root: Path) -> dict[str, str]:
    """Every path under root: a link's target, a file's digest and mode, a folder's mode."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[rel] = f"dir {path.stat().st_mode:o}"
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[rel] = f"{digest} {path.stat().st_mode:o}"
    return found


def test_script_fixes_then_changes_nothing(tmp_path: Path) -> None:
    snap = faulty_node(tmp_path / "node")
    before = snap.run(extra_args=["--node-dat-backup", str(BACKUP)])
    script = write_fix(snap)
    root, log, bin_dir = snap.root / "fs", tmp_path / "log", install(tmp_path / "bin")

    first = run_script(script, root, log, bin_dir)
    for command in ("sysctl -q -w net.ipv4.ip_forward=1", "modprobe br_netfilter",
                    "systemctl mask libvirtd-tcp.socket", "systemctl restart libvirtd.service",
                    "systemctl enable libvirtd.service", "apt-get install -y virt-manager",
                    "update-grub", "update-initramfs -u -k all", "virsh net-start default"):
        assert command in first, first
    assert kernel_probes(root) == ["0000:3b:00.1"]

    after = snap.run(extra_args=["--node-dat-backup", str(BACKUP)])
    assert after.failed == AFTER_REBOOT & before.failed, after.summary()
    assert not after.warned - {"test_dbc_network.py::test_monitor_server[dbc_monitor_server]",
                                "test_dbc_network.py::test_monitor_server[miner_monitor_server]"}

    state = tree(root)
    second = run_script(script, root, log, bin_dir)
    assert second == "", f"the second run changed things:\n{second}"
    assert tree(root) == state

    again = write_fix(snap)
    assert commands(again) == ["libvirt_network default"], again
    assert "iommu=pt nofb video=vesafb:off" not in notes(again)
    assert "already in /etc/default/grub for the next boot: reboot" in notes(again), again


def test_sysctl_conf_setting_replaced_not_duplicated(tmp_path: Path) -> None:
    snap = copy_snapshot("intel-2204-4gpu", tmp_path / "node")
    MUTATIONS["ip-forward-overridden"](snap)
    script = write_fix(snap)
    root, log, bin_dir = snap.root / "fs", tmp_path / "log", install(tmp_path / "bin")
    assert run_script(script, root, log, bin_dir) == ""  # ip_forward is 1 now: no sysctl -w
    conf = (root / "etc/sysctl.conf").read_text(encoding="utf-8").splitlines()
    assert "#net.ipv4.ip_forward=0" in conf and conf[-1] == "net.ipv4.ip_forward = 1"
    assert not snap.run("test_network.py").failed
    assert run_script(script, root, log, bin_dir) == ""
    assert (root / "etc/sysctl.conf").read_text(encoding="utf-8").splitlines() == conf


def test_right_setting_written_otherwise_is_kept(tmp_path: Path) -> None:
    # /etc/sysctl.conf says net.ipv4.ip_forward=1 (no blanks); only the running value is 0.
    snap = copy_snapshot("intel-2204-4gpu", tmp_path / "node")
    MUTATIONS["ip-forward-0"](snap)
    conf = snap.read("/etc/sysctl.conf")
    script = write_fix(snap)
    root, log, bin_dir = snap.root / "fs", tmp_path / "log", install(tmp_path / "bin")
    assert run_script(script, root, log, bin_dir) == "sysctl -q -w net.ipv4.ip_forward=1\n"
    assert snap.read("/etc/sysctl.conf") == conf
    assert run_script(script, root, log, bin_dir) == ""


def test_missing_update_grub_is_said_not_fatal(tmp_path: Path) -> None:
    # A machine without update-grub (another boot loader): the step says so, the rest runs.
    snap = copy_snapshot("intel-2204-4gpu", tmp_path / "node")
    snap.replace("/proc/cmdline", "iommu=pt ", "")
    snap.replace("/etc/default/grub", "iommu=pt ", "")
    MUTATIONS["blacklist-missing"](snap)
    script = write_fix(snap)
    bin_dir = install(tmp_path / "bin")
    (bin_dir / "update-grub").unlink()
    tools = tmp_path / "tools"  # the real tools the functions use, and nothing else
    tools.mkdir()
    for name in ("sh", "grep", "sed", "awk", "cat", "mkdir", "dirname", "rm", "tr", "readlink",
                 "tail", "basename", "id", "stat", "chmod", "ln"):
        found = shutil.which(name)
        assert found, name
        os.symlink(found, tools / name)
    log = tmp_path / "log"
    log.write_text("", encoding="utf-8")
    env = {"DBC_FIX_ROOT": str(snap.root / "fs"), "FAKE_LOG": str(log),
           "PATH": f"{bin_dir}{os.pathsep}{tools}"}
    done = subprocess.run([str(tools / "sh"), "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "update-grub is not installed here" in done.stderr
    assert "iommu=pt" in snap.read("/etc/default/grub")
    assert log.read_text(encoding="utf-8") == "update-initramfs -u -k all\n"
    assert "reboot to finish" in done.stdout


def test_package_unknown_offline_is_left_out(tmp_path: Path) -> None:
    # No mirror reachable and a package this system's lists do not have (cpu-checker is
    # Ubuntu's): the step names it and the script goes on.
    snap = copy_snapshot("intel-2204-4gpu", tmp_path / "node")
    snap.replace("/var/lib/dpkg/status", "Package: cpu-checker\nStatus: install ok installed",
                 "Package: cpu-checker\nStatus: deinstall ok config-files")
    MUTATIONS["ip-forward-0"](snap)
    script = write_fix(snap)
    bin_dir = install(tmp_path / "bin")
    (bin_dir / "apt-get").write_text('#!/bin/sh\necho "apt-get $*" >> "$FAKE_LOG"\nexit 100\n',
                                     encoding="utf-8")
    (bin_dir / "apt-cache").write_text("#!/bin/sh\nexit 100\n", encoding="utf-8")
    done = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "DBC_FIX_ROOT": str(snap.root / "fs"), "FAKE_LOG": str(tmp_path / "l"),
             "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cpu-checker: not in this system's package lists (left out)" in done.stdout
    assert (tmp_path / "l").read_text(encoding="utf-8") == (
        "apt-get update -q\nsysctl -q -w net.ipv4.ip_forward=1\n")
