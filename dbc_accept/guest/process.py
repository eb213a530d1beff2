"""A process in the guest with its stdin and stdout as pipes: the probe worker, a stream.

:class:`GuestProcess` is what every guest kind's ``open_process`` returns. Lines go in with
``send`` and come out with ``read_line``; ``kill`` ends the process and every process of its
group (what it started), so nothing of it is left in the guest.
:func:`stream_lines` runs a command to its end on top of one, handing each stdout line over
as it arrives (a long probe's progress).
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Callable, Protocol

from dbc_accept.target import NOT_FOUND_RC, TIMEOUT_RC, CommandResult

STDERR_LINES = 40  # the stderr lines a process keeps for messages
POLL_S = 0.5


class GuestProcess(Protocol):
    """A running command in the guest, talked to line by line."""

    def send(self, line: str) -> None:
        """Write ``line`` (a newline is added) to its stdin; OSError when it is gone."""
        ...

    def read_line(self, timeout: float) -> str | None:
        """Its next stdout line (no newline), None if none came within ``timeout`` seconds;
        EOFError once its stdout ended."""
        ...

    def stderr_tail(self) -> str:
        """The last lines it wrote to stderr."""
        ...

    def wait(self, timeout: float) -> int | None:
        """Its exit status once it ended within ``timeout`` seconds, else None."""
        ...

    def kill(self) -> None:
        """End it and its process group now (idempotent)."""
        ...


class LocalProcess:
    """A process on this machine, in a session of its own (so its group can be killed)."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.argv = tuple(argv)
        self._proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, env=env)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._err: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump, args=(self._proc.stdout, self._lines.put),
                             daemon=True),
            threading.Thread(target=self._pump, args=(self._proc.stderr, self._err.append),
                             daemon=True)]
        for reader in self._readers:
            reader.start()
        self._ended = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    @staticmethod
    def _pump(pipe: IO[bytes], put: Callable[[str | None], None]) -> None:
        for raw in iter(pipe.readline, b""):
            put(raw.decode(errors="replace").rstrip("\n"))
        put(None)  # end of output (for stderr: dropped by its reader, harmless)

    def send(self, line: str) -> None:
        stdin = self._proc.stdin
        if stdin is None or stdin.closed:
            raise BrokenPipeError("the process's stdin is closed")
        stdin.write(line.encode() + b"\n")
        stdin.flush()

    def read_line(self, timeout: float) -> str | None:
        if self._ended:
            raise EOFError
        try:
            line = self._lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if line is None:
            self._ended = True
            raise EOFError
        return line

    def stderr_tail(self) -> str:
        return "\n".join(line for line in list(self._err) if line is not None)

    def wait(self, timeout: float) -> int | None:
        try:
            rc = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for reader in self._readers:
            reader.join(2)
        return rc

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # ended already
            os.killpg(self._proc.pid, signal.SIGKILL)  # the leader and what it started
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):  # a broken stdin: gone either way
                    pipe.close()


def open_local(argv: Sequence[str]) -> LocalProcess:
    """``argv`` as a LocalProcess; ``python3`` is this interpreter, as LocalTarget runs it."""
    args = list(argv)
    if args and args[0] == "python3":
        args[0] = sys.executable
    return LocalProcess(args, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stream_lines(proc: GuestProcess, argv: Sequence[str], timeout: float,
                 on_line: Callable[[str], None]) -> CommandResult:
    """Read ``proc`` to its end, calling ``on_line`` for each stdout line as it arrives;
    past ``timeout`` seconds it is killed and the result has rc 124."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            return CommandResult(tuple(argv), TIMEOUT_RC, "\n".join(lines),
                                 f"{proc.stderr_tail()}\nkilled: timed out after {timeout:g} s")
        try:
            line = proc.read_line(min(left, POLL_S))
        except EOFError:
            break
        if line is not None:
            lines.append(line)
            on_line(line)
    rc = proc.wait(max(1.0, deadline - time.monotonic()))
    err = proc.stderr_tail()
    if rc is None:  # closed its stdout but runs on
        proc.kill()
        rc, err = TIMEOUT_RC, f"{err}\nkilled: timed out after {timeout:g} s"
    elif rc < 0:
        err += f"\nkilled (signal {-rc})"
    proc.kill()  # whatever it left running in its group
    return CommandResult(tuple(argv), rc, "\n".join(lines), err)


def stream_local(argv: Sequence[str], timeout: float,
                 on_line: Callable[[str], None]) -> CommandResult:
    """:func:`stream_lines` of a command on this machine."""
    try:
        proc = open_local(argv)
    except FileNotFoundError:
        return CommandResult(tuple(argv), NOT_FOUND_RC, "", f"{argv[0]}: not found")
    return stream_lines(proc, argv, timeout, on_line)
