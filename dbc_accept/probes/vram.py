"""Probe: a pattern test over >= 90% of each GPU's free memory, time-bounded, at the speed of
the memory.

Patterns, over 64-bit words: walking ones then walking zeros (each 32-bit half of a word
holds the 32-bit pattern; 64 passes), address-in-address and seeded random. Every pass
writes and verifies whole chunks with a few whole-tensor kernels and counts, on the device,
the verifications that found a wrong word; the counter is read once per pattern: no per-word
Python, no host round trip per chunk. A walking pass verifies a chunk by its least and
greatest word (one read, no temporary; torch < 1.11 compares word by word).
Address-in-address and random repeat a small table (an odd prime number of words, kept in
the GPU's cache) along the chunk, so that writing and verifying read the memory under test
only once each:
- address: word i of chunk n holds n and i mod P1, then (complemented) n and i mod P2; P1, P2
  distinct odd primes with P1 * P2 above the words of a chunk, so the two passes tell every
  word of the region apart (Chinese remainder theorem) and catch any address aliasing, and
  no power-of-two distance (a stuck or bridged address line) is a multiple of either;
- random: chunk n repeats its own table of PR random words (the tables of all chunks drawn
  from one seed), regenerated from the seed to verify.
Each pattern reports its rate (bytes written and verified per second) next to the device
copy rate the same run measures (bytes copied per second). GPUs are tested at once, one
thread each. Errors: verified chunks (or a chunk's repeated body and its tail) holding a 64-bit
word that read back wrong; 0 means every word read back right.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbcprobe

MAX_CHUNK = 8 << 30  # large chunks: few kernel launches per pass, even with 8 GPUs at once
ADDRESS_PERIODS = (65521, 65519)  # primes; their product exceeds the words of MAX_CHUNK
RANDOM_PERIOD = 131071  # prime: 1 MiB of int64 words


def plan(free, max_chunk=MAX_CHUNK):
    """(chunk bytes, chunk count): at least 90% of ``free`` in chunks, leaving room for the
    verify buffer (a boolean per word of a chunk), the tables, and two chunks' worth for the
    allocator's fragmentation and the driver (on a real H200 30 of 32 chunks ran out of
    memory at the first verify)."""
    chunk = max(1 << 20, min(max_chunk, free // 48))
    chunk -= chunk % 8
    headroom = 2 * chunk + chunk // 8 + (256 << 20)
    target = min(int(free * 0.95), free - headroom)
    return chunk, max(0, target // chunk)


def _as_int64(value):
    """A 64-bit unsigned value as the int64 torch stores."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= (1 << 63) else value


def _split(buf, period):
    """``buf`` (int64 words) as (rows x period view, tail of fewer than period words)."""
    rows = buf.numel() // period
    return buf[:rows * period].view(rows, period), buf[rows * period:]


def write_tiled(torch, buf, table):
    """Fill ``buf`` with ``table`` repeated (the last copy cut short)."""
    main, tail = _split(buf, table.numel())
    main.copy_(table.expand_as(main))
    tail.copy_(table[:tail.numel()])


def wrong(torch, buf, expected):
    """1 (a zero-dim tensor, no host wait) when any word of ``buf`` differs from
    ``expected``, else 0. ``any()`` reduces the booleans as they are: ``sum()`` would first
    cast them to a chunk-sized int64 copy (more memory than the plan leaves, and twice the
    traffic of the check)."""
    return torch.ne(buf, expected).any()


def wrong_value(torch, buf, value):
    """1 (a zero-dim tensor, no host wait) when any word of ``buf`` differs from ``value``:
    its least and greatest words, found in one read of ``buf`` with no temporary (torch >=
    1.11), must both be ``value``; older torch compares every word (``wrong``), which writes
    and reads a boolean per word besides."""
    aminmax = getattr(torch, "aminmax", None)
    if aminmax is None:
        return wrong(torch, buf, value)
    least, most = aminmax(buf)
    return (least != value) | (most != value)


def count_tiled(torch, buf, table, errors):
    """Add to ``errors`` 1 for each part of ``buf`` (the repeated body, the tail) holding a
    word that differs from ``table`` repeated."""
    main, tail = _split(buf, table.numel())
    errors += wrong(torch, main, table)
    errors += wrong(torch, tail, table[:tail.numel()])


def walking(torch, chunks, deadline, errors):
    """Walking ones then walking zeros: each 32-bit half of every word holds the pattern."""
    passes = 0
    for invert in (False, True):
        for bit in range(32):
            half = (1 << bit) ^ (0xFFFFFFFF if invert else 0)
            value = _as_int64(half << 32 | half)
            for buf in chunks:
                buf.fill_(value)
            for buf in chunks:
                errors += wrong_value(torch, buf, value)
            passes += 1
            if dbcprobe.past(deadline):
                return passes
    return passes


def address_tables(torch, count, period, invert, device):
    """Row n: words holding chunk number n (bits 32 and up) and their index (mod ``period``)."""
    index = torch.arange(period, dtype=torch.int64, device=device)
    chunk = torch.arange(count, dtype=torch.int64, device=device).mul_(1 << 32)
    tables = index.unsqueeze(0) + chunk.unsqueeze(1)
    return tables.bitwise_not_() if invert else tables


def address(torch, chunks, deadline, errors):
    """Address-in-address: plain with the first period, complemented with the second."""
    passes = 0
    device = chunks[0].device
    for invert, period in ((False, ADDRESS_PERIODS[0]), (True, ADDRESS_PERIODS[1])):
        tables = address_tables(torch, len(chunks), period, invert, device)
        for n, buf in enumerate(chunks):
            write_tiled(torch, buf, tables[n])
        for n, buf in enumerate(chunks):
            count_tiled(torch, buf, tables[n], errors)
        passes += 1
        if dbcprobe.past(deadline):
            break
    return passes


def random_tables(torch, gen, seed, count, device):
    """``count`` rows of RANDOM_PERIOD random int64 words (all 64 bits), drawn from ``gen``
    seeded with ``seed``."""
    gen.manual_seed(seed)
    shape = (count, RANDOM_PERIOD)
    high = torch.randint(-(1 << 31), 1 << 31, shape, generator=gen, dtype=torch.int64,
                         device=device)
    low = torch.randint(0, 1 << 32, shape, generator=gen, dtype=torch.int64, device=device)
    return high.mul_(1 << 32).add_(low)


def random_fill(torch, chunks, seed, deadline, errors):
    """Seeded random words, regenerated from the same seed to verify: one whole pass (every
    chunk written, then verified), whatever the time; ``deadline`` is not consulted."""
    device = chunks[0].device
    gen = torch.Generator(device=device)
    tables = random_tables(torch, gen, seed, len(chunks), device)
    for n, buf in enumerate(chunks):
        write_tiled(torch, buf, tables[n])
    del tables
    tables = random_tables(torch, gen, seed, len(chunks), device)
    for n, buf in enumerate(chunks):
        count_tiled(torch, buf, tables[n], errors)
    return 1


def run_patterns(torch, chunks, device, seconds, seed=1, corrupt=None):
    """Run the patterns over ``chunks`` (int64 tensors of one size; no dtype views, which
    torch < 1.10 cannot make between sizes): per pattern its passes, errors (verifications
    that found a wrong word), seconds and GB/s (bytes written and verified).

    ``corrupt(chunks)``, when given, runs after the writes of the random pattern (to test
    that a fault is found).
    """
    total = sum(buf.numel() * buf.element_size() for buf in chunks)
    deadline = dbcprobe.deadline_after(seconds)
    out = {}
    for name in ("walking", "address", "random"):
        errors = torch.zeros((), dtype=torch.int64, device=device)
        t0 = time.time()
        if name == "walking":
            passes = walking(torch, chunks, deadline, errors)
        elif name == "address":
            passes = address(torch, chunks, deadline, errors)
        else:
            if corrupt is not None:
                chunks = _CorruptAfterWrite(chunks, corrupt)
            passes = random_fill(torch, chunks, seed, deadline, errors)
        bad = int(errors)  # waits for the pattern's last kernel
        spent = time.time() - t0
        out[name] = {"passes": passes, "errors": bad, "seconds": spent,
                     "GBps": total * passes / spent / 1e9 if spent > 0 else 0.0}
    return out


def copy_rate(torch, chunks, sync, rounds=3):
    """Device copy rate over ``chunks`` in GB/s (bytes copied per second: each is read once
    and written once), the best of ``rounds`` copies of up to 8 chunks each."""
    pairs = list(zip(chunks[:8], chunks[1:9]))
    if not pairs:
        return 0.0
    pairs[0][1].copy_(pairs[0][0])  # the copy kernel loaded before timing
    sync()
    best = 0.0
    for _ in range(rounds):
        t0 = time.time()
        for src, dst in pairs:
            dst.copy_(src)
        sync()
        spent = time.time() - t0
        if spent > 0:
            copied = sum(src.numel() * src.element_size() for src, _ in pairs)
            best = max(best, copied / spent / 1e9)
    return best


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
        chunks = [torch.empty(chunk // 8, dtype=torch.int64, device=device)
                  for _ in range(count)]
        entry.update({"free_bytes": free, "tested_bytes": chunk * count,
                      "fraction_of_free": chunk * count / float(free) if free else 0.0})
        entry["copy_GBps"] = copy_rate(torch, chunks, lambda: torch.cuda.synchronize(device))
        warm = torch.empty(1 << 19, dtype=torch.int64, device=device)
        run_patterns(torch, [warm], device, 0)  # every kernel loaded before timing
        del warm
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
        chunks = [torch.empty(1 << 17, dtype=torch.int64) for _ in range(4)]
        return {"cpu": run_patterns(torch, chunks, torch.device("cpu"), args.seconds),
                "cpu_copy_GBps": copy_rate(torch, chunks, lambda: None)}
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
