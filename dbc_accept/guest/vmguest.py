"""The test VM as a guest: sweep, create, wait for SSH, hand it over, always tear down.

:func:`vm_guest` is a context manager used by the ``guest`` fixture and by
``scripts/bench-vm.py``. Whatever ends the ``with`` block (a test failure, an exception,
Ctrl-C, SIGTERM, a dead VM), the VM is torn down unless ``keep`` is set, and the GPUs it
held are checked to be back on vfio-pci. What happened is written to :class:`VmRecord`.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from dbc_accept.guest import PassedGpu
from dbc_accept.guest.ssh import (
    Credentials,
    GuestAuthError,
    GuestError,
    HostKeyChanged,
    HostKeyPin,
    SshGuest,
)
from dbc_accept.messages import t
from dbc_accept.remedies import remedy_for
from dbc_accept.target import LocalTarget
from dbc_accept.vm.errors import VmBootTimeout, VmError
from dbc_accept.vm.libvirt_api import error_code, error_message
from dbc_accept.vm.signals import signals_held, sigterm_as_interrupt
from dbc_accept.vm.spec import VmSpec, domain_name, new_run_id, volume_name

SSH_PORT = 22
SSH_RETRY_S = 1.0
NO_HOST_KEY = (
    "its SSH host key could not be read through the qemu guest agent, so no login was tried "
    "(a renter's VM could answer on its address); install and enable qemu-guest-agent in "
    "the template, or pass --vm-accept-new-host-key to trust the first key seen")
AGENT_GRACE_S = 10.0  # after the first refused login, how long the agent may take to answer


class VmBootError(GuestError):
    """The VM did not reach SSH; the message carries the serial console's tail."""


@dataclass
class VmRecord:
    """What one test VM's life looked like, for the terminal summary and the report."""

    run_id: str = ""
    domain: str = ""
    address: str = ""
    domain_xml: str = ""
    console_tail: str = ""
    swept: list[str] = field(default_factory=list)
    torn_down: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # each one fails the session
    notes: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # the VM library's step log
    timings: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    login: str = ""  # "run key (guest agent)", else Credentials.describe(): "key", "password", ...
    vm_timings: dict[str, float] = field(default_factory=dict)  # TestVm's own steps


def _vm_api() -> tuple[Any, Callable[..., list[str]]]:
    """TestVm and the sweep, imported on use (they import libvirt)."""
    from dbc_accept.vm import reaper
    from dbc_accept.vm.lifecycle import TestVm

    return TestVm, reaper.sweep


def new_run_key() -> tuple[Any, str]:
    """A fresh ed25519 key for this run: (paramiko key, OpenSSH public line)."""
    import paramiko
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem)), public


def passed_gpus(spec: VmSpec, pci_functions: list[Any]) -> list[PassedGpu]:
    """The GPUs (display functions) among the functions the VM gets."""
    wanted = set(spec.gpus)
    return [PassedGpu(f.bdf, f.pci_id, f.describe()) for f in pci_functions
            if f.bdf in wanted and f.is_gpu]


@dataclass
class _Login:
    """How to log in; the run key joins once the guest agent has put it in place."""

    creds: Credentials
    pin: HostKeyPin
    run_key: tuple[Any, str] | None = None
    key_set: bool = False
    agent_why: str = "not tried"
    host_keys: int = 0  # host keys read through the guest agent and pinned


class _Boot:
    """Start to SSH: address, guest agent key, first login; within one deadline."""

    def __init__(self, vm: Any, record: VmRecord, login: _Login, timeout: float,
                 gpus: list[PassedGpu]) -> None:
        self.vm, self.record, self.login = vm, record, login
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.gpus = gpus

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def alive(self) -> str | None:
        """Why the VM is gone, or None (running, or libvirt cannot tell: SSH timeouts decide)."""
        try:
            if self.vm.is_alive():
                return None
            self.vm.domain_xml()  # raises when the name is no longer ours: not "gone" then
        except Exception:  # libvirt cannot tell (down, restarting): the SSH timeouts decide
            return None
        return "the test VM is no longer running (destroyed, crashed or powered off)"

    def fail(self, why: str) -> VmBootError:
        tail = _console_tail(self.vm)
        self.record.console_tail = tail
        return VmBootError(f"{why}\n--- serial console (last lines) ---\n{tail or '(empty)'}"
                           f"\n--- end ---\n{t('fix')}: {remedy_for('vm.boot')}")

    def try_agent(self) -> None:
        if self.login.key_set or self.login.run_key is None:
            return
        t = time.monotonic()
        if not self.vm.agent_set_key(self.login.creds.user, self.login.run_key[1]):
            self.login.agent_why = "the guest agent did not answer or refused"
            return
        self.record.timings["agent key"] = time.monotonic() - t
        self.login.key_set = True
        self.record.login = "run key (guest agent)"

    def learn_host_keys(self, address: str) -> bool:
        """Pin the VM's host keys as the guest agent reads them; True once some are."""
        if self.login.host_keys:
            return True
        from dbc_accept.vm.agent import HOST_KEYS_ARGV

        result = self.vm.agent_exec(HOST_KEYS_ARGV, timeout=max(1.0, min(10.0, self.left())))
        if result is not None and result.rc == 0:
            self.login.host_keys = self.login.pin.trust(address, result.stdout.splitlines())
        if self.login.host_keys:
            self.record.notes.append(f"host key: {self.login.host_keys} key(s) of the VM read "
                                     "through the guest agent and pinned")
        return bool(self.login.host_keys)

    def creds(self) -> Credentials:
        c = self.login.creds
        if self.login.key_set and self.login.run_key:
            return Credentials(c.user, c.password, c.key_path, self.login.run_key[0])
        return c

    def run(self) -> SshGuest:
        t0 = time.monotonic()
        try:
            address = self.vm.wait_address(max(1.0, self.left()))
        except VmBootTimeout as exc:  # its message has the serial console already
            self.record.console_tail = _console_tail(self.vm)
            raise VmBootError(f"{exc}\n{t('fix')}: {remedy_for('vm.boot')}") from None
        self.record.address = str(address)
        self.record.timings["address"] = time.monotonic() - t0
        t1 = time.monotonic()
        guest = self.ssh(str(address))
        self.record.timings["ssh"] = time.monotonic() - t1
        return guest

    def ssh(self, address: str) -> SshGuest:
        first_refusal: float | None = None
        last = "no answer yet"
        while True:
            self.try_agent()
            gone = self.alive()
            if gone:
                raise self.fail(f"{gone} (it stopped during boot, before SSH answered)")
            if not self.learn_host_keys(address) and not self.login.pin.accept_new:
                last = NO_HOST_KEY  # no login before the VM's own key is known
                if self.left() <= 0:
                    raise self.fail(f"the test VM ({address}): {NO_HOST_KEY}")
                time.sleep(SSH_RETRY_S)
                continue
            guest = SshGuest(address, SSH_PORT, self.creds(), pin=self.login.pin,
                             connect_timeout=max(1.0, min(10.0, self.left())),
                             passed_gpus=self.gpus, alive=self.alive)
            t = time.monotonic()
            try:
                guest.connect()
                self.record.timings["login"] = time.monotonic() - t
                return guest
            except (GuestAuthError, HostKeyChanged) as exc:
                if isinstance(exc, HostKeyChanged) or self.login.key_set:
                    raise
                first_refusal = first_refusal or time.monotonic()
                if time.monotonic() - first_refusal > AGENT_GRACE_S:
                    raise GuestAuthError(f"{exc}; the guest agent could not set a run key "
                                         f"either ({self.login.agent_why})") from None
                last = str(exc)
            except GuestError as exc:
                last = str(exc)
            if self.left() <= 0:
                raise self.fail(f"the test VM ({address}) did not answer SSH within "
                                f"{self.timeout:g} s; last try: {last}")
            time.sleep(SSH_RETRY_S)


def _console_tail(vm: Any) -> str:
    try:
        return str(vm.console_tail())
    except Exception as exc:  # the log may be gone with the domain
        return f"(console log unreadable: {type(exc).__name__}: {exc})"


@contextmanager
def vm_guest(spec: VmSpec, creds: Credentials, *, boot_timeout: float, keep: bool = False,
             record: VmRecord | None = None, pci_functions: list[Any] | None = None,
             accept_new_host_key: bool = False, use_agent: bool = True,
             console_dir: str | None = None) -> Iterator[SshGuest]:
    """Sweep leftovers, create the VM of ``spec``, yield it logged in; always tear down."""
    record = record if record is not None else VmRecord()
    test_vm, sweep = _vm_api()
    spec = spec if spec.run_id else replace(spec, run_id=new_run_id())
    if console_dir and not spec.console_log:
        spec = replace(spec, console_log=os.path.join(
            console_dir, f"{domain_name(spec.run_id)}-console.log"))
    record.run_id, record.domain = spec.run_id, domain_name(spec.run_id)
    t0 = time.monotonic()
    try:
        record.swept = list(sweep(spec.uri, log=record.log.append,
                                  folders=(os.path.dirname(os.path.abspath(spec.image)),),
                                  target=LocalTarget()))
    except Exception as exc:
        if error_code(exc) is None:
            raise
        raise VmError(f"cannot reach libvirt at {spec.uri}: {error_message(exc)}; nothing was "
                      "created", "libvirtd.connect") from None
    record.timings["sweep"] = time.monotonic() - t0
    vm = test_vm(spec, log=record.log.append)
    guest: SshGuest | None = None
    with sigterm_as_interrupt():
        try:
            t1 = time.monotonic()
            vm.create()
            record.timings["create"] = time.monotonic() - t1
            record.domain_xml = str(vm.domain_xml())
            login = _Login(creds, HostKeyPin(accept_new=accept_new_host_key),
                           new_run_key() if use_agent else None)
            record.login = creds.describe()
            gpus = passed_gpus(spec, pci_functions or [])
            guest = _Boot(vm, record, login, boot_timeout, gpus).run()
            record.timings["ready"] = time.monotonic() - t0
            yield guest
        finally:
            _finish(vm, spec, guest, record, keep)


def _teardown(vm: Any, record: VmRecord) -> None:
    """Tear down; each problem left goes to the record with its fix."""
    try:
        problems = list(vm.teardown())
    except Exception as exc:  # TestVm reports rather than raises; never lose the VM's trace
        problems = [f"tearing down {record.domain} failed: {type(exc).__name__}: {exc}"]
    gpu = set(getattr(vm, "gpu_problems", []))
    for problem in problems:
        fix = remedy_for("vm.gpu_returned" if problem in gpu else "vm.cleanup")
        record.problems.append(f"{problem}; {t('fix')}: {fix}")
    if not problems:
        record.torn_down = [f"domain {record.domain}", f"overlay {volume_name(record.run_id)}"]
        record.torn_down += _release_leases(vm.spec, record)


def _release_leases(spec: VmSpec, record: VmRecord) -> list[str]:
    """Give back the gone VM's DHCP leases (dnsmasq would keep them an hour)."""
    from dbc_accept.vm.leases import interface_macs, release_leases
    from dbc_accept.vm.libvirt_api import connect

    macs = interface_macs(record.domain_xml, spec.network)
    if not macs:
        return []
    try:
        conn = connect(spec.uri)
        try:
            return release_leases(conn, spec.network, macs)
        finally:
            conn.close()
    except Exception as exc:  # a lease left is harmless: it expires within the hour
        record.notes.append(f"could not release the DHCP lease of {', '.join(macs)}: "
                            f"{type(exc).__name__}: {exc}")
        return []


def _finish(vm: Any, spec: VmSpec, guest: SshGuest | None, record: VmRecord,
            keep: bool) -> None:
    """Close the SSH link, keep or tear down the VM, check the GPUs; signals held meanwhile."""
    received: list[str] = []
    with signals_held(received):
        t0 = time.monotonic()
        if guest is not None:
            guest.alive = None  # no libvirt calls from a closing link
            # The work folder goes with the overlay (or stays for --keep-vm debugging); a
            # guest that died would only make the removal wait for a time-out.
            guest.close(remove_workdir=False)
        if not record.console_tail:
            record.console_tail = _console_tail(vm)
        if keep:
            record.notes.append(
                f"--keep-vm: the test VM {record.domain} (overlay {volume_name(spec.run_id)}) "
                f"is kept at {record.address or 'an unknown address'}; remove it with "
                f"`dbc-accept cleanup` (or `virsh destroy {record.domain}; virsh undefine "
                f"--nvram {record.domain}; virsh vol-delete` of the overlay)")
        else:
            _teardown(vm, record)
        record.timings["teardown"] = time.monotonic() - t0
        record.vm_timings = dict(getattr(vm, "timings", {}))
    if received:
        record.notes.append(f"{', '.join(received)} arrived during teardown: it finished first")
