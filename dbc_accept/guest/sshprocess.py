"""A process in an SSH guest with its stdin and stdout as pipes (one session channel).

The command runs as ``exec`` of the login shell that sshd started in a session of its own,
so its pid (the shell's ``$$``, written first) is also its process group, which ``kill``
ends as a whole with a second command. A connection that breaks raises
:class:`~dbc_accept.guest.ssh.GuestConnectionLost`, as every other guest operation does.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dbc_accept.guest.process import STDERR_LINES

if TYPE_CHECKING:
    import paramiko

    from dbc_accept.guest.ssh import SshGuest

POLL_S = 0.02
ALIVE_EVERY_S = 2.0  # how often a wait asks whether the test VM still runs
STDERR_KEEP = 16_000  # bytes of stderr kept for messages


class SshProcess:
    """A :class:`~dbc_accept.guest.process.GuestProcess` over one SSH channel."""

    def __init__(self, guest: SshGuest, chan: paramiko.Channel, argv: Sequence[str]) -> None:
        self.guest, self.chan, self.argv = guest, chan, tuple(argv)
        self.doing = f"talking to `{shlex.join(argv)}`"
        self.pid: int | None = None
        self._out, self._err = bytearray(), bytearray()

    @classmethod
    def start(cls, guest: SshGuest, argv: Sequence[str]) -> SshProcess:
        import paramiko

        doing = f"starting `{shlex.join(argv)}`"
        try:
            chan = guest._transport(doing).open_session(timeout=guest.connect_timeout)
            chan.exec_command(f"echo $$; LC_ALL=C LANG=C exec {shlex.join(argv)}")
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise guest._lost(doing, f"{type(exc).__name__}: {exc}") from None
        proc = cls(guest, chan, argv)
        try:
            first = proc.read_line(guest.connect_timeout)
        except EOFError:
            first = None
        if first is None or not first.strip().isdigit():
            chan.close()
            raise OSError(f"`{shlex.join(argv)}` did not start in {guest.name}: "
                          f"{proc.stderr_tail() or first or 'no answer'}")
        proc.pid = int(first)
        return proc

    def _drain(self) -> None:
        while self.chan.recv_ready():
            self._out += self.chan.recv(65536)
        while self.chan.recv_stderr_ready():
            self._err += self.chan.recv_stderr(65536)
        del self._err[:-STDERR_KEEP]

    def send(self, line: str) -> None:
        try:
            self.chan.sendall((line + "\n").encode())
        except OSError:
            raise
        except Exception as exc:  # paramiko's SSHException: the channel is closed
            raise BrokenPipeError(f"{self.guest.name}: {exc}") from None

    def read_line(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        next_alive = time.monotonic() + ALIVE_EVERY_S
        while True:
            self._drain()
            end = self._out.find(b"\n")
            if end >= 0:
                line = bytes(self._out[:end])
                del self._out[:end + 1]
                return line.decode(errors="replace")
            if self.chan.eof_received or self.chan.closed:
                self._drain()
                if b"\n" in self._out:
                    continue
                if self._out:
                    line, self._out = bytes(self._out), bytearray()
                    return line.decode(errors="replace")
                raise EOFError
            if time.monotonic() >= deadline:
                return None
            if not self.guest._active():
                raise self.guest._lost(self.doing)
            if self.guest.alive and time.monotonic() > next_alive:  # the test VM: libvirt
                if self.guest.alive():
                    raise self.guest._lost(self.doing)
                next_alive = time.monotonic() + ALIVE_EVERY_S
            time.sleep(POLL_S)

    def stderr_tail(self) -> str:
        with contextlib.suppress(Exception):  # a closed channel: what was read is kept
            self._drain()
        lines = self._err.decode(errors="replace").strip().splitlines()
        return "\n".join(lines[-STDERR_LINES:])

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while not self.chan.exit_status_ready():
            if time.monotonic() >= deadline or self.chan.closed:
                return None
            self._drain()
            time.sleep(POLL_S)
        return int(self.chan.recv_exit_status())

    def kill(self) -> None:
        from dbc_accept.guest.ssh import GuestError

        if self.pid is not None and self.guest._active():
            with contextlib.suppress(GuestError):  # the guest is gone: so is the process
                self.guest.run(["kill", "-KILL", "--", f"-{self.pid}"], timeout=10)
        self.pid = None
        self.chan.close()
