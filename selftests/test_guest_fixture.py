"""The `guest` fixture's options, modes and teardown logic (fast: no VM is booted here)."""

from __future__ import annotations

import os
import signal
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from dbc_accept.guest import fixtures, vmguest
from dbc_accept.guest.ssh import Credentials
from dbc_accept.guest.vmguest import VmRecord, vm_guest
from dbc_accept.vm.leases import interface_macs, release_packet
from dbc_accept.vm.lifecycle import VmBootTimeout
from dbc_accept.vm.signals import signals_held, sigterm_as_interrupt
from dbc_accept.vm.spec import VmSpec

USES_GUEST = """
def test_uses_guest(guest):
    assert guest.run(["true"]).ok
"""


def _run(pytester: pytest.Pytester, *args: str, body: str = USES_GUEST) -> pytest.RunResult:
    pytester.makeconftest('pytest_plugins = ["dbc_accept.plugin"]')
    pytester.makepyfile(test_x=body)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--no-report", *args)


@pytest.mark.parametrize("args,message", [
    (["--guest", "vmm"], "*--guest 'vmm': use vm (the test VM), ssh://user@host:port*"),
    (["--guest", "ssh://u:s3cr3t@h"], "*--guest ssh://u:***@h: put no password in the URL*"),
    (["--gpus", "first"], "*--gpus first: 'first' is not a PCI address*"),
    (["--vm-memory", "0"], "*--vm-memory 0: give a positive number*"),
])
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, args: list[str],
                                      message: str) -> None:
    result = _run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "s3cr3t" not in result.stderr.str()


def test_missing_image_is_a_usage_error_only_when_a_test_needs_the_guest(
        pytester: pytest.Pytester) -> None:
    result = _run(pytester, "--vm-image", "/nonexistent.qcow2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--vm-image /nonexistent.qcow2: no such file*"])
    host_only = _run(pytester, "--vm-image", "/nonexistent.qcow2",
                     body="def test_host():\n    pass\n")
    host_only.assert_outcomes(passed=1)


def test_gpus_not_on_this_node_is_a_usage_error(pytester: pytest.Pytester) -> None:
    image = pytester.path / "t.qcow2"
    image.write_bytes(b"")
    result = _run(pytester, "--vm-image", str(image), "--gpus", "0000:65:00.0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*0000:65:00.0 is not a GPU on this node*"])


def test_local_guest_has_a_private_workdir_removed_after(pytester: pytest.Pytester) -> None:
    body = """
import os
seen = []
def test_one(guest):
    seen.append(guest.workdir)
    assert os.path.isdir(guest.workdir) and guest.name == "local"
    assert isinstance(guest.passed_gpus, list)
def test_same_session_guest(guest):
    assert guest.workdir == seen[0]
    with open(os.environ["SEEN_FILE"], "w") as fh:
        fh.write(guest.workdir)
"""
    seen = pytester.path / "seen"
    os.environ["SEEN_FILE"] = str(seen)
    try:
        result = _run(pytester, "--guest", "local", body=body)
    finally:
        del os.environ["SEEN_FILE"]
    result.assert_outcomes(passed=2)
    assert not os.path.exists(seen.read_text())


def test_unreachable_ssh_guest_fails_with_the_fix(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "--guest", "ssh://dbc@127.0.0.1:1", "--vm-password", "pw-x1")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ssh://dbc@127.0.0.1:1: cannot connect*",
                                 "*fix: check the login of the guest: user and password*"])
    assert "pw-x1" not in result.stdout.str()


def test_sigterm_becomes_keyboard_interrupt_and_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before kill() returns
    assert signal.getsignal(signal.SIGTERM) == before


def test_signals_are_held_during_teardown() -> None:
    got: list[str] = []
    with signals_held(got):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
    assert got == ["SIGINT", "SIGTERM"]


@pytest.mark.usefixtures("sigint_as_ctrl_c")
def test_held_signals_can_be_delivered_after_once_each() -> None:
    got: list[str] = []
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), signals_held(got, deliver=True):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        assert got == ["SIGINT", "SIGINT"]  # held: the block runs on
    assert signal.getsignal(signal.SIGINT) == before


def test_release_packet_is_a_dhcprelease() -> None:
    pkt = release_packet("192.168.122.50", "52:54:00:aa:bb:cc", "192.168.122.1", b"\x01\x02")
    op, htype, hlen = struct.unpack("!BBB", pkt[:3])
    assert (op, htype, hlen) == (1, 1, 6)
    assert pkt[12:16] == bytes([192, 168, 122, 50])  # ciaddr
    assert pkt[28:34] == bytes.fromhex("525400aabbcc")  # chaddr
    options = pkt[240:]
    assert pkt[236:240] == b"\x63\x82\x53\x63"
    assert options.startswith(bytes([53, 1, 7, 54, 4, 192, 168, 122, 1, 61, 2, 1, 2, 255]))


class LeaseNet:
    """A libvirt network whose lease list drops a lease after some releases of it."""

    def __init__(self, leases: dict[str, str], drop_after: dict[str, int]) -> None:
        self.leases, self.drop_after, self.sends = leases, drop_after, []  # ip -> mac

    def name(self) -> str:
        return "default"

    def isActive(self) -> bool:
        return True

    def bridgeName(self) -> str:
        return "virbr0"

    def XMLDesc(self, flags: int) -> str:
        return "<network><ip address='192.168.122.1'/></network>"

    def DHCPLeases(self) -> list[dict[str, Any]]:
        return [{"ipaddr": ip, "mac": mac, "type": 0, "clientid": None}
                for ip, mac in self.leases.items()]

    def send(self, packet: bytes, server: str, bridge: str) -> None:
        ip = ".".join(str(b) for b in packet[12:16])
        self.sends.append(ip)
        if self.sends.count(ip) >= self.drop_after.get(ip, 99):
            self.leases.pop(ip, None)


def test_release_waits_for_the_lease_to_go_and_sends_again_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dbc_accept.vm import leases

    net = LeaseNet({"192.168.122.5": "52:54:00:00:00:05", "192.168.122.6": "52:54:00:00:00:06",
                    "192.168.122.7": "52:54:00:00:00:07", "192.168.122.9": "52:54:00:00:00:99"},
                   {"192.168.122.5": 1, "192.168.122.6": 2})
    conn = type("Conn", (), {"networkLookupByName": lambda self, n: net})()
    monkeypatch.setattr(leases, "_send", net.send)
    lines = leases.release_leases(conn, "default", ["52:54:00:00:00:05", "52:54:00:00:00:06",
                                                    "52:54:00:00:00:07"], confirm_s=0.4)
    assert lines == [
        "lease 192.168.122.5 (52:54:00:00:00:05) on default",
        "lease 192.168.122.6 (52:54:00:00:00:06) on default",  # gone after the second release
        "lease 192.168.122.7 (52:54:00:00:00:07) on default (release sent; still listed "
        "after 0.4 s)"]
    assert sorted(net.sends) == ["192.168.122.5", "192.168.122.6", "192.168.122.6",
                                 "192.168.122.7", "192.168.122.7"]
    assert "192.168.122.9" in net.leases  # another MAC's lease: never touched


def test_interface_macs() -> None:
    xml = ("<domain><devices><interface type='network'><mac address='52:54:00:AA:00:01'/>"
           "<source network='default'/></interface><interface type='network'>"
           "<mac address='52:54:00:aa:00:02'/><source network='other'/></interface>"
           "</devices></domain>")
    assert interface_macs(xml, "default") == ["52:54:00:aa:00:01"]
    assert interface_macs("", "default") == []


# --- vm_guest's control flow, with a stand-in for the VM library --------------------------

class FakeVm:
    def __init__(self, spec: VmSpec, log: Any = None) -> None:
        self.spec = spec
        self.calls: list[str] = []
        self.boot_error: BaseException | None = None
        self.problems: list[str] = []
        FakeVm.last = self

    last: FakeVm

    def create(self) -> None:
        self.calls.append("create")

    def domain_xml(self) -> str:
        return "<domain/>"

    def wait_address(self, timeout: float) -> str:
        if self.boot_error:
            raise self.boot_error
        return "192.0.2.9"

    def console_tail(self) -> str:
        return "[ 1.0] Kernel panic - not syncing"

    def is_alive(self) -> bool:
        return True

    def agent_set_key(self, user: str, key: str) -> bool:
        return False

    def teardown(self) -> list[str]:
        self.calls.append("teardown")
        return self.problems


@contextmanager
def _fake_api(monkeypatch: pytest.MonkeyPatch, boot_error: BaseException | None = None,
              problems: list[str] | None = None) -> Iterator[None]:
    class Vm(FakeVm):
        def __init__(self, spec: VmSpec, log: Any = None) -> None:
            super().__init__(spec, log)
            self.boot_error = boot_error
            self.problems = problems or []

    monkeypatch.setattr(vmguest, "_vm_api", lambda: (Vm, lambda uri, **kw: ["old one"]))
    yield


SPEC = VmSpec(uri="test:///default", image="/x.qcow2", gpus=(), memory_mib=1024, vcpus=1)


def test_boot_timeout_tears_down_and_carries_the_console(monkeypatch: pytest.MonkeyPatch) -> None:
    record = VmRecord()
    with _fake_api(monkeypatch, VmBootTimeout("no address within 5 s. Serial console:\nX")), \
            pytest.raises(vmguest.VmBootError, match=r"(?s)no address.*fix: the test VM did"), \
            vm_guest(SPEC, Credentials("dbc", password="p"), boot_timeout=5, record=record):
        pass
    assert FakeVm.last.calls == ["create", "teardown"]
    assert record.swept == ["old one"]
    assert "Kernel panic" in record.console_tail


def test_interrupt_in_the_body_still_tears_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmguest._Boot, "ssh", lambda self, address: _NoSsh())
    record = VmRecord()
    with _fake_api(monkeypatch), pytest.raises(KeyboardInterrupt), \
            vm_guest(SPEC, Credentials("dbc", password="p"), boot_timeout=5, record=record):
        raise KeyboardInterrupt
    assert FakeVm.last.calls == ["create", "teardown"]
    assert record.torn_down[0].startswith("domain dbc-accept-")


def test_teardown_problems_are_recorded_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmguest._Boot, "ssh", lambda self, address: _NoSsh())
    record = VmRecord()
    with _fake_api(monkeypatch, problems=["could not reach libvirt"]), \
            vm_guest(SPEC, Credentials("dbc", password="p"), boot_timeout=5, record=record):
        pass
    assert record.problems == [f"could not reach libvirt; fix: {fixtures_fix('vm.cleanup')}"]
    assert any(line.startswith("PROBLEM:") for line in fixtures.summary_lines(record))


def test_keep_vm_prints_how_to_remove_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmguest._Boot, "ssh", lambda self, address: _NoSsh())
    record = VmRecord()
    with _fake_api(monkeypatch), vm_guest(SPEC, Credentials("dbc", password="p"),
                                          boot_timeout=5, record=record, keep=True):
        pass
    assert FakeVm.last.calls == ["create"]
    assert "dbc-accept cleanup" in record.notes[0]


class _NoSsh:
    alive = None

    def close(self, remove_workdir: bool = True) -> None:
        pass


def fixtures_fix(check: str) -> str:
    from dbc_accept.remedies import REMEDIES

    return REMEDIES[check].fix


def test_libvirt_unreachable_fails_before_anything_is_made(pytester: pytest.Pytester) -> None:
    image = pytester.path / "t.qcow2"
    image.write_bytes(b"")
    result = _run(pytester, "--vm-image", str(image), "--gpus", "0",
                  "--libvirt-uri", "qemu+tcp://127.0.0.1:1/system")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*cannot reach libvirt at qemu+tcp://127.0.0.1:1/system*nothing was created*",
        "*fix: `virsh connect qemu+tcp://localhost:16509/system` must work*"])
