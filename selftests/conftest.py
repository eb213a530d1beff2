"""Fixtures shared by the project's own tests."""
from __future__ import annotations

import os

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
]
collect_ignore = NEEDS_SERVICES if os.environ.get("DBC_SELFTEST_PORTABLE") else []
