"""Probe: pinned host-to-device and device-to-host bandwidth, device copy bandwidth, and the
PCIe link generation and width sampled WHILE host-to-device copies run (idle links train down).

Each figure is timed with CUDA events per copy after warm-up copies; median and spread.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbcprobe


def timed(torch, fn, reps, warmup):
    """Milliseconds of each of ``reps`` calls of fn() (after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def rates(nbytes, times_ms):
    """GB/s (1e9 bytes) of each time; median and spread."""
    return dbcprobe.stats([nbytes / (t / 1000.0) / 1e9 for t in times_ms if t > 0])


def host_link(torch, index, nbytes, reps, sampler_period, hold_s):
    device = torch.device("cuda", index)
    host = torch.empty(nbytes, dtype=torch.uint8).pin_memory()
    dev = torch.empty(nbytes, dtype=torch.uint8, device=device)
    with torch.cuda.device(index):
        h2d = timed(torch, lambda: dev.copy_(host, non_blocking=True), reps, 3)
        d2h = timed(torch, lambda: host.copy_(dev, non_blocking=True), reps, 3)
        sampler = dbcprobe.Sampler(period=sampler_period)
        with sampler:  # keep the link busy while NVML reads its state
            end = dbcprobe.deadline_after(hold_s)
            while not dbcprobe.past(end):
                dev.copy_(host, non_blocking=True)
                torch.cuda.synchronize(device)
    link = sampler.summary(index)
    return {"h2d_GBps": rates(nbytes, h2d), "d2h_GBps": rates(nbytes, d2h),
            "pcie_gen_busy": link["pcie_gen_max"], "pcie_width_busy": link["pcie_width_max"],
            "link_samples": link["samples"], "nvml_source": link["source"]}


def device_copy(torch, index, nbytes, reps):
    """Read+write bytes per second of a device-to-device copy (2 x size per copy)."""
    device = torch.device("cuda", index)
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    with torch.cuda.device(index):
        times = timed(torch, lambda: dst.copy_(src), reps, 3)
    return rates(2 * nbytes, times)


def collect(args):
    torch = dbcprobe.import_torch()
    doc = {"host_bytes": args.host_mib << 20, "device_bytes": args.device_mib << 20, "gpus": []}
    for i in range(torch.cuda.device_count()):
        entry = {"index": i, "name": torch.cuda.get_device_name(i)}
        try:
            entry.update(host_link(torch, i, args.host_mib << 20, args.reps, 0.05, args.hold))
            entry["d2d_rw_GBps"] = device_copy(torch, i, args.device_mib << 20, args.reps)
        except Exception as exc:  # one broken GPU must not hide the others' results
            entry["error"] = "%s: %s" % (type(exc).__name__, exc)
        doc["gpus"].append(entry)
        torch.cuda.empty_cache()
    return doc


def parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host-mib", type=int, default=256)
    p.add_argument("--device-mib", type=int, default=2048)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--hold", type=float, default=0.6, help="seconds of copies while sampling")
    return p


if __name__ == "__main__":
    dbcprobe.main(collect, parser())
