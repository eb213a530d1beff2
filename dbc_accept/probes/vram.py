"""Probe: a pattern test over >= 90% of each GPU's free memory, time-bounded.

Patterns: walking ones and zeros (32-bit words), address-in-address (each 64-bit word holds
its own index, then its complement), and seeded random data written then regenerated to
verify. GPUs are tested at once, one thread each. Errors are counted words that read back
wrong.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbcprobe

MAX_CHUNK = 1 << 30


def plan(free, max_chunk=MAX_CHUNK):
    """(chunk bytes, chunk count): at least 90% of ``free`` in chunks, leaving room for the
    verify buffers (a reference chunk and a boolean chunk)."""
    chunk = max(1 << 20, min(max_chunk, free // 64))
    chunk -= chunk % 8
    headroom = 3 * chunk + (256 << 20)
    target = min(int(free * 0.95), free - headroom)
    return chunk, max(0, target // chunk)


def _count(torch, buf, ref, errors):
    errors += torch.count_nonzero(buf != ref) if hasattr(torch, "count_nonzero") \
        else (buf != ref).sum()


def walking(torch, chunks, ref32, deadline, errors):
    """Walking ones then walking zeros over 32-bit words."""
    passes = 0
    for invert in (False, True):
        for bit in range(32):
            value = (1 << bit) ^ (0xFFFFFFFF if invert else 0)
            value = value - (1 << 32) if value >= (1 << 31) else value  # as int32
            ref32.fill_(value)
            for buf in chunks:
                buf.view(torch.int32).fill_(value)
            for buf in chunks:
                _count(torch, buf.view(torch.int32), ref32, errors)
            passes += 1
            if dbcprobe.past(deadline):
                return passes
    return passes


def address(torch, chunks, ref64, deadline, errors):
    """Each 64-bit word holds its index in the whole region; then the complement."""
    passes = 0
    words = ref64.numel()
    for invert in (False, True):
        for n, buf in enumerate(chunks):
            torch.arange(n * words, (n + 1) * words, out=ref64)
            if invert:
                ref64.bitwise_not_()
            buf.view(torch.int64).copy_(ref64)
        for n, buf in enumerate(chunks):
            torch.arange(n * words, (n + 1) * words, out=ref64)
            if invert:
                ref64.bitwise_not_()
            _count(torch, buf.view(torch.int64), ref64, errors)
        passes += 1
        if dbcprobe.past(deadline):
            break
    return passes


def random_fill(torch, chunks, ref32, seed, deadline, errors):
    """Seeded random words, regenerated from the same seed to verify: one whole pass (every
    chunk written, then verified), whatever the time; ``deadline`` is not consulted."""
    device = ref32.device
    gen = torch.Generator(device=device)
    lo, hi = -(1 << 31), (1 << 31) - 1
    for n, buf in enumerate(chunks):
        gen.manual_seed(seed + n)
        torch.randint(lo, hi, ref32.shape, generator=gen, dtype=torch.int32, device=device,
                      out=buf.view(torch.int32))
    for n, buf in enumerate(chunks):
        gen.manual_seed(seed + n)
        torch.randint(lo, hi, ref32.shape, generator=gen, dtype=torch.int32, device=device,
                      out=ref32)
        _count(torch, buf.view(torch.int32), ref32, errors)
    return 1


def run_patterns(torch, chunks, device, seconds, seed=1, corrupt=None):
    """Run the patterns over ``chunks`` (uint8 tensors of one size); errors per pattern.

    ``corrupt(chunks)``, when given, runs after the writes of the random pattern (to test
    that a fault is found).
    """
    nbytes = chunks[0].numel()
    ref32 = torch.empty(nbytes // 4, dtype=torch.int32, device=device)
    ref64 = ref32.view(torch.int64)
    deadline = dbcprobe.deadline_after(seconds)
    out = {}
    for name in ("walking", "address", "random"):
        errors = torch.zeros((), dtype=torch.int64, device=device)
        t0 = time.time()
        if name == "walking":
            passes = walking(torch, chunks, ref32, deadline, errors)
        elif name == "address":
            passes = address(torch, chunks, ref64, deadline, errors)
        else:
            if corrupt is not None:
                chunks = _CorruptAfterWrite(chunks, corrupt)
            passes = random_fill(torch, chunks, ref32, seed, deadline, errors)
        out[name] = {"passes": passes, "errors": int(errors), "seconds": time.time() - t0}
    return out


class _CorruptAfterWrite(list):
    """Chunks whose second iteration (the verify) starts by calling ``corrupt``."""

    def __init__(self, chunks, corrupt):
        list.__init__(self, chunks)
        self._corrupt = corrupt
        self._iterations = 0

    def __iter__(self):
        self._iterations += 1
        if self._iterations == 2:
            self._corrupt(list(list.__iter__(self)))
        return list.__iter__(self)


def test_gpu(torch, index, seconds, result):
    device = torch.device("cuda", index)
    entry = {"index": index, "name": torch.cuda.get_device_name(index)}
    try:
        torch.cuda.set_device(index)
        free = dbcprobe.free_bytes(torch, index)
        chunk, count = plan(free)
        t0 = time.time()
        chunks = [torch.empty(chunk, dtype=torch.uint8, device=device) for _ in range(count)]
        entry.update({"free_bytes": free, "tested_bytes": chunk * count,
                      "fraction_of_free": chunk * count / float(free) if free else 0.0})
        entry["patterns"] = run_patterns(torch, chunks, device, seconds)
        torch.cuda.synchronize(device)
        entry["seconds"] = time.time() - t0
        entry["complete"] = all(p["passes"] > 0 for p in entry["patterns"].values())
        del chunks
        torch.cuda.empty_cache()
    except Exception as exc:  # one broken GPU must not hide the others' results
        entry["error"] = "%s: %s" % (type(exc).__name__, exc)
    result[index] = entry


def collect(args):
    torch = dbcprobe.import_torch(need_cuda=args.device != "cpu")
    if args.device == "cpu":  # the patterns' logic on a small host buffer
        chunks = [torch.empty(1 << 20, dtype=torch.uint8) for _ in range(4)]
        return {"cpu": run_patterns(torch, chunks, torch.device("cpu"), args.seconds)}
    result = {}
    threads = [threading.Thread(target=test_gpu, args=(torch, i, args.seconds, result))
               for i in range(torch.cuda.device_count())]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"seconds_limit": args.seconds, "gpus": [result[i] for i in sorted(result)]}


def parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=60.0, help="time limit per GPU")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    return p


if __name__ == "__main__":
    dbcprobe.main(collect, parser())
