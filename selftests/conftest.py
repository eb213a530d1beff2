"""Fixtures shared by the project's own tests."""
from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

pytest_plugins = ["pytester"]

# The selftests that need a running libvirtd, a booted VM, or torch. `DBC_SELFTEST_PORTABLE=1`
# leaves them out: CI runs the rest again under the node's own Pythons (3.8 and 3.10), whose
# venvs have neither torch nor a libvirtd of their own.
NEEDS_SERVICES = [
    "test_bench_probe.py",  # torch
    "test_probe_logic.py",  # torch
    "test_libvirtd_live.py",  # libvirtd
    "test_vm_libvirtd.py",  # libvirtd and qemu
    "test_vm_e2e.py",  # a VM booted under qemu
    "test_cleanup_ownership.py",  # libvirtd and qemu-img
    "test_secrets_running_node.py",  # a process named dbc: never beside other files
    "test_node_e2e.py",  # the node in miniature booted under qemu
    "test_node_passthrough.py",  # the same, with a nested test VM
    "test_node_fix.py",  # the fresh node, its fix script and a reboot
]
PORTABLE = bool(os.environ.get("DBC_SELFTEST_PORTABLE"))
collect_ignore = NEEDS_SERVICES if PORTABLE else []


def pytest_configure(config: pytest.Config) -> None:
    # Older hypothesis (Python 3.8) warns that its pytest plugin is off (addopts turns it off).
    config.addinivalue_line("filterwarnings",
                            "ignore:Slow code in plugin")


def pytest_sessionfinish(session: pytest.Session) -> None:
    from selftests.node_support import stop_kept

    stop_kept()


# The configured node serves test_node_e2e.py, then test_node_passthrough.py (booted once,
# node_support.booted(keep=True)); the fresh node's file runs after both, so that two nodes
# never run at once.
NODE_LAST = "test_node_fix.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name == NODE_LAST)  # stable: the rest keep order
    if not PORTABLE:
        return
    kept = [i for i in items if i.get_closest_marker("needs_torch") is None]
    config.hook.pytest_deselected(items=[i for i in items if i not in kept])
    items[:] = kept


@pytest.fixture
def sigint_as_ctrl_c() -> Iterator[None]:
    """In this test SIGINT raises KeyboardInterrupt, whatever an earlier test of the same
    process (an xdist worker runs many files) left behind: the tests of Ctrl-C need it."""
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
