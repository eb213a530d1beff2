"""Part B gatherers give the same facts through testinfra (local:// backend) as locally.

testinfra runs each command through a shell line it quotes itself; the write probe, the
libvirt probe script and the od argv must survive that quoting unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dbc_accept.facts import dbcnode, images, libvirtd, listeners, storage, virt
from dbc_accept.facts.libvirtconn import gather_libvirt
from dbc_accept.target import LocalTarget, TestinfraTarget
from dbc_accept.verdict import FactError

testinfra = pytest.importorskip("testinfra")

SAME = [storage.gather_mounts, storage.gather_fstab, storage.gather_memory,
        libvirtd.gather_libvirtd_conf, libvirtd.gather_daemon_args, libvirtd.gather_socket_masks,
        libvirtd.gather_service, listeners.gather_listeners, virt.gather_packages,
        virt.gather_cgroups, virt.gather_device_nodes, virt.gather_ovmf,
        dbcnode.gather_dbc_processes, images.gather_stale_disks]


def outcome(gatherer: Any, target: Any, *args: Any) -> object:
    try:
        return gatherer(target, *args)
    except FactError as exc:
        return f"FactError: {exc}"


@pytest.fixture(scope="module")
def remote() -> TestinfraTarget:
    return TestinfraTarget(testinfra.get_host("local://"))


@pytest.mark.parametrize("gatherer", SAME, ids=lambda g: g.__name__)
def test_same_fact_both_ways(gatherer: Any, remote: TestinfraTarget) -> None:
    assert outcome(gatherer, remote) == outcome(gatherer, LocalTarget())


def test_write_probe_and_image_through_testinfra(remote: TestinfraTarget, tmp_path: Path) -> None:
    probe = storage.gather_write_probe(remote, str(tmp_path))
    assert probe.written and probe.mode and not list(tmp_path.iterdir())
    qcow2 = tmp_path / "it's a disk.qcow2"  # a quote and a space in the path
    qcow2.write_bytes((Path(__file__).parent / "data" / "hostb" / "qcow2-v3-20G.head")
                      .read_bytes())
    image = images.gather_image(remote, str(qcow2))
    assert image.header is not None and image.header.virtual_size == 20 * 1024**3


def test_libvirt_probe_script_survives_quoting(remote: TestinfraTarget) -> None:
    # This machine's system python3 may lack libvirt: then the probe says so in its JSON.
    probe = gather_libvirt(remote, "qemu+tcp://localhost:16509/system")
    assert probe.connected or probe.error_code == -1 or "connect" in probe.error
