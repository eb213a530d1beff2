"""The libvirtd facts gathered from the real libvirtd running on this machine.

`.ci/run` starts it by hand (no systemd here) with a DBC-like config on 127.0.0.1:16509
(auth_tcp none). These tests assert what is true of it, read independently of the facts
code where that is possible.
"""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET

import pytest

from dbc_accept.facts.libvirtconn import DEFAULT_URI, METADATA_NS, gather_libvirt
from dbc_accept.facts.listeners import gather_listeners, on_port
from dbc_accept.target import LocalTarget
from selftests.prereq import unavailable

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")


def _daemon_up() -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", 16509)) == 0


if not _daemon_up():
    unavailable("no libvirtd on 127.0.0.1:16509 (start it as .ci/run does)", module=True)
PREFIX = "dbc-accept-selftest-hostb-"


@pytest.fixture
def conn():  # type: ignore[no-untyped-def]
    with libvirt.open(DEFAULT_URI) as c:
        yield c


def test_probe_matches_the_daemon(conn) -> None:  # type: ignore[no-untyped-def]
    probe = gather_libvirt(LocalTarget(), DEFAULT_URI)
    assert probe.connected, probe.error
    caps = ET.fromstring(conn.getCapabilities())
    types = {d.get("type") for d in caps.findall("./guest/arch/domain")}
    assert set(probe.domain_types) == types
    assert "qemu" in probe.domain_types  # TCG is always there
    # libvirt offers kvm when /dev/kvm is usable; this machine has one (nested, see the notes)
    assert ("kvm" in probe.domain_types) == os.path.exists("/dev/kvm")
    assert probe.lib_version == conn.getLibVersion() and probe.hv_type == "QEMU"
    nets = {n.name(): (bool(n.isActive()), bool(n.autostart())) for n in conn.listAllNetworks()}
    assert {n.name: (n.active, n.autostart) for n in probe.networks} == nets


def test_probe_sees_a_tagged_domain(conn) -> None:  # type: ignore[no-untyped-def]
    name = f"{PREFIX}tagged"
    xml = f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>
      <os><type arch='x86_64'>hvm</type></os>
      <devices><hostdev mode='subsystem' type='pci' managed='yes'><source>
        <address domain='0x0000' bus='0x65' slot='0x00' function='0x1'/></source></hostdev>
      </devices>
      <metadata><dbc:run xmlns:dbc='{METADATA_NS}' id='selftest'/></metadata></domain>"""
    dom = conn.defineXML(xml)
    plain = conn.defineXML(xml.replace(name, f"{PREFIX}plain").split("<devices>")[0]
                           + "</domain>")
    try:
        probe = gather_libvirt(LocalTarget(), DEFAULT_URI)
        found = {d.name: d for d in probe.domains}
        assert found[name].tagged and found[name].state == "shutoff"
        assert found[name].hostdevs == ("0000:65:00.1",)
        assert not found[f"{PREFIX}plain"].tagged
    finally:
        plain.undefine()
        dom.undefine()


def test_connection_refused_is_a_fact() -> None:
    probe = gather_libvirt(LocalTarget(), "qemu+tcp://127.0.0.1:1/system")
    assert not probe.connected
    assert probe.error_code == libvirt.VIR_ERR_SYSTEM_ERROR and "refused" in probe.error


def test_listener_on_16509_is_loopback() -> None:
    found = on_port(gather_listeners(LocalTarget()), 16509)
    assert found and all(s.loopback for s in found)
