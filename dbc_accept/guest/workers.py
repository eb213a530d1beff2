"""In-guest tests and benchmarks refuse pytest-xdist's ``-n``: one test VM per run.

Under xdist only the workers collect. A worker that finds a selected test using the
``guest`` fixture while it has sibling workers runs nothing and says so in its
``workeroutput``; the controller turns that into one usage error when the worker finishes,
before any test ran.
"""

from __future__ import annotations

from typing import Any

import pytest

REFUSED = "dbc_shared_guest"  # key of a worker's workeroutput


def worker_count(config: pytest.Config) -> int:
    """The xdist workers of this run as a worker sees them (1: not under xdist)."""
    return int(getattr(config, "workerinput", {}).get("workercount", 1))


def refusal(workers: int) -> str:
    """Why the guest's tests cannot be spread over ``workers`` workers, and what to do."""
    return (f"-n: the in-guest tests and benchmarks cannot share the GPUs between {workers} "
            "xdist workers (a run makes one test VM and each worker would make its own): run "
            "them without -n (or with -n 0); -n suits the host checks alone "
            "(pytest -m host -n auto)")


def refuse_shared_guest(config: pytest.Config, items: list[pytest.Item]) -> bool:
    """On a worker with siblings: drop ``items`` and note the refusal; True when refused."""
    workers = worker_count(config)
    if workers <= 1:
        return False
    output: dict[str, Any] = getattr(config, "workeroutput", {})
    output[REFUSED] = refusal(workers)
    config.hook.pytest_deselected(items=list(items))
    items[:] = []
    return True


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the controller: a worker that refused ends the run with a usage error."""
    why = getattr(node, "workeroutput", {}).get(REFUSED)
    if why:
        raise pytest.UsageError(why)
