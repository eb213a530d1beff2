"""Snapshot keys of in-line probes: a probe's record is found by name and version.

A snapshot captured by the current code replays the same after a probe's text is edited,
and the base snapshots, written before records carried their probe's key, still replay.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from dbc_accept import inline
from dbc_accept.facts.cpu import gather_kvm
from dbc_accept.facts.libvirtconn import gather_libvirt
from dbc_accept.facts.storage import gather_write_probe
from dbc_accept.options import DEFAULT_URI
from dbc_accept.recording import RecordingTarget
from dbc_accept.snapshot import SnapshotTarget
from dbc_accept.target import NOT_FOUND_RC, CommandResult, Target

BASE_SNAPSHOTS = Path(__file__).resolve().parent / "data" / "snapshots"
LIBVIRT_DOC = {"connected": True, "domain_types": ["kvm", "qemu"], "lib_version": 8000000,
               "hv_version": 6002000, "hv_type": "QEMU", "domains": [],
               "networks": [{"name": "default", "active": True, "autostart": True}]}
NO_MODULE = {"connected": False, "error_code": -1, "error": "cannot import libvirt: no module"}
# What a node answers each probe, and the gatherer that runs it.
ANSWERS: dict[str, str] = {
    "kvm": '{"exists": true, "api": 12, "error": ""}\n',
    "libvirt": json.dumps(LIBVIRT_DOC) + "\n",
    "libvirt-virsh": json.dumps({**LIBVIRT_DOC, "hv_type": "QEMU via virsh"}) + "\n",
    "data-write": "mode=777 owner=root\nwritten=1\n",
}
GATHERERS: dict[str, Callable[[Target], Any]] = {
    "kvm": gather_kvm, "libvirt": gather_libvirt, "libvirt-virsh": gather_libvirt,
    "data-write": gather_write_probe,
}


class ProbeNode:
    """A node that answers the in-line probes only (the libvirt module absent when asked)."""

    name = "probe-node"

    def __init__(self, without_libvirt_module: bool = False) -> None:
        self.without_libvirt_module = without_libvirt_module

    def read_text(self, path: str) -> str:
        raise FileNotFoundError(path)

    def read_link(self, path: str) -> str:
        raise FileNotFoundError(path)

    def list_dir(self, path: str) -> list[str]:
        raise FileNotFoundError(path)

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        key = inline.probe_key(argv)
        name = key.partition("@")[0] if key else ""
        if name == "libvirt" and self.without_libvirt_module:
            return CommandResult(tuple(argv), 0, json.dumps(NO_MODULE) + "\n", "")
        if name not in ANSWERS:
            return CommandResult(tuple(argv), NOT_FOUND_RC, "", f"{argv[0]}: not found")
        return CommandResult(tuple(argv), 0, ANSWERS[name], "")


def edited(probe: inline.InlineProbe) -> inline.InlineProbe:
    """The probe with its text changed as an edit would (same name and version)."""
    return dataclasses.replace(probe, text=probe.text + "\n# edited after the capture\n")


def capture(name: str, root: Path) -> Any:
    """Capture what the probe's gatherer reads with the current code; its result."""
    recorder = RecordingTarget(ProbeNode(without_libvirt_module=name == "libvirt-virsh"))
    fact = GATHERERS[name](recorder)
    recorder.write(root)
    return fact


@pytest.mark.parametrize("name", sorted(inline.PROBES))
def test_replays_the_same_after_the_probe_text_is_edited(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    captured = capture(name, tmp_path / "snap")
    monkeypatch.setitem(inline.PROBES, name, edited(inline.PROBES[name]))
    replay = SnapshotTarget(tmp_path / "snap")
    assert GATHERERS[name](replay) == captured, (
        f"the {name} probe's record was not found once its text changed; expected the "
        f"capture's answer; fix: find in-line probes by their stable key (dbc_accept.inline)")


@pytest.mark.parametrize("name", sorted(inline.PROBES))
def test_the_record_names_its_probe(name: str, tmp_path: Path) -> None:
    capture(name, tmp_path / "snap")
    keys = {json.loads(p.read_text()).get("probe") for p in (tmp_path / "snap" / "cmd").iterdir()}
    assert inline.PROBES[name].key in keys, keys


@pytest.mark.parametrize("name", sorted(inline.PROBES))
def test_another_version_is_not_answered(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capture(name, tmp_path / "snap")
    probe = inline.PROBES[name]
    monkeypatch.setitem(inline.PROBES, name, dataclasses.replace(
        edited(probe), version=probe.version + 1))
    args = ("sh", "/data") if name == "data-write" else (DEFAULT_URI,) * (name != "kvm")
    out = SnapshotTarget(tmp_path / "snap").run(inline.argv(name, *args))
    assert out.rc == NOT_FOUND_RC, out


def base_snapshots() -> list[Path]:
    found = sorted(p for p in BASE_SNAPSHOTS.iterdir() if (p / "snapshot.json").is_file())
    assert found, f"no base snapshot under {BASE_SNAPSHOTS}"
    return found


def old_probe_records(snap: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The records of in-line probes in a snapshot of the earlier layout (no ``probe``)."""
    for path in sorted((snap / "cmd").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        key = inline.probe_key(record["argv"])
        if key is not None:
            assert "probe" not in record, f"{path} is not of the earlier layout"
            yield key, record


@pytest.mark.parametrize("snap", base_snapshots(), ids=lambda p: p.name)
@pytest.mark.parametrize("edit", [False, True], ids=["as-is", "texts-edited"])
def test_snapshots_of_the_earlier_keys_still_replay(
        snap: Path, edit: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if edit:
        for name, probe in list(inline.PROBES.items()):
            monkeypatch.setitem(inline.PROBES, name, edited(probe))
    replay = SnapshotTarget(snap)
    seen = set()
    for key, record in old_probe_records(snap):
        name = key.partition("@")[0]
        out = replay.run(inline.argv(name, *record["argv"][3:]))
        assert (out.rc, out.stdout, out.stderr) == (
            record["rc"], record["stdout"], record["stderr"]), f"{snap.name}: {key}"
        seen.add(key)
    assert seen == {"kvm@1", "libvirt@1", "data-write@1"}, seen
    assert gather_kvm(replay).api_version == 12
    assert gather_libvirt(replay).connected
    assert gather_write_probe(replay).written
