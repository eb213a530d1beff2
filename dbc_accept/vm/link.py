"""The test VM's connection to libvirtd: opened on use, opened again when it broke.

After a libvirtd restart the cached connection fails ("End of file while reading data");
it counts as broken on VIR_ERR_SYSTEM_ERROR / VIR_ERR_INTERNAL_ERROR from VIR_FROM_RPC or
when ``conn.isAlive()`` is false: error codes and domains, never message text.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

from dbc_accept.vm.libvirt_api import broken_link, connect, error_code, error_message, load_libvirt
from dbc_accept.vm.spec import VmSpec

T = TypeVar("T")
# How long teardown keeps trying to reach a libvirtd that does not answer (restarted, say)
RECONNECT_S = 30.0


class LibvirtLink:
    """Mixed into TestVm: ``_conn`` to ``spec.uri``, reopened once when it broke."""

    spec: VmSpec
    log: Callable[[str], None]
    reconnect_s: float
    _conn: Any

    def _connection(self) -> Any:
        """The cached connection while libvirt says it is alive, else a new one."""
        if self._conn is not None:
            try:
                if self._conn.isAlive():
                    return self._conn
            except load_libvirt().libvirtError:
                pass
            self._close()
        self._conn = connect(self.spec.uri)
        return self._conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a dead connection may complain
                conn.close()

    def _broken(self, exc: BaseException) -> bool:
        """True when ``exc`` came from a connection to libvirtd that no longer works."""
        if broken_link(exc):
            return True
        conn = self._conn
        if conn is None or error_code(exc) is None:
            return False
        try:
            return not conn.isAlive()
        except load_libvirt().libvirtError:
            return True

    def _once_more(self, step: Callable[[], T]) -> T:
        """``step()``; once more on a fresh connection when the cached one broke under it."""
        try:
            return step()
        except load_libvirt().libvirtError as exc:
            if not self._broken(exc):
                raise
            self.log(f"the connection to libvirt at {self.spec.uri} broke ({error_message(exc)}): "
                     "reconnecting")
            self._close()
        return step()

    def _reach(self) -> Any:
        """A working connection, trying for ``reconnect_s`` while libvirtd does not answer."""
        libvirt = load_libvirt()
        deadline = time.monotonic() + self.reconnect_s
        said = False
        while True:
            try:
                return self._connection()
            except libvirt.libvirtError as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                if not said:
                    self.log(f"libvirt at {self.spec.uri} does not answer ({error_message(exc)}); "
                             f"trying again for up to {self.reconnect_s:g} s")
                    said = True
                time.sleep(min(1.0, left))

    def _conn_broken(self) -> bool:
        """True when there is no connection or libvirt says it is no longer alive."""
        conn = self._conn
        if conn is None:
            return True
        try:
            return not conn.isAlive()
        except load_libvirt().libvirtError:
            return True
