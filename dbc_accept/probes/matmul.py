"""Probe: matrix products in fp32, tf32, fp16 and bf16 on each GPU against a float64 reference.

Errors: the relative Frobenius norm ||C - C64|| / ||C64||, and the worst element's error over
the RMS of C64, with the float64 product computed once on the CPU from the same inputs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbcprobe

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")


def reference(torch, n, seed):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(n, n, generator=gen, dtype=torch.float64) * 2 - 1
    b = torch.rand(n, n, generator=gen, dtype=torch.float64) * 2 - 1
    return a, b, a @ b


def rel_error(torch, c, ref):
    """Relative Frobenius error; inf when the result has NaN or inf in it."""
    c = c.double().cpu()
    if not bool(torch.isfinite(c).all()):
        return float("inf")
    return float((c - ref).norm() / ref.norm())


def max_error(torch, c, ref):
    """The worst element's error over the RMS of the reference: finds one wrong element
    that the Frobenius norm averages away."""
    c = c.double().cpu()
    if not bool(torch.isfinite(c).all()):
        return float("inf")
    rms = float(ref.pow(2).mean().sqrt())
    return float((c - ref).abs().max()) / rms


def product(torch, a, b, precision, device):
    """a @ b in the precision asked for, on ``device``."""
    dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16,
             "bf16": getattr(torch, "bfloat16", None)}[precision]
    if device.type == "cuda":
        dbcprobe.set_tf32(torch, precision == "tf32")
    x, y = a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)
    c = x @ y
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return c


def supported(torch, precision, device):
    if device.type != "cuda":
        return precision != "bf16" or hasattr(torch, "bfloat16")
    major = torch.cuda.get_device_capability(device)[0]
    if precision == "tf32":
        return major >= 8
    if precision == "bf16":
        return dbcprobe.has_bf16(torch, device.index)
    return True


def run_device(torch, a, b, ref, device):
    out = {}
    for precision in PRECISIONS:
        if not supported(torch, precision, device):
            out[precision] = {"supported": False}
            continue
        t0 = time.time()
        c = product(torch, a, b, precision, device)
        out[precision] = {"supported": True, "error": rel_error(torch, c, ref),
                          "max_error": max_error(torch, c, ref), "seconds": time.time() - t0}
    dbcprobe.set_tf32(torch, False)
    return out


def collect(args):
    torch = dbcprobe.import_torch(need_cuda=args.device != "cpu")
    a, b, ref = reference(torch, args.n, args.seed)
    doc = {"n": args.n, "gpus": []}
    if args.device == "cpu":
        doc["cpu"] = run_device(torch, a, b, ref, torch.device("cpu"))
        return doc
    for i in range(torch.cuda.device_count()):
        entry = {"index": i, "name": torch.cuda.get_device_name(i)}
        try:
            entry["precisions"] = run_device(torch, a, b, ref, torch.device("cuda", i))
        except Exception as exc:  # one broken GPU must not hide the others' results
            entry["error"] = "%s: %s" % (type(exc).__name__, exc)
        doc["gpus"].append(entry)
    return doc


def parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    return p


if __name__ == "__main__":
    dbcprobe.main(collect, parser())
