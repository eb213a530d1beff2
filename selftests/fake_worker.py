"""A stand-in for the probe worker in a fake guest: each request is answered at once by the
fake's process-per-probe answer (``run(["python3", ".../<probe>.py", *args])``), so fakes
written for one process per probe answer through the worker protocol unchanged."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from typing import Callable

from dbc_accept.target import CommandResult

# a string: Python 3.8 cannot subscript collections.abc.Sequence at run time
Run = Callable[["Sequence[str]"], CommandResult]


class ScriptedWorker:
    """A GuestProcess speaking the probe worker's protocol."""

    def __init__(self, run: Run, probes_dir: str) -> None:
        self.run, self.probes_dir = run, probes_dir
        self.lines = deque([json.dumps({"ready": True, "pid": 4242, "pgid": 4242,
                                        "torch": None, "python": "3.8.18"})])
        self.killed = False
        self.requests: list[str] = []

    def send(self, line: str) -> None:
        if self.killed:
            raise BrokenPipeError("the fake worker was stopped")
        req = json.loads(line)
        self.requests.append(req["probe"])
        res = self.run(["python3", f"{self.probes_dir}/{req['probe']}.py", *req["args"]])
        try:
            answer = {"id": req["id"], "doc": json.loads(res.stdout)} if res.rc == 0 else \
                {"id": req["id"], "error": f"exited {res.rc}: {res.stderr}"}
        except ValueError:
            answer = {"id": req["id"], "error": f"printed no JSON document: {res.stdout!r}"}
        self.lines.append(json.dumps(answer))

    def read_line(self, timeout: float) -> str | None:
        if self.lines:
            return self.lines.popleft()
        raise EOFError  # answers come at once: no line means it ended

    def stderr_tail(self) -> str:
        return ""

    def wait(self, timeout: float) -> int | None:
        return 0 if self.killed else None

    def kill(self) -> None:
        self.killed = True


def stream_by_run(run: Run, argv: Sequence[str], timeout: float,
                  on_line: Callable[[str], None]) -> CommandResult:
    """``stream`` of a fake guest: ``run``, then its stdout lines one by one."""
    res = run(argv)
    for line in res.stdout.splitlines():
        on_line(line)
    return res
