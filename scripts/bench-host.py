#!/usr/bin/env python3
"""Wall time of `pytest -m host`, pytest start-up included: on a snapshot and on this machine.

Each figure is the median of N runs of a fresh ``python -m pytest`` process (after one
unmeasured run that fills the byte-code caches), as an owner would type it. Run from the
repository root::

    .venv/bin/python scripts/bench-host.py            # 5 runs each, the good Intel snapshot
    .venv/bin/python scripts/bench-host.py --runs 9 --snapshot selftests/data/snapshots/X

The aim is under 1.5 s on a 2-core machine. Exit status 0 when every run completed
(whatever the checks found), 1 when a run ended in a usage or internal error.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SNAPSHOT = ROOT / "selftests" / "data" / "snapshots" / "intel-2204-4gpu"
AIM_S = 1.5
COMPLETED = (0, 1)  # all checks passed / some check failed: both are complete runs


def _one_run(args: list[str]) -> tuple[float, int, str]:
    """Seconds, exit status and the last line of one `pytest` process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    lines = (proc.stdout.strip() or proc.stderr.strip() or "no output").splitlines()
    return seconds, proc.returncode, lines[-1]


def measure(label: str, args: list[str], runs: int) -> bool:
    """Print the median, min and max of ``runs`` runs; False when a run did not complete."""
    _one_run(args)  # fills __pycache__ and the page cache; not counted
    times = []
    for _ in range(runs):
        seconds, rc, last = _one_run(args)
        if rc not in COMPLETED:
            print(f"{label}: `pytest {' '.join(args)}` exited {rc}: {last}")
            return False
        times.append(seconds)
    median = statistics.median(times)
    verdict = "within" if median < AIM_S else "OVER"
    print(f"{label:<10} median {median:5.2f} s  (min {min(times):.2f}, max {max(times):.2f}, "
          f"{runs} runs; {verdict} the {AIM_S} s aim)  [{last}]")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs per target (5)")
    parser.add_argument("--snapshot", type=Path, default=DEFAULT_SNAPSHOT,
                        help=f"snapshot to replay (default: {DEFAULT_SNAPSHOT.relative_to(ROOT)})")
    parser.add_argument("--whole-tree", action="store_true",
                        help="collect every test folder and deselect (plain `pytest -m host`) "
                             "instead of collecting tests_host/ only")
    opts = parser.parse_args()
    if not (opts.snapshot / "snapshot.json").is_file():
        print(f"{opts.snapshot} is not a snapshot (no snapshot.json)", file=sys.stderr)
        return 2
    base = ["-m", "host", "-q", "--no-report", "-p", "no:randomly"]
    if not opts.whole_tree:
        base.append("tests_host")
    print(f"`pytest {' '.join(base)}` on {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    ok = measure("snapshot", [*base, f"--snapshot={opts.snapshot}"], opts.runs)
    ok = measure("local", base, opts.runs) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
