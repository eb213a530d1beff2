"""The probe worker: one process in the guest that answers many probe requests.

Python start, ``import torch`` and the CUDA context are paid once per worker instead of once
per probe. It reads one JSON request per line on stdin::

    {"id": 3, "probe": "matmul", "args": ["--n", "512"]}

runs that probe's ``collect`` in this process (as ``python3 matmul.py --n 512`` would) and
writes one JSON line per request on the stdout it was started with::

    {"id": 3, "doc": {...}}                  the probe's document (``{"error": ..}`` included)
    {"id": 3, "error": "...", "traceback": ".."}   the request itself failed

Its first line says it is ready: ``{"ready": true, "pid": .., "pgid": .., "torch": ..}``.
An answer with ``"worker_unusable": why`` is its last (cleaning up after the probe failed).
Whatever a probe or a library prints goes to stderr, so it cannot garble an answer. After
each request the state a probe may change (torch flags, default dtype, threads, random
generators, environment, working folder) is put back as it was at start and cached GPU
memory is freed: no answer depends on the probes that ran before. It ends at end of input.

Every probe stays runnable on its own (``python3 probe.py ...``) for debugging.
"""
from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import platform
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbcprobe

NOT_PROBES = ("dbcprobe", "worker")
# (object under torch, flag) pairs a probe may set; those this torch lacks are skipped.
TORCH_FLAGS = (
    ("backends.cudnn", "benchmark"), ("backends.cudnn", "deterministic"),
    ("backends.cudnn", "enabled"), ("backends.cudnn", "allow_tf32"),
    ("backends.cuda.matmul", "allow_tf32"),
    ("backends.cuda.matmul", "allow_fp16_reduced_precision_reduction"),
    ("backends.cuda.matmul", "allow_bf16_reduced_precision_reduction"),
)
CUDA_DEFAULT_SEED = 67280421310721  # torch's seed of a fresh CUDA generator


def _under(torch, path):
    obj = torch
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def snapshot():
    """The process state a probe may change, to put back after each request."""
    state = {"environ": dict(os.environ), "cwd": os.getcwd(), "argv": list(sys.argv),
             "path": list(sys.path)}
    torch = sys.modules.get("torch")
    if torch is None:
        return state
    flags = {}
    for path, name in TORCH_FLAGS:
        obj = _under(torch, path)
        if obj is not None and hasattr(obj, name):
            flags[(path, name)] = getattr(obj, name)
    state.update(flags=flags, dtype=torch.get_default_dtype(),
                 threads=torch.get_num_threads(), rng=torch.get_rng_state())
    if hasattr(torch, "are_deterministic_algorithms_enabled"):  # torch >= 1.8
        state["deterministic"] = torch.are_deterministic_algorithms_enabled()
    return state


def restore(state):
    """Put back what :func:`snapshot` saw."""
    if dict(os.environ) != state["environ"]:
        os.environ.clear()
        os.environ.update(state["environ"])
    os.chdir(state["cwd"])
    sys.argv[:] = state["argv"]
    sys.path[:] = state["path"]
    torch = sys.modules.get("torch")
    if torch is None or "flags" not in state:
        return
    for (path, name), value in state["flags"].items():
        obj = _under(torch, path)
        if getattr(obj, name) != value:
            setattr(obj, name, value)
    torch.set_default_dtype(state["dtype"])
    if torch.get_num_threads() != state["threads"]:
        torch.set_num_threads(state["threads"])
    torch.set_rng_state(state["rng"])
    if "deterministic" in state:
        torch.use_deterministic_algorithms(state["deterministic"])
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(CUDA_DEFAULT_SEED)


def free():
    """Give back what the last probe held: its objects, then the cached GPU memory. A GPU
    left in a sticky error (an illegal address, an Xid) raises here: the worker ends."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        for index in range(torch.cuda.device_count()):
            torch.cuda.synchronize(index)
        clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)  # torch >= 1.13
        if clear is not None:
            clear()  # cuBLAS keeps a workspace per handle and stream: freed as in a new process
        torch.cuda.empty_cache()


def run_probe(name, args):
    """The probe's document, as ``python3 name.py args`` would print it."""
    if name in NOT_PROBES or not name.isidentifier():
        raise ValueError("no probe named %r" % name)
    module = importlib.import_module(name)
    sys.argv[:] = [module.__file__ or name, *args]  # as its own command line
    parser = module.parser() if hasattr(module, "parser") else None
    try:
        return dbcprobe.answer(module.collect, parser, args)
    except SystemExit as exc:  # argparse refused the arguments (it said why on stderr)
        raise ValueError("probe %s refused its arguments %r (exit status %s)"
                         % (name, args, exc.code)) from None


def handle(line):
    """One request line -> one answer."""
    try:
        req = json.loads(line)
        rid, name, args = req.get("id"), str(req["probe"]), [str(a) for a in req.get("args", [])]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return {"id": None, "error": "unreadable request %r: %s" % (line[:200], exc)}
    try:
        return {"id": rid, "doc": run_probe(name, args)}
    except Exception as exc:
        return {"id": rid, "error": "%s: %s" % (type(exc).__name__, exc),
                "traceback": traceback.format_exc()[-2000:]}


def answers_out():
    """The stdout the worker was started with, for answers only; fd 1 becomes stderr."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return out


def send(out, obj):
    out.write(json.dumps(obj, sort_keys=True, default=str) + "\n")
    out.flush()


def torch_version():
    try:
        import torch
    except Exception:  # no torch: the probes that need it answer so themselves
        return None
    return str(torch.__version__)


def main():
    with contextlib.suppress(OSError):  # a group leader already (sshd starts commands so)
        os.setsid()  # its own process group, which the host stops as a whole
    out = answers_out()
    version = torch_version()
    baseline = snapshot()
    send(out, {"ready": True, "pid": os.getpid(), "pgid": os.getpgrp(), "torch": version,
               "python": platform.python_version()})
    while True:
        line = sys.stdin.readline()
        if not line:
            return 0
        if not line.strip():
            continue
        answer = handle(line)
        try:
            restore(baseline)
            free()
        except Exception as exc:  # e.g. a CUDA error that poisons the context: end here
            answer["worker_unusable"] = "%s: %s" % (type(exc).__name__, exc)
            send(out, answer)
            return 3
        send(out, answer)


if __name__ == "__main__":
    sys.exit(main())
