"""Cleanup touches only what it can prove it made: decoys named like ours stay, and so does
a volume a domain uses through a pool source (real libvirtd, no VM started)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbc_accept.vm import ownership, reaper
from dbc_accept.vm.spec import volume_name
from dbc_accept.vm.storage import create_overlay, find_or_make_pool, overlay_xml
from selftests.prereq import unavailable
from selftests.test_vm_libvirtd import URI, _dead_run_id

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")
pytestmark = pytest.mark.slow


@pytest.fixture
def conn() -> Iterator[Any]:
    if shutil.which("qemu-img") is None:
        unavailable("qemu-img is not installed (apt-get install qemu-utils)")
    try:
        c = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        unavailable(f"no libvirtd at {URI}: {exc.get_error_message()}")
    yield c
    c.close()


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conn: Any) -> Iterator[Path]:
    """A folder with a template, its pool, and this test's own owner-record folder."""
    folder = tmp_path / "images"
    folder.mkdir()
    tmp_path.chmod(0o755)
    folder.chmod(0o755)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(folder / "t.qcow2"), "1G"],
                   check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(folder / "other.qcow2"),
                    "1G"], check=True)
    monkeypatch.setenv(ownership.STATE_ENV, str(tmp_path / "owned"))
    yield folder
    pool, _ = find_or_make_pool(conn, str(folder))
    pool.refresh(0)
    for vol in pool.listAllVolumes(0):
        vol.delete(0)
    pool.destroy()


def _volume(conn: Any, folder: Path, name: str, backing: Path) -> str:
    pool, _ = find_or_make_pool(conn, str(folder))
    pool.refresh(0)
    return str(pool.createXML(overlay_xml(name, 1 << 30, str(backing), "qcow2"), 0).path())


def test_decoys_named_like_ours_are_left_and_listed(conn: Any, place: Path) -> None:
    template = place / "t.qcow2"
    foreign = _volume(conn, place, "dbc-accept-renter.qcow2", template)
    no_record = _volume(conn, place, volume_name(_dead_run_id()), template)
    other_run = _dead_run_id()
    wrong_backing = _volume(conn, place, volume_name(other_run), place / "other.qcow2")
    ownership.write_record(volume_name(other_run), other_run, wrong_backing, str(template))
    notes: list[str] = []
    removed = reaper.sweep(URI, log=notes.append, folders=[str(place)])
    for path in (foreign, no_record, wrong_backing):
        assert Path(path).exists(), f"{path} was removed: {removed}"
        assert not any(path in line for line in removed)
        assert any(path in n and "not proven ours" in n for n in notes), notes
    assert any("not made by this tool" in n for n in notes if foreign in n)
    assert any("no owner record" in n for n in notes if no_record in n)
    assert any("not the template" in n for n in notes if wrong_backing in n)


def test_an_overlay_with_its_owner_record_is_removed(conn: Any, place: Path) -> None:
    overlay = create_overlay(conn, str(place / "t.qcow2"), _dead_run_id())
    record = Path(os.environ[ownership.STATE_ENV]) / f"{overlay.name}.json"
    assert record.exists() and record.stat().st_mode & 0o777 == 0o600
    removed = reaper.sweep(URI, folders=[str(place)])
    assert any(overlay.path in line for line in removed)
    assert not Path(overlay.path).exists() and not record.exists()


def test_a_volume_used_through_a_pool_source_is_in_use(conn: Any, place: Path) -> None:
    overlay = create_overlay(conn, str(place / "t.qcow2"), _dead_run_id())
    name = f"dbcowntest-{secrets.token_hex(3)}"
    dom = conn.defineXML(
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os><devices><disk type='volume' device='disk'>"
        f"<driver name='qemu' type='qcow2'/><source pool='{overlay.pool}' "
        f"volume='{overlay.name}'/><target dev='vda' bus='virtio'/></disk></devices></domain>")
    try:
        notes: list[str] = []
        removed = reaper.sweep(URI, log=notes.append, folders=[str(place)])
        assert Path(overlay.path).exists(), removed
        assert any(overlay.path in n and f"in use by {name}" in n for n in notes), notes
    finally:
        dom.undefine()
