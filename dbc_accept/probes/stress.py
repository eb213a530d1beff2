"""Probe: a GEMM burn on every GPU at once that compares each result with the first (as
gpu-burn does), while a thread samples temperature, power, clocks and throttle reasons.

The burn runs in four phases of equal length, one per precision (fp32, tf32, fp16, bf16),
and reports each one's TFLOP/s (products and comparisons, as they run) with the telemetry
sampled during it. cuBLAS gives bit-identical results for the same product on the same GPU
and stream, so a healthy GPU gives the same product every time. Elements that differ by more
than ``tol`` (relative, or NaN) are counted as errors; bit-level differences are counted
apart. Every GPU multiplies the same matrices (one seed), and reports a checksum of its
first product's bits, so that GPUs can be compared with each other.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbcprobe

# The burn's phases, one precision each, every GPU at once; bf16 last (the longest heat).
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
SEED = 100  # the same on every GPU: their products are compared with each other


def phase_dtype(torch, precision, index, cuda):
    """The tensor dtype of a phase, or None where this GPU has no native support for it."""
    if precision in ("fp32", "tf32"):
        if precision == "tf32" and cuda and torch.cuda.get_device_capability(index)[0] < 8:
            return None  # TF32 is an Ampere (8.0) feature
        return torch.float32
    if precision == "bf16":
        if not cuda:
            return torch.bfloat16 if hasattr(torch, "bfloat16") else None
        return torch.bfloat16 if dbcprobe.has_bf16(torch, index) else None
    return torch.float16


def checksum(torch, t, rows=1024):
    """The product's bits as two integer sums (plain, and weighted by position), mod 2^64:
    equal for equal bits, whatever order the GPU adds in."""
    bits = torch.int16 if t.element_size() == 2 else torch.int32
    flat = t.contiguous().view(bits).view(-1)
    plain = weighted = 0
    step = rows * t.shape[-1]
    for start in range(0, flat.numel(), step):
        x = flat[start:start + step].to(torch.int64)
        w = torch.arange(start, start + x.numel(), device=t.device, dtype=torch.int64) % 65521
        plain += int(x.sum())
        weighted += int((x * (w + 1)).sum())
    return "%016x%016x" % (plain % (1 << 64), weighted % (1 << 64))


def compare(torch, out, first, threshold, diff, bad, inexact):
    """Add to ``bad`` the elements of ``out`` off ``first`` by more than ``threshold`` (NaN
    included) and to ``inexact`` those not bit-identical; ``diff`` is scratch space."""
    inexact += (out != first).sum()
    torch.sub(out, first, out=diff)
    diff.abs_()
    bad += (~torch.le(diff, threshold)).sum()


def burn(torch, index, precision, seconds, n, tol, result, kind="cuda"):
    """One phase on one GPU: the same product again and again, each compared with the first."""
    cuda = kind == "cuda"
    out_entry = {}
    result[index] = out_entry
    try:
        device = torch.device(kind, index) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(index)
        dtype = phase_dtype(torch, precision, index, cuda)
        if dtype is None:
            out_entry["supported"] = False
            return
        gen = torch.Generator(device=device).manual_seed(SEED)
        a = torch.randn(n, n, device=device, dtype=torch.float32, generator=gen).to(dtype)
        b = torch.randn(n, n, device=device, dtype=torch.float32, generator=gen).to(dtype)
        first = a @ b
        out, diff = torch.empty_like(first), torch.empty_like(first)
        threshold = (first.float().abs() * tol + tol).to(dtype)
        bad = torch.zeros((), dtype=torch.int64, device=device)
        inexact = torch.zeros((), dtype=torch.int64, device=device)
        sync = torch.cuda.synchronize if cuda else (lambda _device: None)
        sync(device)
        iterations, t0 = 0, None
        deadline = dbcprobe.deadline_after(seconds)
        while t0 is None or iterations == 0 or not dbcprobe.past(deadline):
            for _ in range(20):  # check the clock once per 20 products
                torch.matmul(a, b, out=out)
                compare(torch, out, first, threshold, diff, bad, inexact)
            sync(device)
            if t0 is None:  # the first 20 warm up (clocks, cuBLAS's choice): compared, untimed
                t0 = time.time()
            else:
                iterations += 20
        elapsed = time.time() - t0
        out_entry.update({
            "supported": True, "dtype": str(dtype).replace("torch.", ""),
            "iterations": iterations, "seconds": elapsed,
            "tflops": 2.0 * n ** 3 * iterations / elapsed / 1e12,
            "mismatched_elements": int(bad), "inexact_elements": int(inexact),
            "first_finite": bool(torch.isfinite(first).all()),
            "checksum": checksum(torch, first), "norm": float(first.double().norm())})
    except Exception as exc:  # one broken GPU must not hide the others' results
        out_entry["error"] = "%s: %s" % (type(exc).__name__, exc)


def run_phase(torch, precision, count, args, sampler):
    """One precision on every GPU at once; {index: result} with the phase's telemetry."""
    dbcprobe.set_tf32(torch, precision == "tf32")
    result = {}
    start = sampler.elapsed()
    threads = [threading.Thread(target=burn, args=(torch, i, precision, args.seconds / 4.0,
                                                   args.n, args.tol, result, args.device))
               for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, entry in result.items():
        entry["telemetry"] = sampler.summary(i, start, sampler.elapsed())
    return result


def merge(index, name, phases, telemetry, n, tol):
    """The GPU's entry: per-precision results, and totals over them."""
    entry = {"index": index, "name": name, "n": n, "tolerance": tol, "precisions": {},
             "telemetry": telemetry}
    errors = []
    for precision in PRECISIONS:
        res = phases[precision].get(index, {"error": "no result"})
        entry["precisions"][precision] = res
        if "error" in res:
            errors.append("%s: %s" % (precision, res["error"]))
    done = [r for r in entry["precisions"].values() if r.get("supported")]
    if errors:
        entry["error"] = "; ".join(errors)
    if done:
        main = [r for r in done if r["dtype"] in ("bfloat16", "float16")] or done
        entry.update({
            "dtype": main[-1]["dtype"], "tflops": main[-1]["tflops"],
            "iterations": sum(r["iterations"] for r in done),
            "seconds": sum(r["seconds"] for r in done),
            "mismatched_elements": sum(r["mismatched_elements"] for r in done),
            "inexact_elements": sum(r["inexact_elements"] for r in done),
            "first_finite": all(r["first_finite"] for r in done)})
    return entry


def collect(args):
    cuda = args.device == "cuda"
    torch = dbcprobe.import_torch(need_cuda=cuda)
    count = torch.cuda.device_count() if cuda else 1
    names = [torch.cuda.get_device_name(i) if cuda else "cpu" for i in range(count)]
    phases = {}
    with dbcprobe.Sampler(period=args.period) as sampler:
        for precision in PRECISIONS:
            phases[precision] = run_phase(torch, precision, count, args, sampler)
    gpus = [merge(i, names[i], phases, sampler.summary(i), args.n, args.tol)
            for i in range(count)]
    return {"seconds": args.seconds, "tolerance": args.tol, "seed": SEED,
            "precisions": list(PRECISIONS), "gpus": gpus}


def parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=60.0, help="the whole burn (4 phases)")
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--tol", type=float, default=0.05,
                   help="relative difference from the first product that counts as an error")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="cpu: one small burn on the CPU (checks the logic without GPUs)")
    p.add_argument("--period", type=float, default=0.5, help="seconds between NVML samples")
    return p


if __name__ == "__main__":
    dbcprobe.main(collect, parser())
