"""The test VM's life: create (preflight, overlay, define, start), find its address, tear down.

Teardown touches only what this run made: the domain is looked up by name and acted on
only when its ``<metadata>`` carries this run's id; the overlay is deleted only by the
name this run gave it. It never raises for what is already gone or for libvirtd errors
(it reports them), it defers SIGINT/SIGTERM while it runs, and it can be called again.
A connection that broke (libvirtd restarted) is opened again once; a libvirtd that does
not answer is waited for up to ``reconnect_s`` before teardown gives up and says so.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from dbc_accept.target import LocalTarget, Target
from dbc_accept.vm import agent
from dbc_accept.vm.agent import AgentResult
from dbc_accept.vm.domain_xml import build_domain_xml, nic_macs, parse_run_tag
from dbc_accept.vm.errors import StorageError, VmBootTimeout, VmError, VmRefused
from dbc_accept.vm.libvirt_api import error_code, error_message, load_libvirt, undefine
from dbc_accept.vm.link import RECONNECT_S, LibvirtLink
from dbc_accept.vm.safety import gpus_returned, preflight, recheck_gpus
from dbc_accept.vm.signals import signals_held
from dbc_accept.vm.spec import NS, VmSpec, domain_name, new_run_id, volume_name
from dbc_accept.vm.storage import (
    Overlay,
    create_overlay,
    delete_overlay,
    pool_for_folder,
    transient_pool_name,
)

__all__ = ["AgentResult", "StorageError", "TestVm", "VmBootTimeout", "VmError", "VmRefused"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]|\x1b\[[0-9;?]*[A-Za-z]")


def _null_log(_msg: str) -> None:
    pass


class TestVm(LibvirtLink):
    """One test VM, created from a :class:`VmSpec`, always removable by :meth:`teardown`."""

    __test__ = False  # not a pytest test class

    def __init__(self, spec: VmSpec, log: Callable[[str], None] = _null_log,
                 target: Target | None = None, reconnect_s: float = RECONNECT_S) -> None:
        self.spec = spec if spec.run_id else replace(spec, run_id=new_run_id())
        self.run_id = self.spec.run_id
        self.name = domain_name(self.run_id)
        self.log = log
        self.target = target or LocalTarget()
        self.reconnect_s = reconnect_s
        self.overlay: Overlay | None = None
        self.timings: dict[str, float] = {}
        self.gpu_problems: list[str] = []
        self._conn: Any = None
        self._overlay_claimed = False  # the overlay name is this run's (created or being)
        self._domain_claimed = False  # a domain of our name and tag is this run's
        self._started = False
        self._uuid = ""  # the domain's UUID once defined: a same-named redefinition is not ours
        self._in_teardown = False
        self._torn_down = False

    # --- creating ----------------------------------------------------------------------

    def _timed(self, step: str, start: float) -> None:
        self.timings[step] = time.monotonic() - start
        self.log(f"{step} {self.name}: {self.timings[step]:.2f} s")

    def create(self) -> None:
        """Preflight, overlay, define, start; on any exception undo what was made, re-raise."""
        libvirt = load_libvirt()
        self._torn_down = False
        try:
            t = time.monotonic()
            conn = self._connection()
            preflight(conn, self.spec, self.target)
            self._timed("preflight", t)
            t = time.monotonic()
            self._overlay_claimed = True
            self.overlay = create_overlay(conn, self.spec.image, self.run_id)
            self._timed("overlay", t)
            t = time.monotonic()
            xml = build_domain_xml(self.spec, self.name, self.overlay.path)
            self._domain_claimed = True
            dom = conn.defineXML(xml)
            self._uuid = str(dom.UUIDString())
            self._timed("define", t)
            recheck_gpus(conn, self.spec, self.name)  # a renter's VM defined meanwhile
            t = time.monotonic()
            self._started = True
            dom.create()
            self._timed("start", t)
        except BaseException as exc:
            if isinstance(exc, StorageError) and exc.exists:
                self._overlay_claimed = False  # someone else's volume: never delete it
            left = self.teardown(graceful_timeout=0)
            if isinstance(exc, libvirt.libvirtError):
                undo = f"; cleanup left: {'; '.join(left)}" if left else ""
                raise VmError(f"could not create the test VM {self.name}: {error_message(exc)}"
                              f"{undo}") from exc
            raise

    # --- looking at it -----------------------------------------------------------------

    def _domain(self) -> Any | None:
        """Our domain, or None when gone; raises VmError when the name is not ours."""
        libvirt = load_libvirt()
        try:
            dom = self._connection().lookupByName(self.name)
            tag = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS, 0)
        except libvirt.libvirtError as exc:
            if error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            if error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                raise VmError(f"domain {self.name} carries no dbc-accept tag: not ours, "
                              "left alone", "vm.cleanup") from None
            raise
        run = parse_run_tag(tag)
        if run is None or run.run_id != self.run_id:
            raise VmError(f"domain {self.name} is tagged for another run; left alone",
                          "vm.cleanup")
        if self._uuid and dom.UUIDString() != self._uuid:
            raise VmError(f"domain {self.name} was defined again by someone else (UUID "
                          f"{dom.UUIDString()}, ours was {self._uuid}); left alone", "vm.cleanup")
        return dom

    def is_alive(self) -> bool:
        """True while the domain exists and runs; VmError when libvirt cannot tell."""
        libvirt = load_libvirt()

        def running() -> bool:
            dom = self._domain()
            return bool(dom is not None and dom.isActive())

        try:
            return self._once_more(running)
        except VmError:
            return False  # the name is no longer ours: our VM is gone
        except libvirt.libvirtError as exc:
            if error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise VmError(f"libvirt at {self.spec.uri} does not answer: {error_message(exc)}",
                          "libvirtd.connect") from None

    def domain_xml(self) -> str:
        """The live domain XML ("" when the domain is gone)."""

        def xml() -> str:
            dom = self._domain()
            return str(dom.XMLDesc(0)) if dom is not None else ""

        return self._once_more(xml)

    def console_tail(self, lines: int = 40) -> str:
        """The last lines of the serial console log, control characters removed."""
        path = self.spec.console_log
        if not path:
            return "(the serial console is not logged: no console_log in the spec)"
        try:
            text = self.target.read_text(path)
        except OSError as exc:
            return f"(no serial console output: {path}: {exc.strerror or exc})"
        tail = _CONTROL.sub("", text.replace("\r\n", "\n")).splitlines()[-lines:]
        return "\n".join(tail) if tail else f"(the serial console log {path} is empty)"

    def _address(self, dom: Any) -> str | None:
        libvirt = load_libvirt()
        # the agent lists every guest interface (docker0 too): keep only our NIC's
        macs = {m.lower() for m in nic_macs(dom.XMLDesc(0))}
        for source in (libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
                       libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
                       libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP):
            try:
                ifaces = dom.interfaceAddresses(source, 0) or {}
            except libvirt.libvirtError:
                continue  # no agent yet, no lease yet: try the next source
            for iface in ifaces.values():
                if str(iface.get("hwaddr") or "").lower() not in macs:
                    continue
                for addr in iface.get("addrs") or []:
                    ip = str(addr.get("addr", ""))
                    if addr.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4 and not \
                            ip.startswith("127."):
                        return ip
        return None

    def wait_address(self, timeout: float, poll: float = 1.0) -> str:
        """The guest's IPv4 address: DHCP leases, then the guest agent, then ARP."""
        libvirt = load_libvirt()
        start = time.monotonic()
        while True:
            try:
                dom = self._domain()
                running = dom is not None and dom.isActive()
            except libvirt.libvirtError as exc:
                raise VmError(f"libvirt at {self.spec.uri} stopped answering while the test VM "
                              f"booted: {error_message(exc)}", "libvirtd.connect") from None
            if not running:
                raise VmBootTimeout(
                    f"the test VM {self.name} stopped while booting (crashed, powered off or "
                    f"destroyed). Serial console:\n{self.console_tail()}")
            ip = self._address(dom)
            if ip:
                self._timed("address", start)
                return ip
            if time.monotonic() - start > timeout:
                raise VmBootTimeout(
                    f"the test VM {self.name} got no address on network {self.spec.network!r} "
                    f"within {timeout:g} s. Serial console:\n{self.console_tail()}")
            time.sleep(poll)

    # --- the guest agent ---------------------------------------------------------------

    def agent_exec(self, argv: Sequence[str], stdin: bytes = b"",
                   timeout: float = 30.0) -> AgentResult | None:
        """Run a command in the guest through the qemu guest agent; None if it won't answer."""
        try:
            dom = self._domain()
        except (VmError, load_libvirt().libvirtError):
            return None
        return None if dom is None else agent.run(dom, argv, stdin, timeout)

    def agent_set_key(self, user: str, pubkey: str) -> bool:
        """Add an SSH public key to ``user``'s authorized_keys through the guest agent."""
        argv = agent.set_key_argv(user, pubkey)  # ValueError for a bad user or key
        result = self.agent_exec(argv)
        ok = result is not None and result.rc == 0
        self.log(f"guest agent: key for {user} {'installed' if ok else 'not installed'}")
        return ok

    # --- tearing down ------------------------------------------------------------------

    def teardown(self, graceful_timeout: float = 10) -> list[str]:
        """Stop and remove the domain and the overlay, check the GPUs; problems as text."""
        if self._in_teardown or self._torn_down:
            return []
        self._in_teardown = True
        try:
            with signals_held(deliver=True):
                problems = self._teardown(graceful_timeout)
        finally:
            self._in_teardown = False
        for problem in problems:
            self.log(f"teardown: {problem}")
        return problems

    def _teardown(self, graceful_timeout: float) -> list[str]:
        t = time.monotonic()
        problems = self._remove_both(graceful_timeout)
        if self._started and self.spec.gpus:
            self.gpu_problems = self._gpus_back()
            problems += self.gpu_problems
        if not problems:
            self._torn_down = True
            self._close()
        self._timed("teardown", t)
        return problems

    def _remove_both(self, graceful_timeout: float) -> list[str]:
        """Remove the domain and the overlay; once more on a new connection if it broke."""
        libvirt = load_libvirt()
        problems: list[str] = []
        for attempt in (1, 2):
            if not (self._domain_claimed or self._overlay_claimed):
                return []
            try:
                conn = self._reach()
            except libvirt.libvirtError as exc:
                return [f"could not reach libvirt at {self.spec.uri} within "
                        f"{self.reconnect_s:g} s ({error_message(exc)}): domain {self.name} and "
                        f"volume {volume_name(self.run_id)} may be left behind; run "
                        "`dbc-accept cleanup` once libvirtd is back"]
            problems, broke = [], False
            try:
                if self._domain_claimed:
                    problems += self._remove_domain(graceful_timeout)
                if self._overlay_claimed:
                    problems += self._remove_overlay(conn)
            except libvirt.libvirtError as exc:  # only a broken connection gets here
                problems.append(f"the connection to libvirt broke while removing "
                                f"{self.name}: {error_message(exc)}")
                broke = True
            # the storage calls report a broken link as text: ask the connection itself
            if not problems or attempt == 2 or not (broke or self._conn_broken()):
                break
            self.log(f"the connection to libvirt at {self.spec.uri} broke during teardown: "
                     "reconnecting")
            self._close()
        return problems

    def _remove_domain(self, graceful_timeout: float) -> list[str]:
        libvirt = load_libvirt()
        try:
            dom = self._domain()
            if dom is None:
                return []
            if dom.isActive():
                self._stop(dom, graceful_timeout)
            undefine(dom)
            self.log(f"removed domain {self.name}")
        except VmError as exc:
            return [str(exc)]
        except libvirt.libvirtError as exc:
            if error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return []
            if self._broken(exc):
                raise  # _remove_both reconnects and tries again
            return [f"could not remove domain {self.name}: {error_message(exc)}"]
        return []

    def _stop(self, dom: Any, graceful_timeout: float) -> None:
        libvirt = load_libvirt()
        if graceful_timeout > 0:
            # the guest agent powers off even a guest without ACPI button handling; qemu
            # tries it first and falls back to the ACPI button
            both = (libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT
                    | libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
            try:
                dom.shutdownFlags(both)
            except libvirt.libvirtError:
                with contextlib.suppress(libvirt.libvirtError):  # no way: we destroy next
                    dom.shutdown()
            deadline = time.monotonic() + graceful_timeout
            while time.monotonic() < deadline and dom.isActive():
                time.sleep(0.25)
        try:
            if dom.isActive():
                dom.destroy()
        except libvirt.libvirtError as exc:
            if error_code(exc) not in (libvirt.VIR_ERR_OPERATION_INVALID,
                                       libvirt.VIR_ERR_NO_DOMAIN):
                raise  # "not running" means it stopped by itself meanwhile

    def _remove_overlay(self, conn: Any) -> list[str]:
        overlay = self.overlay or self._find_overlay(conn)
        if overlay is None:
            return []
        problem = delete_overlay(conn, overlay)
        if problem:
            return [problem]
        self.log(f"removed overlay {overlay.path}")
        self.overlay = None
        self._overlay_claimed = False
        return []

    def _find_overlay(self, conn: Any) -> Overlay | None:
        """The overlay when create was interrupted before it learnt its path."""
        libvirt = load_libvirt()
        folder = os.path.dirname(os.path.abspath(self.spec.image))
        pool = pool_for_folder(conn, folder)
        if pool is None:
            return None
        try:
            vol = pool.storageVolLookupByName(volume_name(self.run_id))
        except libvirt.libvirtError as exc:
            if error_code(exc) == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise
        return Overlay(path=vol.path(), name=vol.name(), pool=pool.name(),
                       pool_created=pool.name() == transient_pool_name(folder),
                       backing=self.spec.image, backing_format="")

    def _gpus_back(self) -> list[str]:
        return [line for line, _ in gpus_returned(self.target, self.spec.gpus, "the test VM")]
