"""The test VM against libvirt's mock driver: the reaper of leftovers, and teardowns that
are interrupted or lose libvirtd (fixtures in vm_mock_support.py)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from typing import Any

import pytest

from dbc_accept.vm import reaper
from dbc_accept.vm.lifecycle import TestVm, VmError
from dbc_accept.vm.spec import NS, domain_name, new_run_id, volume_name
from dbc_accept.vm.storage import create_overlay, delete_overlay
from selftests.vm_mock_support import (  # noqa: F401 - conn, template: fixtures
    GPU,
    GPU_AUDIO,
    URI,
    VFIO_HOST,
    SysfsTarget,
    conn,
    decoy_xml,
    domain_names,
    template,
    vm_spec,
    volume_names,
)

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")


# --- the reaper --------------------------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_reaper_removes_only_tagged_leftovers(conn: Any, template: str) -> None:
    left = TestVm(vm_spec(template, run_id=new_run_id(pid=_dead_pid())), target=VFIO_HOST)
    left.create()  # a run that died without teardown
    live = TestVm(vm_spec(template, gpus=()), target=VFIO_HOST)
    live.create()  # a run of this very process: still going
    untagged = conn.defineXML(decoy_xml(f"dbc-accept-{secrets.token_hex(3)}", hostdev=None))
    wrong_name = conn.defineXML(decoy_xml(f"dbcvmtest-{secrets.token_hex(3)}", hostdev=None,
                                           tag="someone"))
    domain_test = conn.defineXML(decoy_xml("domain_test", hostdev=None))
    keep = {d.name(): d.XMLDesc(0) for d in (untagged, wrong_name, domain_test)}
    try:
        removed = reaper.sweep(URI)
        assert any(left.name in r for r in removed)
        assert any(volume_name(left.run_id) in r for r in removed)
        assert not any(live.name in r for r in removed)
        names = domain_names(conn)
        assert left.name not in names and live.name in names
        for name, xml in keep.items():
            assert conn.lookupByName(name).XMLDesc(0) == xml
        assert volume_name(live.run_id) in volume_names(conn)
        assert reaper.sweep(URI) == []  # nothing more to do
        assert any(live.name in r for r in reaper.sweep(URI, force=True))
        assert live.teardown() == []  # the domain went already: teardown still succeeds
    finally:
        for dom in (untagged, wrong_name, domain_test):
            dom.undefine()
        live.teardown()
        left.teardown()


def test_reaper_leaves_runs_of_other_hosts_unless_forced(conn: Any) -> None:
    name = domain_name(new_run_id(pid=_dead_pid()))
    root = ET.fromstring(decoy_xml(name, hostdev=None, tag=name[len("dbc-accept-"):]))
    root.find(f"metadata/{{{NS}}}run").set("host", "controller-elsewhere")  # type: ignore[union-attr]
    dom = conn.defineXML(ET.tostring(root, encoding="unicode"))
    notes: list[str] = []
    try:
        assert not any(name in r for r in reaper.sweep(URI, log=notes.append))
        assert any("controller-elsewhere" in n for n in notes)
        assert any(name in r for r in reaper.sweep(URI, force=True))
    finally:
        if name in domain_names(conn):
            dom.undefine()


def test_run_liveness() -> None:
    assert reaper.run_is_live(new_run_id())
    assert not reaper.run_is_live(new_run_id(pid=_dead_pid()))
    assert not reaper.run_is_live("custom-id")
    # this process, but the run was made before it started: a reused pid
    assert not reaper.run_is_live(new_run_id(now=0.0))


@pytest.mark.usefixtures("sigint_as_ctrl_c")
def test_ctrl_c_during_teardown_waits_for_it(conn: Any, template: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    vm = TestVm(vm_spec(template), target=VFIO_HOST)
    vm.create()
    remove = vm._remove_domain

    def interrupted(timeout: float) -> list[str]:
        os.kill(os.getpid(), signal.SIGINT)  # the owner presses Ctrl-C mid-teardown
        return remove(timeout)

    monkeypatch.setattr(vm, "_remove_domain", interrupted)
    with pytest.raises(KeyboardInterrupt):
        vm.teardown(graceful_timeout=0)
    assert vm.name not in domain_names(conn)  # finished first, then the interrupt came
    assert volume_name(vm.run_id) not in volume_names(conn)


def test_libvirtd_gone_at_teardown_is_reported_then_retried(conn: Any, template: str) -> None:
    vm = TestVm(vm_spec(template), target=VFIO_HOST)
    vm.create()
    good = vm.spec
    vm._close()
    vm.spec = replace(good, uri="qemu+tcp://127.0.0.1:1/system")  # nothing listens there
    vm.reconnect_s = 1.5
    with pytest.raises(VmError, match="does not answer"):
        vm.is_alive()  # unreachable is not "gone"
    t = time.monotonic()
    problems = vm.teardown()
    assert 1.5 <= time.monotonic() - t < 10  # it kept trying for the window, then gave up
    assert len(problems) == 1 and "could not reach libvirt" in problems[0]
    assert "within 1.5 s" in problems[0] and "dbc-accept cleanup" in problems[0]
    vm.spec = good
    assert vm.teardown() == []
    assert vm.name not in domain_names(conn)


def test_overlay_retries_once_when_the_pool_went_away(conn: Any, template: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    class PoolGone(libvirt.libvirtError):  # type: ignore[misc,name-defined]
        def get_error_code(self) -> int:
            return int(libvirt.VIR_ERR_NO_STORAGE_POOL)

    real = libvirt.virStoragePool.createXML
    calls: list[int] = []

    def flaky(self: Any, xml: str, flags: int = 0) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise PoolGone("storage pool is gone")
        return real(self, xml, flags)

    monkeypatch.setattr(libvirt.virStoragePool, "createXML", flaky)
    overlay = create_overlay(conn, template, new_run_id())
    assert len(calls) == 2 and overlay.name in volume_names(conn)
    assert delete_overlay(conn, overlay) is None
    calls.clear()
    monkeypatch.setattr(libvirt.virStoragePool, "createXML",
                        lambda *_a: (_ for _ in ()).throw(PoolGone("gone again")))
    with pytest.raises(libvirt.libvirtError):
        create_overlay(conn, template, new_run_id())


def test_a_gpu_not_back_on_vfio_is_a_teardown_problem(conn: Any, template: str) -> None:
    host = SysfsTarget({GPU: "vfio-pci", GPU_AUDIO: "vfio-pci"})
    vm = TestVm(vm_spec(template), target=host)
    vm.create()
    host.drivers[GPU] = "nouveau"  # the host took the GPU back when the VM let it go
    problems = vm.teardown(graceful_timeout=0)
    assert problems == [f"GPU function {GPU} is bound to nouveau after the test VM, not "
                        "vfio-pci"]
    assert vm.gpu_problems == problems
    assert vm.name not in domain_names(conn) and volume_name(vm.run_id) not in volume_names(conn)


def test_agent_addresses_are_taken_from_our_nic_only() -> None:
    class AgentOnly:
        def XMLDesc(self, _flags: int) -> str:
            return ("<domain><devices><interface type='network'>"
                    "<mac address='52:54:00:AA:BB:CC'/></interface></devices></domain>")

        def interfaceAddresses(self, source: int, _flags: int) -> dict[str, Any]:
            if source != libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT:
                raise libvirt.libvirtError("no lease yet")
            v4 = libvirt.VIR_IP_ADDR_TYPE_IPV4
            return {
                "lo": {"hwaddr": "00:00:00:00:00:00", "addrs": [{"type": v4, "addr": "127.0.0.1"}]},
                "docker0": {"hwaddr": "02:42:ac:11:00:01",
                            "addrs": [{"type": v4, "addr": "172.17.0.1"}]},
                "enp1s0": {"hwaddr": "52:54:00:aa:bb:cc",
                           "addrs": [{"type": 1, "addr": "fe80::1"},
                                     {"type": v4, "addr": "192.168.122.50"}]},
            }

    vm = TestVm(vm_spec("/i.qcow2", gpus=()))
    assert vm._address(AgentOnly()) == "192.168.122.50"


def test_reaper_says_when_a_gpu_is_not_back_on_vfio(conn: Any, template: str) -> None:
    left = TestVm(vm_spec(template, run_id=new_run_id(pid=_dead_pid())), target=VFIO_HOST)
    left.create()
    host = SysfsTarget({GPU: "nvidia", GPU_AUDIO: "vfio-pci"})
    lines = reaper.sweep(URI, target=host)
    assert any(left.name in line for line in lines)
    assert f"GPU function {GPU} is bound to nvidia after removing {left.name}, not vfio-pci" \
        in lines
    assert not any(GPU_AUDIO in line for line in lines)


def test_reaper_gives_back_the_dhcp_leases_of_what_it_removes(
        conn: Any, template: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dbc_accept.vm import leases

    left = TestVm(vm_spec(template, gpus=(), run_id=new_run_id(pid=_dead_pid())),
                  target=VFIO_HOST)
    left.create()
    macs = leases.interface_macs(left.domain_xml(), "default")
    assert macs
    calls: list[tuple[str, list[str], bool]] = []

    def release(c: Any, network: str, m: list[str]) -> list[str]:
        gone = left.name not in domain_names(c)  # released after the domain was removed
        calls.append((network, m, gone))
        return [f"lease 192.168.122.9 ({m[0]}) on {network}"]

    monkeypatch.setattr(leases, "release_leases", release)
    lines = reaper.sweep(URI)
    assert calls == [("default", macs, True)]
    assert f"released lease 192.168.122.9 ({macs[0]}) on default" in lines
    # the mock driver has no leases at all: a failure to release is logged, not raised
    monkeypatch.undo()
    left2 = TestVm(vm_spec(template, gpus=(), run_id=new_run_id(pid=_dead_pid())),
                   target=VFIO_HOST)
    left2.create()
    notes: list[str] = []
    lines = reaper.sweep(URI, log=notes.append)
    assert any(left2.name in line for line in lines)
    assert any("could not release the DHCP lease" in n for n in notes), notes


def _rpc_eof() -> Any:
    """The error a connection to a libvirtd that was restarted raises."""
    exc = libvirt.libvirtError("End of file while reading data: Input/output error")
    exc.err = (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_RPC,
               "End of file while reading data: Input/output error", 2, None, None, None, 0, 0)
    return exc


class StaleConn:
    """A connection whose libvirtd went away: it looks alive until a call fails."""

    def __init__(self) -> None:
        self.alive = True
        self.closed = False

    def isAlive(self) -> bool:
        return self.alive

    def close(self) -> None:
        self.closed = True

    def __getattr__(self, name: str) -> Any:
        def call(*_a: Any) -> Any:
            self.alive = False  # as libvirt's client closes its socket on EOF
            raise _rpc_eof()

        return call


def test_a_connection_broken_by_a_libvirtd_restart_is_opened_again(conn: Any,
                                                                   template: str) -> None:
    vm = TestVm(vm_spec(template), target=VFIO_HOST)
    vm.create()
    for ask in (vm.is_alive, vm.domain_xml):
        stale = StaleConn()
        vm._conn = stale
        assert ask()  # True, and the domain XML: the same domain, on a new connection
        assert stale.closed and vm._conn is not stale
    stale = StaleConn()
    vm._conn = stale
    assert vm.teardown(graceful_timeout=0) == []
    assert stale.closed
    assert vm.name not in domain_names(conn)
    assert volume_name(vm.run_id) not in volume_names(conn)


def test_teardown_finishes_when_libvirtd_is_back_within_the_window(conn: Any,
                                                                   template: str) -> None:
    vm = TestVm(vm_spec(template), target=VFIO_HOST, reconnect_s=20)
    vm.create()
    good = vm.spec
    vm._close()
    vm.spec = replace(good, uri="qemu+tcp://127.0.0.1:1/system")  # libvirtd is down
    back = threading.Timer(1.5, lambda: setattr(vm, "spec", good))  # ... and comes back
    back.start()
    t = time.monotonic()
    try:
        assert vm.teardown(graceful_timeout=0) == []
    finally:
        back.cancel()
    assert 1.5 <= time.monotonic() - t < 15
    assert vm.name not in domain_names(conn)
    assert volume_name(vm.run_id) not in volume_names(conn)
