"""Probe: the guest's python and kernel (stdlib only: proves that probes reach and run)."""
from __future__ import annotations

import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbcprobe


def collect(_args):
    return {
        "python": platform.python_version(),
        "python_tuple": list(sys.version_info[:3]),
        "executable": sys.executable,
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    dbcprobe.main(collect)
