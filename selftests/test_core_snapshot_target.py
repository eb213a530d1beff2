"""SnapshotTarget replays files, links, folders and commands with host semantics."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dbc_accept.snapshot import FORMAT, SnapshotError, SnapshotTarget, command_slug
from dbc_accept.target import NOT_FOUND_RC


def make_snapshot(root: Path) -> Path:
    (root / "fs/proc").mkdir(parents=True)
    (root / "fs/proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz intel_iommu=on\n")
    dev = root / "fs/sys/bus/pci/devices/0000:01:00.0"
    dev.mkdir(parents=True)
    (dev / "vendor").write_text("0x10de\n")
    (root / "fs/sys/bus/pci/drivers/vfio-pci").mkdir(parents=True)
    os.symlink("../../../bus/pci/drivers/vfio-pci", dev / "driver")
    (root / "fs/sys/bus/pci/devices/0000:02:00.0").mkdir()
    (root / "cmd").mkdir()
    argv = ["dmesg"]
    (root / "cmd" / f"{command_slug(argv)}.json").write_text(
        json.dumps({"argv": argv, "rc": 0, "stdout": "vfio-pci 0000:01:00.0: ok\n", "stderr": ""}))
    (root / "snapshot.json").write_text(json.dumps({"format": FORMAT, "hostname": "node7"}))
    return root


def test_files_links_and_folders(tmp_path: Path) -> None:
    snap = SnapshotTarget(make_snapshot(tmp_path))
    assert snap.name == "snapshot:node7"
    assert "intel_iommu=on" in snap.read_text("/proc/cmdline")
    assert snap.read_link("/sys/bus/pci/devices/0000:01:00.0/driver").endswith("vfio-pci")
    assert snap.list_dir("/sys/bus/pci/devices") == ["0000:01:00.0", "0000:02:00.0"]
    assert snap.read_text("/sys/bus/pci/devices/0000:01:00.0/vendor").strip() == "0x10de"


def test_missing_paths_read_as_missing(tmp_path: Path) -> None:
    snap = SnapshotTarget(make_snapshot(tmp_path))
    with pytest.raises(FileNotFoundError):
        snap.read_text("/etc/fstab")
    with pytest.raises(FileNotFoundError):
        snap.read_link("/sys/bus/pci/devices/0000:02:00.0/driver")
    with pytest.raises(FileNotFoundError):
        snap.list_dir("/sys/kernel/iommu_groups")
    with pytest.raises(OSError):
        snap.read_link("/proc/cmdline")


def test_commands_replay_and_missing_is_not_installed(tmp_path: Path) -> None:
    snap = SnapshotTarget(make_snapshot(tmp_path))
    out = snap.run(["dmesg"])
    assert out.ok and "vfio-pci" in out.stdout
    missing = snap.run(["xfs_info", "/data"])
    assert missing.rc == NOT_FOUND_RC
    assert "command not found" in missing.describe()


@pytest.mark.parametrize("meta", ['{"format": 2}', "not json", '["format", 1]'])
def test_wrong_format_is_refused_with_the_fix(tmp_path: Path, meta: str) -> None:
    (tmp_path / "snapshot.json").write_text(meta)
    with pytest.raises(SnapshotError) as err:
        SnapshotTarget(tmp_path)
    assert "snapshot.json" in str(err.value)


def test_missing_meta_says_not_a_snapshot(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="is not a snapshot"):
        SnapshotTarget(tmp_path)


def test_command_slug_is_stable_and_distinct() -> None:
    assert command_slug(["systemctl", "is-active", "libvirtd"]) == command_slug(
        ["systemctl", "is-active", "libvirtd"])
    assert command_slug(["a", "b c"]) != command_slug(["a b", "c"])
    assert "/" not in command_slug(["cat", "/etc/passwd"])
