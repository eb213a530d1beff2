"""The host side of the probe worker (``probes/worker.py``): start it, ask it, stop it.

One worker per guest answers the probes one request at a time, so Python start, ``import
torch`` and the CUDA context are paid once. A worker that dies (a segfault, ``os._exit``, a
fatal CUDA error) or gives no answer within the probe's time limit is stopped with its whole
process group: :class:`WorkerGone` says what happened, with its last stderr lines, and only
that probe fails; the next probe gets a new worker.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

from dbc_accept.guest.process import GuestProcess

ENV = "DBC_PROBE_WORKER"  # 0/no/off: every probe in a process of its own (debugging)
READY_TIMEOUT = 120.0  # python start and `import torch` on a slow guest
STOP_WAIT_S = 2.0


class WorkerGone(Exception):
    """The worker died or hung during a request and was stopped; the text says how."""


class WorkerStartError(Exception):
    """The worker did not start (no python3, a syntax error, no answer)."""


def worker_wanted() -> bool:
    """False when DBC_PROBE_WORKER turns the worker off."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "no", "off", "false")


def _tail(proc: GuestProcess) -> str:
    lines = proc.stderr_tail().strip().splitlines()[-5:]
    return " | ".join(lines) if lines else "(nothing on stderr)"


def _exit_text(rc: int | None) -> str:
    if rc is None:
        return "no exit status"
    if rc < 0:
        return f"killed by signal {-rc}"
    return f"exit status {rc}"


class ProbeWorker:
    """One running worker in a guest."""

    def __init__(self, proc: GuestProcess, ready: dict[str, Any]) -> None:
        self.proc = proc
        self.ready = ready
        self.pid = ready.get("pid")
        self._next_id = 0

    @classmethod
    def start(cls, guest: Any, argv: Sequence[str],
              timeout: float = READY_TIMEOUT) -> ProbeWorker:
        """Start ``argv`` (python3 .../worker.py) and wait for its ready line."""
        try:
            proc = guest.open_process(argv)
        except OSError as exc:
            raise WorkerStartError(str(exc)) from None
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                line = proc.read_line(deadline - time.monotonic())
                doc = _json(line)
                if doc is not None and doc.get("ready") is True:
                    return cls(proc, doc)
        except EOFError:
            rc = proc.wait(STOP_WAIT_S)
            proc.kill()
            raise WorkerStartError(f"it ended at start ({_exit_text(rc)}): {_tail(proc)}") \
                from None
        except BaseException:
            proc.kill()
            raise
        proc.kill()
        raise WorkerStartError(f"not ready within {timeout:g} s: {_tail(proc)}")

    def ask(self, name: str, args: Sequence[str], timeout: float) -> dict[str, Any]:
        """The worker's answer to one request: ``{"doc": ..}`` or ``{"error": ..}``."""
        self._next_id += 1
        rid = self._next_id
        request = json.dumps({"id": rid, "probe": name, "args": list(args)})
        deadline = time.monotonic() + timeout
        try:
            self.proc.send(request)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._gone(f"hung: no answer within {timeout:g} s (timed out after "
                                     f"{timeout:g} s)")
                answer = _json(self.proc.read_line(left))
                if answer is not None and answer.get("id") == rid:
                    return answer
        except (EOFError, OSError):
            rc = self.proc.wait(STOP_WAIT_S)
            raise self._gone(f"died while running it ({_exit_text(rc)})") from None
        except WorkerGone:
            raise
        except BaseException:  # Ctrl-C mid-probe: the worker's state is unknown
            self.stop()
            raise

    def _gone(self, what: str) -> WorkerGone:
        tail = _tail(self.proc)
        self.stop()
        return WorkerGone(f"the probe worker (pid {self.pid}) {what}; it was stopped with "
                          f"its process group; its last stderr lines: {tail}")

    def alive(self) -> bool:
        """False once the worker has ended (between requests: killed from outside)."""
        return self.proc.wait(0) is None

    def stop(self) -> None:
        """End the worker and everything it started (idempotent)."""
        self.proc.kill()


def _json(line: str | None) -> dict[str, Any] | None:
    if not line or not line.startswith("{"):
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
