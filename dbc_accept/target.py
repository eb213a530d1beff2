"""Where host facts come from: this machine, a testinfra host, or a snapshot folder.

Every gatherer reads a host through the four operations of :class:`Target` and nothing
else, so the same checks run on the local machine, over SSH, and offline on a snapshot.
Errors follow the ``os`` conventions: a missing path raises ``FileNotFoundError``, an
unreadable one ``PermissionError``; a command that is not installed returns rc 127.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

from dbc_accept.secrecy import register_node_dat
from dbc_accept.verdict import FactError

NOT_FOUND_RC = 127
TIMEOUT_RC = 124
SSH_FAILED_RC = 255  # what ssh(1) exits with when it could not connect or log in


@dataclass(frozen=True)
class CommandResult:
    """What one command printed and how it ended."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def cmdline(self) -> str:
        return shlex.join(self.argv)

    def describe(self) -> str:
        """One line naming the command and how it failed, for messages."""
        tail = (self.stderr or self.stdout).strip().splitlines()
        why = tail[-1] if tail else "no output"
        if self.rc == NOT_FOUND_RC:
            why = "command not found"
        return f"`{self.cmdline}` exited {self.rc}: {why}"


@runtime_checkable
class Target(Protocol):
    """The narrow interface every gatherer reads a host through."""

    @property
    def name(self) -> str:
        """A short label used in test ids and reports (``local``, ``ssh://root@n1``)."""
        ...

    def read_text(self, path: str) -> str:
        """The file's content as text (UTF-8, undecodable bytes replaced)."""
        ...

    def read_link(self, path: str) -> str:
        """The target of a symbolic link, as ``os.readlink`` gives it."""
        ...

    def list_dir(self, path: str) -> list[str]:
        """The names in a folder, sorted."""
        ...

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        """Run a command (no shell) and capture its output."""
        ...


class LocalTarget:
    """This machine."""

    name = "local"

    def read_text(self, path: str) -> str:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        if path.endswith("/node.dat"):  # its secrets known before anything is written
            register_node_dat(text)
        return text

    def read_link(self, path: str) -> str:
        return os.readlink(path)

    def list_dir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        args = list(argv)
        # The interpreter running the suite is this machine's python3 for our purposes:
        # it has the packages (libvirt-python) that in-line probes import.
        if args and args[0] == "python3":
            args[0] = sys.executable
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        try:
            proc = subprocess.run(
                args, capture_output=True, text=True, errors="replace",
                timeout=timeout, env=env, check=False,
            )
        except FileNotFoundError:
            return CommandResult(tuple(argv), NOT_FOUND_RC, "", f"{argv[0]}: not found")
        except PermissionError as exc:
            return CommandResult(tuple(argv), 126, "", str(exc))
        except subprocess.TimeoutExpired:
            return CommandResult(tuple(argv), TIMEOUT_RC, "", f"timed out after {timeout:g} s")
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def call_within(seconds: float, fn: Callable[..., Any], *args: Any,
                what: str = "for one command (--node-timeout)") -> Any:
    """``fn(*args)``, or TimeoutError when it has not returned after ``seconds``.

    The call goes on in a daemon thread that is left behind: a node that stopped answering
    costs its time-out, not the run.
    """
    box: list[Any] = []

    def work() -> None:
        try:
            box.append((True, fn(*args)))
        except BaseException as exc:  # handed to the caller as it is
            box.append((False, exc))

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(seconds)
    if not box:
        raise TimeoutError(f"no answer within {seconds:g} s {what}")
    ok, value = box[0]
    if not ok:
        raise value
    return value


# `cat`, `ls` and `readlink` messages under LC_ALL=C -> the OSError LocalTarget would raise.
_ERRORS: tuple[tuple[str, type[OSError]], ...] = (
    ("No such file or directory", FileNotFoundError),
    ("Permission denied", PermissionError),
    ("Operation not permitted", PermissionError),
    ("Is a directory", IsADirectoryError),
    ("Not a directory", NotADirectoryError),
)


def _os_error(path: str, stderr: str) -> OSError:
    """The OSError LocalTarget raises for the error a remote tool printed."""
    for text, kind in _ERRORS:
        if text in stderr:
            return kind(path)
    last = stderr.strip().splitlines()
    return OSError(f"{path}: {last[-1] if last else 'unreadable'}")


def _why(exc: Exception) -> str:
    """What a backend's exception says; the ssh backend raises with its CommandResult."""
    result = exc.args[0] if exc.args else None
    stderr = getattr(result, "stderr_bytes", None)
    if isinstance(stderr, bytes) and stderr.strip():
        return stderr.decode("utf-8", errors="replace").strip()
    return str(exc) or type(exc).__name__


class TestinfraTarget:
    """Any host pytest-testinfra reaches (ssh, paramiko, ansible, docker, ...).

    Each operation is one remote command run under ``LC_ALL=C``, so the tools' error
    messages can be mapped to the exceptions :class:`LocalTarget` raises.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, host: Any, name: str | None = None, timeout: float | None = None,
                 connect_timeout: float | None = None) -> None:
        self._host = host
        self.name: str = name or host.backend.get_pytest_id()
        self._unreachable: FactError | None = None
        self.timeout = timeout  # seconds one remote command may take in all (None: no limit)
        self.connect_timeout = connect_timeout  # seconds to connect and log in (paramiko)
        self.round_trips = 0  # remote commands run
        self._connected = False

    @property
    def unreachable(self) -> FactError | None:
        """Why the node could not be reached (None: it could, or was not tried yet)."""
        return self._unreachable

    def _connect(self) -> None:
        """paramiko: connect now, and send small packets at once (TCP_NODELAY).

        Without it a command waits about 40 ms for Nagle's algorithm and the delayed ACK.
        """
        backend = self._host.backend
        if backend.NAME != "paramiko":
            self._connected = True
            return
        transport = backend.client.get_transport()
        self._connected = True
        sock = getattr(transport, "sock", None)
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _call(self, line: str, *args: str) -> Any:
        if not self._connected:
            if self.connect_timeout is None:
                self._connect()
            else:  # paramiko's own timeout covers the TCP connect, not a silent server
                call_within(self.connect_timeout, self._connect,
                            what="to connect (--node-connect-timeout)")
        self.round_trips += 1
        if self.timeout is None:
            return self._host.run(line, *args)
        return call_within(self.timeout, self._host.run, line, *args)

    def _exec(self, line: str, *args: str) -> tuple[int, str, str]:
        # A host that cannot be reached fails every fact at once (not after a time-out each)
        # and never as an OSError, which gatherers would take for a missing file. The error
        # is raised afresh each time: its traceback must not grow with every raise.
        if self._unreachable is not None:
            raise self._unreachable.with_traceback(None)
        try:
            out = self._call(line, *args)
        except Exception as exc:  # paramiko, socket and backend errors alike
            lost = "stopped answering" if self._connected and isinstance(exc, TimeoutError) \
                else "cannot connect"
            self._unreachable = FactError(self.name, f"{lost}: {_why(exc)}")
            raise self._unreachable.with_traceback(None) from None
        if out.rc == SSH_FAILED_RC and self._host.backend.NAME in ("ssh", "safe-ssh") and (
                out.stderr_bytes.startswith(b"ssh:") or b"Permission denied (" in out.stderr_bytes):
            why = out.stderr_bytes.decode("utf-8", errors="replace").strip()
            self._unreachable = FactError(self.name, f"cannot connect: {why}")
            raise self._unreachable.with_traceback(None)
        stdout = out.stdout_bytes.decode("utf-8", errors="replace")
        stderr = out.stderr_bytes.decode("utf-8", errors="replace")
        return int(out.rc), stdout, stderr

    def read_text(self, path: str) -> str:
        rc, stdout, stderr = self._exec("LC_ALL=C cat -- %s", path)
        if rc != 0:
            raise _os_error(path, stderr)
        if path.endswith("/node.dat"):  # its secrets known before anything is written
            register_node_dat(stdout)
        return stdout

    def read_link(self, path: str) -> str:
        # `readlink` without -f says nothing about why it failed: ask `ls -d` then.
        rc, stdout, _ = self._exec("LC_ALL=C readlink -- %s", path)
        if rc == 0:
            return stdout[:-1] if stdout.endswith("\n") else stdout
        rc, _, stderr = self._exec("LC_ALL=C ls -d -- %s", path)
        if rc != 0:
            raise _os_error(path, stderr)
        raise OSError(22, "Invalid argument: not a symbolic link", path)

    def list_dir(self, path: str) -> list[str]:
        # The trailing slash makes ls refuse a file (as os.listdir does) and follow a link.
        rc, stdout, stderr = self._exec("LC_ALL=C ls -A1 -- %s", path.rstrip("/") + "/")
        if rc != 0:
            raise _os_error(path, stderr)
        return sorted(line for line in stdout.splitlines() if line)

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        line = f"LC_ALL=C LANG=C timeout {max(1, int(timeout))} " + " ".join(["%s"] * len(argv))
        rc, stdout, stderr = self._exec(line, *argv)
        if rc == TIMEOUT_RC:
            stderr = stderr or f"timed out after {timeout:g} s"
        return CommandResult(tuple(argv), rc, stdout, stderr)
