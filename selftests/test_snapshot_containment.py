"""A snapshot is untrusted input: nothing it holds may lead a replay out of its ``fs/``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dbc_accept.snapshot import (
    MAX_HOPS,
    MAX_READ,
    REFUSED_EXIT,
    SnapshotRefused,
    SnapshotTarget,
)

ROOT = Path(__file__).resolve().parent.parent
SECRET = "host-secret-0e1f2d3c"


def _outside(tmp_path: Path) -> Path:
    """A file of the replaying machine, outside the snapshot, that must never be read."""
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret").write_text(f"{SECRET}\n")
    (out / "entry-only-outside").write_text("x")
    return out


def _snapshot(tmp_path: Path) -> Path:
    snap = tmp_path / "snap"
    (snap / "fs" / "proc").mkdir(parents=True)
    (snap / "snapshot.json").write_text(json.dumps({"format": 1, "hostname": "h"}))
    return snap


def _chain(snap: Path, start: str, end: str) -> None:
    """``start`` -> /l1 -> ... -> /l<MAX_HOPS> -> ``end`` (absolute, on the host): the link
    past the limit is the one that leads out, as in the attack the review found."""
    fs = snap / "fs"
    os.symlink("/l1", fs / start.lstrip("/"))
    for n in range(1, MAX_HOPS):
        os.symlink(f"/l{n + 1}", fs / f"l{n}")
    os.symlink(end, fs / f"l{MAX_HOPS}")


def test_a_link_chain_longer_than_the_limit_is_refused(tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    snap = _snapshot(tmp_path)
    _chain(snap, "/proc/cmdline", str(outside / "secret"))
    with pytest.raises(SnapshotRefused, match="symbolic links"):
        SnapshotTarget(snap)


def test_reads_fail_closed_even_past_the_opening_check(tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    snap = _snapshot(tmp_path)
    replay = SnapshotTarget(snap)  # checked while still clean; planted afterwards
    _chain(snap, "/proc/cmdline", str(outside / "secret"))
    os.symlink("/l1", snap / "fs" / "listed")
    for read, path in ((replay.read_text, "/proc/cmdline"), (replay.list_dir, "/listed"),
                       (replay.read_link, "/listed/entry-only-outside")):
        with pytest.raises(SnapshotRefused):
            read(path)


def test_fs_being_a_link_is_refused(tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "snapshot.json").write_text(json.dumps({"format": 1, "hostname": "h"}))
    os.symlink(outside, snap / "fs")
    with pytest.raises(SnapshotRefused, match="fs/ must be a folder"):
        SnapshotTarget(snap)


@pytest.mark.parametrize("where", ["fs/proc/cmdline", "cmd/dmesg-0123456789.json"])
def test_a_file_over_the_size_cap_is_refused(tmp_path: Path, where: str) -> None:
    snap = _snapshot(tmp_path)
    big = snap / where
    big.parent.mkdir(parents=True, exist_ok=True)
    with open(big, "wb") as fh:
        fh.truncate(MAX_READ + 1)  # sparse: costs no disk
    with pytest.raises(SnapshotRefused, match="larger than 16 MiB"):
        SnapshotTarget(snap)


def test_a_file_at_the_cap_is_read(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path)
    with open(snap / "fs/proc/cmdline", "wb") as fh:
        fh.truncate(MAX_READ)
    assert len(SnapshotTarget(snap).read_text("/proc/cmdline")) == MAX_READ


def test_legit_absolute_links_still_resolve_inside(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path)
    (snap / "fs/etc").mkdir()
    (snap / "fs/etc/os-release").write_text("ID=debian\n")
    os.symlink("/etc/os-release", snap / "fs/etc/alias")
    os.symlink("../../../../etc", snap / "fs/proc/up")  # ".." above / stays at /
    replay = SnapshotTarget(snap)
    assert replay.read_text("/etc/alias") == "ID=debian\n"
    assert replay.read_text("/proc/up/os-release") == "ID=debian\n"


def test_a_replay_of_an_unsafe_snapshot_stops_with_one_line(tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    snap = _snapshot(tmp_path)
    _chain(snap, "/proc/cmdline", str(outside / "secret"))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir",
         str(ROOT), "-m", "host", "--no-report", "-p", "no:randomly",
         str(ROOT / "tests_host"), f"--snapshot={snap}"],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == REFUSED_EXIT, text[-2000:]
    assert SECRET not in text
    assert "Traceback" not in text
    refusals = [ln for ln in text.splitlines() if "refused" in ln]
    assert len(refusals) == 1 and "more than 40 symbolic links" in refusals[0]
