"""Probe: a GEMM burn on every GPU at once that compares each result with the first (as
gpu-burn does), while a thread samples temperature, power, clocks and throttle reasons.

cuBLAS gives bit-identical results for the same product on the same GPU and stream, so a
healthy GPU gives the same product every time. Elements that differ by more than ``tol``
(relative, or NaN) are counted as errors; bit-level differences are counted apart.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbcprobe


def burn_dtype(torch, index):
    """Tensor-core precision: bf16 where native, fp16 otherwise."""
    return torch.bfloat16 if dbcprobe.has_bf16(torch, index) else torch.float16


def compare(torch, out, first, threshold, diff, bad, inexact):
    """Add to ``bad`` the elements of ``out`` off ``first`` by more than ``threshold`` (NaN
    included) and to ``inexact`` those not bit-identical; ``diff`` is scratch space."""
    inexact += (out != first).sum()
    torch.sub(out, first, out=diff)
    diff.abs_()
    bad += (~torch.le(diff, threshold)).sum()


def burn(torch, index, seconds, n, tol, result, kind="cuda"):
    cuda = kind == "cuda"
    entry = {"index": index, "name": torch.cuda.get_device_name(index) if cuda else "cpu"}
    try:
        device = torch.device(kind, index) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(index)
        dtype = burn_dtype(torch, index) if cuda else torch.bfloat16
        gen = torch.Generator(device=device).manual_seed(100 + index)
        a = torch.randn(n, n, device=device, dtype=torch.float32, generator=gen).to(dtype)
        b = torch.randn(n, n, device=device, dtype=torch.float32, generator=gen).to(dtype)
        first = a @ b
        out, diff = torch.empty_like(first), torch.empty_like(first)
        threshold = (first.float().abs() * tol + tol).to(dtype)
        bad = torch.zeros((), dtype=torch.int64, device=device)
        inexact = torch.zeros((), dtype=torch.int64, device=device)
        sync = torch.cuda.synchronize if cuda else (lambda _device: None)
        sync(device)
        iterations, t0 = 0, time.time()
        deadline = dbcprobe.deadline_after(seconds)
        while not dbcprobe.past(deadline):
            for _ in range(20):  # check the clock once per 20 products
                torch.matmul(a, b, out=out)
                compare(torch, out, first, threshold, diff, bad, inexact)
            sync(device)
            iterations += 20
        elapsed = time.time() - t0
        entry.update({"dtype": str(dtype).replace("torch.", ""), "n": n, "tolerance": tol,
                      "iterations": iterations, "seconds": elapsed,
                      "tflops": 2.0 * n ** 3 * iterations / elapsed / 1e12,
                      "mismatched_elements": int(bad), "inexact_elements": int(inexact),
                      "first_finite": bool(torch.isfinite(first).all())})
    except Exception as exc:  # one broken GPU must not hide the others' results
        entry["error"] = "%s: %s" % (type(exc).__name__, exc)
    result[index] = entry


def collect(args):
    torch = dbcprobe.import_torch(need_cuda=args.device == "cuda")
    result = {}
    count = torch.cuda.device_count() if args.device == "cuda" else 1
    threads = [threading.Thread(target=burn, args=(torch, i, args.seconds, args.n, args.tol,
                                                   result, args.device))
               for i in range(count)]
    with dbcprobe.Sampler(period=args.period) as sampler:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    gpus = []
    for i in range(count):
        entry = result.get(i, {"index": i, "error": "no result"})
        entry["telemetry"] = sampler.summary(i)
        gpus.append(entry)
    return {"seconds": args.seconds, "tolerance": args.tol, "gpus": gpus}


def parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--tol", type=float, default=0.05,
                   help="relative difference from the first product that counts as an error")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="cpu: one small burn on the CPU (checks the logic without GPUs)")
    p.add_argument("--period", type=float, default=0.5, help="seconds between NVML samples")
    return p


if __name__ == "__main__":
    dbcprobe.main(collect, parser())
