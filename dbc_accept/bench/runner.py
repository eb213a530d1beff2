"""Run a plan of the CNN probe in the guest (through the probe runner) and take its lines."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict

from dbc_accept.bench.lines import ProbeEnv, RunResult, parse_env, parse_result
from dbc_accept.guest.probe import ProbeRunner

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
    """Run ``plan`` in the guest; call ``on_line`` for each line as it arrives."""
    start = time.monotonic()
    out = ProbeRun()

    def take(text: str) -> None:
        line = parse_line(text.rstrip("\n"))
        if line is not None:
            out.add(line)
            on_line(line)

    with ProbeRunner(guest) as probes:
        probes.ship(PROBE.stem, PROBE)
        remote_plan = probes.put_text(PROBE.stem, "cnn_bench_plan.json", json.dumps(plan))
        res = probes.stream(PROBE.stem, [remote_plan], timeout, take, local=PROBE)
    out.rc, out.stderr_tail = res.rc, res.stderr[-STDERR_TAIL:]
    out.wall_s = time.monotonic() - start
    return out
