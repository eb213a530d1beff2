"""A fleet at scale: N nodes, each in a network namespace of its own with its own sshd.

Every node is this machine seen through its own namespace (``selftests/fleet_nodes.py``),
so all of them must give the same verdicts. Each run asserts the remote commands every node's
sshd started (at most 5, whatever the number of processes on the node) and reports its wall
time with ``-n 0`` and ``-n auto``. N = 1 and 8 always; 32 with ``DBC_FLEET_NODES=32`` (or
any other count).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import pytest

from selftests.fleet_nodes import Fleet, fleet
from selftests.test_remote_target import _by_test, _host_run

pytest_plugins = ["pytester"]

MAX_ROUND_TRIPS = 5
EXTRA = int(os.environ.get("DBC_FLEET_NODES", "0") or 0)
SIZES = sorted({1, 8, *([EXTRA] if EXTRA > 0 else [])})


@pytest.fixture(scope="module")
def namespaces() -> Iterator[Fleet]:
    with fleet() as made:
        made.namespaced(max(SIZES))
        yield made


@pytest.mark.parametrize("workers", ["0", "auto"])
@pytest.mark.parametrize("count", SIZES)
def test_nodes_in_namespaces(pytester: pytest.Pytester, namespaces: Fleet, count: int,
                             workers: str, record_property: pytest.RecordProperty,
                             capsys: pytest.CaptureFixture[str]) -> None:
    chosen = namespaces.nodes[:count]
    before = [n.sessions() for n in chosen]
    started = time.monotonic()
    _, found = _host_run(pytester, "-n", workers,
                         "--hosts=" + ",".join(n.spec for n in chosen),
                         f"--ssh-identity-file={chosen[0].key}",
                         f"--ssh-config={namespaces.ssh_config}")
    wall = time.monotonic() - started
    record_property("wall_s", round(wall, 1))
    with capsys.disabled():  # the figure, in the output of every run (not an assertion)
        sys.stdout.write(f"\nfleet scale: {count} nodes, -n {workers}: {wall:.1f} s\n")
    trips = [n.sessions() - b for n, b in zip(chosen, before)]
    assert all(0 < t <= MAX_ROUND_TRIPS for t in trips), trips
    per_node = [_by_test(found, n.name) for n in chosen]
    assert len(per_node[0]) > 60
    assert all(outcomes == per_node[0] for outcomes in per_node[1:])
    assert sum(len(p) for p in per_node) == len(found)  # every test id names its node
