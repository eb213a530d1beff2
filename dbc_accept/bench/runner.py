"""Ship the CNN probe to the guest, run a plan in one process, stream its result lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict

from dbc_accept.bench.lines import ProbeEnv, RunResult, parse_env, parse_result
from dbc_accept.target import LocalTarget
from dbc_accept.verdict import FactError

PROBE = Path(__file__).parent.parent / "probes" / "cnn_bench.py"
PREFIX = "DBCBENCH "
STDERR_TAIL = 4000

Line = Dict[str, Any]


@dataclass
class ProbeRun:
    """What one probe run reported: its environment, a result per run id, how it ended."""

    env: ProbeEnv = field(default_factory=ProbeEnv)
    results: dict[str, RunResult] = field(default_factory=dict)
    done: bool = False
    rc: int | None = None
    stderr_tail: str = ""
    wall_s: float = 0.0

    def add(self, line: Line) -> ProbeEnv | RunResult | None:
        """Take one line of the probe, parsed; what it was (None: the done line, or noise)."""
        kind = line.get("kind")
        if kind == "env":
            self.env = parse_env(line)
            return self.env
        if kind == "result" and isinstance(line.get("id"), str):
            result = self.results[line["id"]] = parse_result(line)
            return result
        if kind == "done":
            self.done = True
        return None

    def ended_early(self) -> str | None:
        """Why results may be missing (None when the probe finished)."""
        if self.done:
            return None
        tail = self.stderr_tail.strip().splitlines()[-5:]
        return f"the probe ended before finishing (exit status {self.rc}): " + " | ".join(tail)


def parse_line(text: str) -> Line | None:
    """The JSON object of a probe line, or None for any other output (library chatter)."""
    if not text.startswith(PREFIX):
        return None
    try:
        obj = json.loads(text[len(PREFIX):])
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def run_probe(guest: Any, plan: dict[str, Any], on_line: Callable[[Line], None],
              timeout: float) -> ProbeRun:
    """Run ``plan`` in the guest; call ``on_line`` for each line as it arrives (if it can)."""
    start = time.monotonic()
    from dbc_accept.guest import guest_workdir

    try:
        remote_dir = f"{guest_workdir(guest)}/probes"
    except OSError as exc:
        raise FactError("the guest's work folder", str(exc), verb="find") from None
    remote_probe = f"{remote_dir}/cnn_bench.py"
    remote_plan = f"{remote_dir}/cnn_bench_plan.json"
    made = guest.run(["mkdir", "-p", remote_dir])
    if not made.ok:
        raise FactError(f"the guest's {remote_dir}", made.describe(), verb="make")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(plan, fh)
    try:
        guest.put(str(PROBE), remote_probe)
        guest.put(fh.name, remote_plan)
    except OSError as exc:
        raise FactError(f"the probe in the guest's {remote_dir}", str(exc), verb="copy") from None
    finally:
        os.unlink(fh.name)
    argv = ["python3", remote_probe, remote_plan]
    if isinstance(guest, LocalTarget):
        return _finish(_stream_local(argv, on_line, timeout), start)
    out = ProbeRun()

    def take(text: str) -> None:
        line = parse_line(text.rstrip("\n"))
        if line is not None:
            out.add(line)
            on_line(line)

    stream = getattr(guest, "stream", None)
    if stream is not None:  # stream(argv, timeout, on_stdout_line) -> CommandResult
        res = stream(argv, timeout, take)
    else:  # a guest that answers when the command ends: the progress comes all at once
        res = guest.run(argv, timeout=timeout)
        for text in res.stdout.splitlines():
            take(text)
    out.rc, out.stderr_tail = res.rc, res.stderr[-STDERR_TAIL:]
    return _finish(out, start)


def _finish(out: ProbeRun, start: float) -> ProbeRun:
    out.wall_s = time.monotonic() - start
    return out


def _stream_local(argv: list[str], on_line: Callable[[Line], None],
                  timeout: float) -> ProbeRun:
    out = ProbeRun()
    args = [sys.executable, *argv[1:]]  # as LocalTarget runs python3: this interpreter
    with tempfile.TemporaryFile("w+") as err, subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=err, text=True, errors="replace",
            env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
        # A hung probe prints nothing: only a timer can end it.
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None
            for text in proc.stdout:
                line = parse_line(text.rstrip("\n"))
                if line is not None:
                    out.add(line)
                    on_line(line)
            out.rc = proc.wait()
        finally:
            watchdog.cancel()
        err.seek(0)
        out.stderr_tail = err.read()[-STDERR_TAIL:]
        if out.rc is not None and out.rc < 0:
            out.stderr_tail += f"\nkilled (signal {-out.rc}); the time limit was {timeout:g} s"
    return out
