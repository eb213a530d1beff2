#!/usr/bin/env python3
"""Time the test VM on the CI image: overlays, fixture start to SSH, teardown, own overhead.

1. Overlay creation (and deletion) through libvirt's storage API on a 1 GB and a 20 GB sparse
   raw template: both should take the same time (no copy).
2. Whole VM cycles as the ``guest`` fixture runs them (sweep, create, address, SSH, teardown).
   The tool's own overhead is everything but waiting for the guest: waiting for its address
   and for sshd during boot, and for its graceful poweroff at teardown, are the guest's.

Usage: .venv/bin/python scripts/bench-vm.py [--boots N] [--json FILE]
Needs libvirtd (scripts/start-libvirtd.sh) and the CI image (scripts/build-guest-image.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
URI = "qemu+tcp://localhost:16509/system"


def ci_image() -> dict[str, str]:
    proc = subprocess.run(["sh", str(ROOT / "scripts/build-guest-image.sh"), "--cached-only"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit("the CI image is not built: run scripts/build-guest-image.sh")
    pairs = (line.partition("=") for line in proc.stdout.splitlines())
    return {k: v.strip("'") for k, _, v in pairs}


def bench_overlays(uri: str, repeat: int) -> dict[str, Any]:
    """Median seconds to create and to delete an overlay on sparse 1 GB and 20 GB templates."""
    from dbc_accept.vm.libvirt_api import connect
    from dbc_accept.vm.spec import new_run_id
    from dbc_accept.vm.storage import create_overlay, delete_overlay

    conn = connect(uri)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dbc-accept-bench.", dir="/var/tmp") as folder:
        for gib in (1, 20):
            template = Path(folder, f"template-{gib}g.raw")
            with template.open("wb") as fh:
                fh.truncate(gib << 30)  # sparse: no block is written
            made, gone = [], []
            for _ in range(repeat):
                t = time.monotonic()
                overlay = create_overlay(conn, str(template), new_run_id())
                made.append(time.monotonic() - t)
                t = time.monotonic()
                problem = delete_overlay(conn, overlay)
                gone.append(time.monotonic() - t)
                if problem:
                    sys.exit(problem)
            out[f"{gib}g"] = {"create_s": statistics.median(made),
                              "delete_s": statistics.median(gone),
                              "template_blocks_kib": template.stat().st_blocks // 2}
    conn.close()
    return out


def bench_boot(img: dict[str, str], uri: str, password: str) -> dict[str, float]:
    """One fixture cycle; the guest's own waits are split from the tool's work."""
    from dbc_accept.guest.ssh import Credentials
    from dbc_accept.guest.vmguest import VmRecord, vm_guest
    from dbc_accept.vm.lifecycle import TestVm
    from dbc_accept.vm.spec import VmSpec

    graceful: list[float] = []
    real_stop = TestVm._stop

    def timed_stop(self: Any, dom: Any, graceful_timeout: float) -> None:
        t = time.monotonic()
        real_stop(self, dom, graceful_timeout)
        graceful.append(time.monotonic() - t)

    TestVm._stop = timed_stop  # type: ignore[method-assign]
    spec = VmSpec(uri=uri, image=img["DBC_CI_IMAGE"], gpus=(), memory_mib=1024, vcpus=2,
                  virt_type="qemu", kernel=img["DBC_CI_KERNEL"], initrd=img["DBC_CI_INITRD"],
                  cmdline=img["DBC_CI_CMDLINE"])
    record = VmRecord()
    start = time.monotonic()
    with vm_guest(spec, Credentials("dbc", password=password), boot_timeout=600,
                  record=record, console_dir="/var/log/libvirt/qemu") as guest:
        ready = time.monotonic() - start
        assert guest.run(["true"]).ok
    total = time.monotonic() - start
    TestVm._stop = real_stop  # type: ignore[method-assign]
    t = record.timings
    ssh_wait = t["ssh"] - t.get("login", 0) - t.get("agent key", 0)
    stop = graceful[0] if graceful else 0.0
    return {
        "start_to_ssh_ready_s": ready,
        "guest_boot_to_address_s": t["address"],
        "guest_boot_address_to_sshd_s": ssh_wait,
        "teardown_s": t["teardown"],
        "teardown_guest_poweroff_wait_s": stop,
        "overhead_start_s": ready - t["address"] - ssh_wait,
        "overhead_teardown_s": t["teardown"] - stop,
        "overhead_total_s": ready - t["address"] - ssh_wait + t["teardown"] - stop,
        "total_cycle_s": total,
        **{f"step_{k.replace(' ', '_')}_s": v for k, v in t.items()},
        **{f"vm_{k}_s": v for k, v in record.vm_timings.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default=URI)
    parser.add_argument("--boots", type=int, default=1, help="VM cycles to time (default 1)")
    parser.add_argument("--repeat", type=int, default=5, help="overlays per template size")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args()
    img = ci_image()
    password = os.environ.get("DBC_VM_PASSWORD", "dbc-ci")
    figures: dict[str, Any] = {"overlays": bench_overlays(args.uri, args.repeat), "boots": []}
    for key, row in figures["overlays"].items():
        print(f"overlay on a sparse {key} template: create {row['create_s'] * 1000:.0f} ms, "
              f"delete {row['delete_s'] * 1000:.0f} ms")
    for _ in range(args.boots):
        row = bench_boot(img, args.uri, password)
        figures["boots"].append(row)
        print("VM cycle: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()))
        print(f"  start to SSH ready {row['start_to_ssh_ready_s']:.1f} s, teardown "
              f"{row['teardown_s']:.1f} s, own overhead {row['overhead_total_s']:.2f} s "
              f"(start {row['overhead_start_s']:.2f} + teardown "
              f"{row['overhead_teardown_s']:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
