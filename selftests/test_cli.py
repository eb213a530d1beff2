"""The `dbc-accept` command: bad input is one clear line and exit 2; captures work locally
and over SSH; cleanup reports what it removed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dbc_accept.cli import main
from dbc_accept.snapshot import FORMAT, SnapshotTarget
from selftests.test_capture_replay import _outcomes
from selftests.test_remote_target import VOLATILE, Sshd, sshd  # noqa: F401 - the fixture

COMMAND = Path(sys.executable).parent / "dbc-accept"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(COMMAND), *args], capture_output=True, text=True, check=False,
                          timeout=300)


def test_console_script_is_installed() -> None:
    proc = run("--help")
    assert proc.returncode == 0 and "snapshot" in proc.stdout and "cleanup" in proc.stdout


@pytest.mark.parametrize("args,message", [
    ([], "the following arguments are required: COMMAND"),
    (["snapshot"], "the following arguments are required: DIR"),
    (["snapshot", "{tmp}/full"], "{tmp}/full is not empty; choose a new folder"),
    (["snapshot", "{tmp}/full/file"], "exists and is not a folder"),
    (["snapshot", "/proc/dbc-accept-test"], "cannot write to /proc/dbc-accept-test"),
    (["snapshot", "{tmp}/new", "--hosts=bogus://node1"],
     "--hosts bogus://node1: Unknown connection type 'bogus'"),
    (["snapshot", "{tmp}/new", "--dbc-dir={tmp}/nowhere"],
     "--dbc-dir {tmp}/nowhere: no such folder on local"),
    (["cleanup", "--no-such-option"], "unrecognized arguments: --no-such-option"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    proc = run(*[a.format(tmp=tmp_path) for a in args])
    assert proc.returncode == 2, proc.stderr
    assert message.format(tmp=tmp_path) in proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout
    assert not (tmp_path / "new").exists()


def test_capture_of_this_machine(tmp_path: Path) -> None:
    proc = run("snapshot", str(tmp_path / "snap"))
    assert proc.returncode == 0, proc.stderr
    assert f"pytest -m host --snapshot={(tmp_path / 'snap').resolve()}" in proc.stdout
    meta = json.loads((tmp_path / "snap" / "snapshot.json").read_text())
    assert meta["format"] == FORMAT and meta["target"] == "local"
    assert meta["hostname"] == socket.gethostname()
    assert meta["captured_at"].endswith("+00:00") and meta["tool_version"]
    replay = SnapshotTarget(tmp_path / "snap")
    assert replay.read_text("/proc/cmdline") == Path("/proc/cmdline").read_text()


def test_capture_over_ssh_replays_as_this_machine(tmp_path: Path, sshd: Sshd) -> None:  # noqa: F811
    spec = f"paramiko://root@127.0.0.1:{sshd.port}"
    args = ["snapshot", str(tmp_path / "snap"), f"--hosts={spec}",
            f"--ssh-identity-file={sshd.root_key}", f"--ssh-config={sshd.ssh_config}"]
    assert main(args) == 0
    meta = json.loads((tmp_path / "snap" / "snapshot.json").read_text())
    assert meta["target"] == f"paramiko://127.0.0.1:{sshd.port}"
    replayed = _outcomes(f"--snapshot={tmp_path / 'snap'}")
    live = _outcomes()
    assert [ln for ln in replayed if not VOLATILE.search(ln)] == [
        ln for ln in live if not VOLATILE.search(ln)]
    assert len(replayed) == len(live)


def test_unreachable_host_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["snapshot", str(tmp_path / "snap"), f"--hosts=paramiko://root@127.0.0.1:{port}"]
                ) == 1
    assert "cannot connect" in capsys.readouterr().err


def test_cleanup_reports_what_it_removed(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("libvirt", reason="cleanup needs libvirt-python")
    assert main(["cleanup", "--libvirt-uri", "test:///default"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # test:///default starts empty: nothing of a run to remove (a pool the sweep itself
    # made to look into a folder may be reported as removed)
    assert lines and all(ln.startswith(("nothing to remove", "removed transient storage pool"))
                         for ln in lines), lines


def test_cleanup_without_libvirtd_says_so() -> None:
    pytest.importorskip("libvirt", reason="cleanup needs libvirt-python")
    proc = run("cleanup", "--libvirt-uri", "qemu+tcp://127.0.0.1:9/system")
    assert proc.returncode == 1
    assert "cannot clean up at qemu+tcp://127.0.0.1:9/system" in proc.stderr
    assert "Traceback" not in proc.stderr
