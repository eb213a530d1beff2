"""Snapshot capture: what the recorder keeps, how it replays, and that no secret is kept."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from dbc_accept.cli import main
from dbc_accept.facts import dbcnode, registry
from dbc_accept.recording import RecordingTarget, capture
from dbc_accept.secrecy import HMAC_PREFIX, SHA256_PREFIX, hmac_digest, snapshot_text
from dbc_accept.snapshot import LISTING_FILE, SnapshotTarget, command_slug
from dbc_accept.target import LocalTarget, Target
from selftests.test_remote_target import PATHS, VOLATILE, outcomes

ROOT = Path(__file__).resolve().parent.parent


# --- the recorder and replay ------------------------------------------------------------


def _tree(top: Path) -> Path:
    (top / "dir").mkdir(parents=True)
    for name in ("a", "b", "c"):
        (top / "dir" / name).write_text(name)
    (top / "real").mkdir()
    (top / "real" / "inner").write_text("through a link\n")
    (top / "via").symlink_to("real")
    (top / "abs").symlink_to(top / "real" / "inner")
    (top / "dangling").symlink_to("nowhere")
    return top


def test_listing_kept_and_unread_entries_missing(tmp_path: Path) -> None:
    top = _tree(tmp_path / "host")
    recorder = RecordingTarget(LocalTarget())
    assert recorder.list_dir(f"{top}/dir") == ["a", "b", "c"]
    recorder.read_text(f"{top}/dir/a")
    recorder.write(tmp_path / "snap")
    replay = SnapshotTarget(tmp_path / "snap")
    assert replay.list_dir(f"{top}/dir") == ["a", "b", "c"]
    assert replay.read_text(f"{top}/dir/a") == "a"
    for path in (f"{top}/dir/b", f"{top}/dir/{LISTING_FILE}", f"{top}/elsewhere"):
        with pytest.raises(FileNotFoundError):
            replay.read_text(path)
    assert (tmp_path / "snap" / "fs" / str(top / "dir").lstrip("/") / LISTING_FILE).is_file()


def test_links_kept_and_files_stored_at_their_real_path(tmp_path: Path) -> None:
    top = _tree(tmp_path / "host")
    recorder = RecordingTarget(LocalTarget())
    recorder.read_text(f"{top}/via/inner")
    recorder.read_link(f"{top}/abs")  # a file's own link is kept when it was read as one
    recorder.read_text(f"{top}/abs")
    recorder.read_link(f"{top}/dangling")
    recorder.write(tmp_path / "snap")
    fs = tmp_path / "snap" / "fs" / str(top).lstrip("/")
    assert os.readlink(fs / "via") == "real" and (fs / "real" / "inner").is_file()
    assert os.readlink(fs / "abs") == str(top / "real" / "inner")
    replay = SnapshotTarget(tmp_path / "snap")
    assert replay.read_text(f"{top}/via/inner") == "through a link\n"
    assert replay.read_text(f"{top}/abs") == "through a link\n"
    assert replay.read_link(f"{top}/dangling") == "nowhere"


def test_replay_of_a_recording_answers_as_the_host(tmp_path: Path) -> None:
    from selftests.test_remote_target import COMMANDS

    top = _tree(tmp_path / "host")
    (top / "file").write_bytes(b"line one\n\xc3\xa9t\xe9\n")
    (top / "empty").write_text("")
    (top / "secret").write_text("s")
    (top / "closed").mkdir()
    (top / "closed" / "inner").write_text("i")
    (top / "link").symlink_to("file")
    (top / "dirlink").symlink_to("dir")
    (top / "dir" / "with space").write_text("s")
    recorder = RecordingTarget(LocalTarget())
    live = outcomes(recorder, str(top))
    recorder.write(tmp_path / "snap")
    assert outcomes(SnapshotTarget(tmp_path / "snap"), str(top)) == live
    assert len(list((tmp_path / "snap" / "cmd").glob("*.json"))) == len(COMMANDS)
    assert PATHS  # the same paths as the remote parity test


def test_capture_runs_every_registered_gatherer(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "read-by-a-new-gatherer"
    marker.write_text("seen\n")

    def gather_new(target: Target) -> str:
        return target.read_text(str(marker)) + target.run(["echo", "new"]).stdout

    module = types.SimpleNamespace(GATHERERS=[gather_new])
    monkeypatch.setattr(registry, "MODULES", [*registry.MODULES, module])
    recorder = capture(LocalTarget())
    assert recorder.files[str(marker)] == "seen\n"
    assert ("echo", "new") in recorder.commands
    assert not recorder.problems, recorder.problems


def test_a_broken_gatherer_is_noted_and_the_rest_captured(monkeypatch: pytest.MonkeyPatch) -> None:
    def gather_broken(target: Target) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(registry, "MODULES", [types.SimpleNamespace(
        GATHERERS=[gather_broken, lambda t: t.read_text("/proc/cmdline")])])
    recorder = capture(LocalTarget())
    assert recorder.problems == ["gather_broken: KeyError: 'bug'"]
    assert "/proc/cmdline" in recorder.files


# --- secrets ------------------------------------------------------------------------------

SECRETS = ["5JpXTaPrivateKeyOfTheNode", "b3c1PrivKeyLegacyValue", "hunter2-libvirt",
           "tok-9f8e7d6c", "s3cr3t-monitor", "pw-in-argv-1234"]


def test_snapshot_allow_list_keeps_what_the_checks_need() -> None:
    key = b"k" * 32
    dat = snapshot_text("/d/dat/node.dat",
                        "node_id=2gfpp3MAB\nnode_private_key=K1\npriv_key = K2\npub_key=P\n"
                        "# note\nwallet=abc\n", key).splitlines()
    assert dat[0] == "node_id=2gfpp3MAB" and dat[3] == "pub_key=P"
    assert dat[1] == f"node_private_key={HMAC_PREFIX}{hmac_digest(key, 'K1')}"
    assert dat[2] == f"priv_key={HMAC_PREFIX}{hmac_digest(key, 'K2')}"
    assert dat[4:] == ["", ""]  # dropped, line numbers kept
    sysctl = snapshot_text("/etc/sysctl.conf", "net.ipv4.ip_forward = 1\n#password = x\n", key)
    assert sysctl == "net.ipv4.ip_forward = 1\n\n"


def test_node_dat_parser_reads_the_marker() -> None:
    raw = "node_id=2gfpp3MAB\nnode_private_key=K1\npriv_key=K2\n"
    key = b"s" * 32
    kept = snapshot_text("/d/dat/node.dat", raw, key)
    assert dbcnode.parse_node_dat(kept) == dbcnode.parse_node_dat(raw, key)
    # a snapshot of the first format-1 writers (unkeyed sha256) still reads
    old = raw.replace("=K1", f"={SHA256_PREFIX}{hashlib.sha256(b'K1').hexdigest()}")
    assert dbcnode.parse_node_dat(old).key_digests == dbcnode.parse_node_dat(raw).key_digests


def _plant(tmp_path: Path) -> Path:
    folder = tmp_path / "dbc_repo"
    (folder / "conf").mkdir(parents=True)
    (folder / "dat").mkdir()
    (folder / "conf" / "core.conf").write_text(
        "net_listen_port=5001\nhttp_port=5002\nminer_monitor_server=10.0.0.9:5006\n"
        f"monitor_password={SECRETS[4]}\n")
    (folder / "dat" / "node.dat").write_text(
        f"node_id=2gfpp3MAB4Aa\nnode_private_key={SECRETS[0]}\npub_key=02abc\n"
        f"priv_key={SECRETS[1]}\n")
    return folder


def test_a_snapshot_never_holds_a_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _plant(tmp_path)
    config = tmp_path / "app.conf"
    config.write_text(f'listen = 1\npassword = "{SECRETS[2]}"\napi_token: {SECRETS[3]}\n')
    cmdline = tmp_path / "cmdline"  # as /proc/PID/cmdline holds it
    cmdline.write_text(f"/usr/bin/app\0--password\0{SECRETS[5]}\0-v\0")
    argv = ["echo", "--password", SECRETS[5], f"db_password={SECRETS[2]}"]

    def gather_planted(target: Target) -> None:
        target.read_text(str(config))
        target.read_text(str(cmdline))
        target.run(argv)

    monkeypatch.setattr(registry, "MODULES", [*registry.MODULES,
                                              types.SimpleNamespace(GATHERERS=[gather_planted])])
    assert main(["snapshot", str(tmp_path / "snap"), "--dbc-dir", str(folder)]) == 0
    assert "secrets redacted" in capsys.readouterr().out
    leaks = []
    for path in (tmp_path / "snap").rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            leaks += [f"{path}: {s}" for s in SECRETS if s.encode() in data]
    assert not leaks
    kept = tmp_path / "snap" / "fs" / str(folder).lstrip("/")
    node_dat = (kept / "dat" / "node.dat").read_text()
    snap_key = SnapshotTarget(tmp_path / "snap").hmac_key
    assert snap_key is not None
    digest = hmac_digest(snap_key, SECRETS[0])
    assert f"node_private_key={HMAC_PREFIX}{digest}" in node_dat
    assert "node_id=2gfpp3MAB4Aa" in node_dat and "pub_key=02abc" in node_dat
    # the replayed node.dat still has its key, comparable with a backup
    dat = dbcnode.gather_node_dat(SnapshotTarget(tmp_path / "snap"), str(folder))
    assert dat.key_digests["node_private_key"] == digest
    assert "miner_monitor_server=10.0.0.9:5006" in (kept / "conf" / "core.conf").read_text()
    kept_cmdline = (tmp_path / "snap" / "fs" / str(cmdline).lstrip("/")).read_text()
    assert kept_cmdline.split("\0")[:4] == ["/usr/bin/app", "--password", "", "-v"]
    assert SnapshotTarget(tmp_path / "snap").run(argv).stdout == "\n"  # the line held one
    record = json.loads((tmp_path / "snap" / "cmd" / f"{command_slug(argv)}.json").read_text())
    assert record["argv"] == ["echo", "--password", "", "db_password="] and record["rc"] == 0


# --- the whole machine ----------------------------------------------------------------------


def _outcomes(*args: str) -> list[str]:
    """`pytest -m host` on tests_host (a subprocess): outcome lines without the node's name."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir",
         str(ROOT), "-m", "host", "--no-report", "-rA", "-p", "no:randomly",
         str(ROOT / "tests_host"), *args],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=300)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    found = []
    for line in proc.stdout.splitlines():
        if re.match(r"(PASSED|FAILED|SKIPPED|ERROR|WARN) ", line):
            line = re.sub(r"(local|snapshot:[^]\s:-]+)-?", "NODE", line.split(" - ")[0])
            found.append(line)
    return sorted(found)


def _test_ids(lines: list[str]) -> set[str]:
    return {line.split(" ", 1)[1].split(" ")[0] for line in lines}


def test_replay_of_this_machine_equals_the_live_run(tmp_path: Path) -> None:
    # A selftest in another xdist worker may start or stop a process named dbc (a stand-in
    # DBC node) between the capture and the live run, and the node checks are made one per
    # dbc node found: a capture counts only when the live run saw the same tests (3 tries).
    for attempt in range(3):
        snap = tmp_path / f"snap{attempt}"
        assert main(["snapshot", str(snap)]) == 0
        live = _outcomes()
        replay = _outcomes(f"--snapshot={snap}")
        if _test_ids(replay) == _test_ids(live):
            break
    assert len(replay) == len(live)
    assert [ln for ln in replay if not VOLATILE.search(ln)] == [
        ln for ln in live if not VOLATILE.search(ln)]
    assert any(line.startswith("PASSED") for line in live)
    assert any(line.startswith(("FAILED", "WARN")) for line in live)  # checks that can fail


def test_replay_never_follows_a_link_out_of_the_snapshot(tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    (snap / "fs" / "etc").mkdir(parents=True)
    (snap / "snapshot.json").write_text(json.dumps({"format": 1, "hostname": "h"}))
    (snap / "fs" / "etc" / "alt").symlink_to("/etc")  # absolute, as on the host
    (snap / "fs" / "etc" / "os-release").write_text("ID=ubuntu\n")
    replay = SnapshotTarget(snap)
    assert replay.read_text("/etc/alt/os-release") == "ID=ubuntu\n"
    assert Path("/etc/hostname").exists()  # on this machine, not in the snapshot
    for read in (replay.read_text, replay.list_dir, replay.read_link):
        with pytest.raises(FileNotFoundError):
            read("/etc/alt/hostname")
