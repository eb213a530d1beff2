"""CNN throughput probe: runs a plan of torchvision models, one JSON line per run.

Runs inside the guest on Python >= 3.8 and torch >= 1.9 (torchvision imported lazily).
Usage: ``python3 cnn_bench.py PLAN.json``. The plan is ``{"runs": [spec, ...],
"cudnn_benchmark": true, "device": "cuda"}``; each spec names the model, mode (train or
infer), precision (fp32 or mixed), parallel (single, ddp or dp), batch per GPU, image size,
warm-up and measurement budget. Every output line starts with ``DBCBENCH `` followed by a
JSON object: one ``env`` line, one ``result`` line per run (every step's time kept), one
``done`` line. The host computes the statistics; this script only measures.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import socket
import sys
import time
import traceback

PREFIX = "DBCBENCH "
NUM_CLASSES = 1000
# googlenet and inception_v3 would otherwise initialise their weights with scipy (torchvision
# <= 0.11) or warn; the weights do not change the speed.
NO_INIT = ("googlenet", "inception_v3")
TINY = "tiny_cnn"  # built here, not by torchvision
COLLECTIVE_TIMEOUT_S = 180  # longer than any rank's set-up and warm-up of one model


class Unavailable(Exception):
    """The guest's software lacks what a run needs (not the GPU's fault)."""


def emit(obj):
    sys.stdout.write(PREFIX + json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def _version(module):
    return str(getattr(module, "__version__", "unknown"))


def environment(torch, device):
    """What the guest has: versions, GPUs, which fast paths exist."""
    env = {"kind": "env", "python": sys.version.split()[0], "torch": _version(torch),
           "device": device, "cuda_available": bool(torch.cuda.is_available()), "gpus": []}
    try:
        import torchvision
        env["torchvision"] = _version(torchvision)
    except ImportError as exc:
        env["torchvision"] = None
        env["torchvision_error"] = "torchvision is not installed for %s: %s" % (sys.executable, exc)
    env["channels_last"] = hasattr(torch, "channels_last")
    env["autocast_dtype_arg"] = hasattr(torch, "autocast")
    if device == "cuda" and env["cuda_available"]:
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            env["gpus"].append({"index": i, "name": props.name,
                                "memory_bytes": int(props.total_memory),
                                "capability": "%d.%d" % (props.major, props.minor)})
        bf16 = getattr(torch.cuda, "is_bf16_supported", None)
        env["bf16"] = bool(bf16 and env["autocast_dtype_arg"] and bf16())
    else:
        env["bf16"] = bool(env["autocast_dtype_arg"] and hasattr(torch, "bfloat16"))
    env["mixed_dtype"] = "bfloat16" if env["bf16"] else "float16"
    env["cudnn_tf32"] = bool(getattr(torch.backends.cudnn, "allow_tf32", False))
    matmul = getattr(torch.backends.cuda, "matmul", None)
    env["matmul_tf32"] = bool(getattr(matmul, "allow_tf32", False))
    return env


def tiny_cnn(torch):
    """A two-convolution network: checks the harness where torchvision is absent."""
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, NUM_CLASSES))


def build_torchvision(name):
    """A torchvision model with random weights (never downloads)."""
    if name == TINY:
        import torch
        return tiny_cnn(torch)
    try:
        import torchvision
        import torchvision.models as tvm
    except ImportError as exc:
        raise Unavailable("torchvision is not installed for %s: %s"
                          % (sys.executable, exc)) from None
    fn = getattr(tvm, name, None)
    if fn is None:
        raise Unavailable("torchvision %s has no model %s" % (_version(torchvision), name))
    kwargs = {"init_weights": False} if name in NO_INIT else {}
    try:
        return fn(weights=None, **kwargs)
    except TypeError:  # torchvision < 0.13 knows only `pretrained`
        return fn(pretrained=False, **kwargs)


class Autocast:
    """Mixed-precision context for the device, or nothing for fp32."""

    def __init__(self, torch, device, dtype):
        self.ctx = None
        if dtype is None:
            return
        if hasattr(torch, "autocast"):
            self.ctx = torch.autocast(device_type=device, dtype=dtype)
        elif device == "cuda":  # torch 1.9: fp16 only
            self.ctx = torch.cuda.amp.autocast()

    def __enter__(self):
        return self.ctx.__enter__() if self.ctx is not None else None

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc) if self.ctx is not None else False


class Clock:
    """Step times: CUDA events (no stall between steps) or perf_counter on the CPU."""

    def __init__(self, torch, device):
        self.torch = torch
        self.cuda = device == "cuda"
        self.marks = []

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def mark(self):
        if self.cuda:
            event = self.torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def step_times(self):
        """Seconds between consecutive marks (synchronizes first)."""
        self.sync()
        m = self.marks
        if self.cuda:
            return [m[i].elapsed_time(m[i + 1]) / 1000.0 for i in range(len(m) - 1)]
        return [m[i + 1] - m[i] for i in range(len(m) - 1)]


def mixed_dtype(torch, env, precision):
    if precision != "mixed":
        return None
    return torch.bfloat16 if env.get("bf16") else torch.float16


class Step:
    """One training or inference step of a model on synthetic data."""

    def __init__(self, torch, model, spec, env, device, batch, wrap=None):
        self.torch = torch
        self.train = spec["mode"] == "train"
        self.legacy = bool(spec.get("legacy"))
        self.dtype = mixed_dtype(torch, env, spec["precision"])
        self.device = device
        fmt = torch.channels_last if spec.get("channels_last") and env["channels_last"] else None
        model = model.to(device, memory_format=fmt) if fmt is not None else model.to(device)
        if wrap is not None:  # DDP/DataParallel last: they keep views of the final parameters
            model = wrap(model)
        self.model = model.train() if self.train else model.eval()
        where = "cpu" if self.legacy else device
        size = int(spec.get("image", 224))
        self.x = torch.randn(batch, 3, size, size, device=where)
        if fmt is not None:
            self.x = self.x.contiguous(memory_format=fmt)
        self.y = torch.randint(0, NUM_CLASSES, (batch,), device=device)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.opt = None
        self.scaler = None
        if self.train and not self.legacy:  # DBC's benchmark never steps an optimizer
            self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            if self.dtype is torch.float16 and device.startswith("cuda"):
                self.scaler = torch.cuda.amp.GradScaler()
        self.autocast = Autocast(torch, device.split(":")[0], self.dtype)
        no_grad = getattr(torch, "inference_mode", None) or torch.no_grad
        self.no_grad = no_grad

    def _outputs(self, x):
        out = self.model(x)
        # inception_v3 and googlenet also return auxiliary logits when training; every
        # output takes part in the loss (as in real training, and as DDP requires)
        outs = out if isinstance(out, tuple) else (out,)
        return [o for o in outs if o is not None]

    def __call__(self):
        x = self.x.to(self.device, non_blocking=False) if self.legacy else self.x
        if not self.train:
            with self.no_grad(), self.autocast:
                self._outputs(x)
            return
        with self.autocast:
            outs = self._outputs(x)
        loss = self.loss_fn(outs[0].float(), self.y)
        for aux in outs[1:]:
            loss = loss + 0.3 * self.loss_fn(aux.float(), self.y)
        if self.opt is not None:
            self.opt.zero_grad(set_to_none=True)
        elif self.legacy:
            self.model.zero_grad()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            return
        loss.backward()
        if self.opt is not None:
            self.opt.step()


class Alone:
    """Decisions of a single process: its own."""

    def all(self, flag):
        return flag

    def most(self, n):
        return n


class Agreed:
    """Decisions every DDP rank takes together: each rank must run the same number of
    steps, or one waits forever in a collective the others never join."""

    def __init__(self, torch, dist, device):
        self.torch, self.dist, self.device = torch, dist, device

    def _reduce(self, value, op):
        t = self.torch.tensor([int(value)], dtype=self.torch.int64, device=self.device)
        self.dist.all_reduce(t, op=op)
        return int(t.item())

    def all(self, flag):
        return bool(self._reduce(1 if flag else 0, self.dist.ReduceOp.MIN))

    def most(self, n):
        return self._reduce(n, self.dist.ReduceOp.MAX)


ALONE = Alone()


def warm_up(step, clock, spec, agree=ALONE):
    """Run until step times settle (on every rank); return (first step s, steps, total s,
    step times)."""
    start = time.perf_counter()
    step()
    clock.sync()
    first = time.perf_counter() - start
    # The first step (cuDNN autotuning, lazy initialisation) counts as a warm-up step.
    lo, hi = int(spec.get("warmup_min", 2)), int(spec.get("warmup_max", 20))
    times = []
    for i in range(max(0, hi - 1)):
        t0 = time.perf_counter()
        step()
        clock.sync()
        times.append(time.perf_counter() - t0)
        settled = i + 2 >= lo and len(times) >= 3 and _settled(times[-3:])
        if agree.all(settled):
            break
    return first, len(times) + 1, time.perf_counter() - start, times


def _settled(last):
    return max(last) <= 1.05 * min(last)


def measure(step, clock, spec, warm_times, agree=ALONE):
    """Timed steps: enough to fill ``measure_s`` within [steps_min, steps_max]."""
    lo, hi = int(spec.get("steps_min", 10)), int(spec.get("steps_max", 200))
    per_step = sorted(warm_times)[len(warm_times) // 2] if warm_times else 0.0
    budget = float(spec.get("measure_s", 0))
    want = int(budget / per_step) + 1 if per_step > 0 and budget > 0 else hi
    steps = agree.most(max(lo, min(hi, want)))
    clock.marks = []
    start = time.perf_counter()
    clock.mark()
    for _ in range(steps):
        step()
        clock.mark()
    times = clock.step_times()
    return times, time.perf_counter() - start


def is_oom(exc):
    return "out of memory" in str(exc).lower()


def run_one(spec, env, device, build=build_torchvision, torch=None, wrap=None, agree=ALONE):
    """Build, warm up and time one spec; return its result line (never raises).

    Out of memory, a single process retries at half the batch; DDP ranks cannot (one rank
    retrying while the others wait in a collective would hang them), so they report it.
    """
    if torch is None:
        import torch
    result = {"kind": "result", "id": spec["id"], "spec": spec, "status": "ok",
              "batch_requested": int(spec["batch"])}
    batch = int(spec["batch"])
    while True:
        try:
            result.update(_timed(torch, spec, env, device, build, batch, wrap, agree))
            result["batch"] = batch
            return result
        except Unavailable as exc:
            result.update(status="skipped", reason=str(exc))
            return result
        except RuntimeError as exc:
            if is_oom(exc) and batch > 1 and agree is ALONE:
                batch //= 2  # a smaller card: report the batch that fits
                continue
            result.update(status="error", reason="%s: %s" % (type(exc).__name__, exc))
            return result
        except Exception as exc:  # any model or driver failure is this run's result
            result.update(status="error", reason="%s: %s" % (type(exc).__name__, exc),
                          traceback=traceback.format_exc(limit=3))
            return result
        finally:
            _free(torch, device)


def _free(torch, device):
    gc.collect()
    if device.startswith("cuda"):
        # a broken CUDA context raises here: the next runs report it themselves
        with contextlib.suppress(RuntimeError):
            torch.cuda.empty_cache()


def _timed(torch, spec, env, device, build, batch, wrap, agree):
    t0 = time.perf_counter()
    if device.startswith("cuda") and hasattr(torch.device(device), "__enter__"):
        with torch.device(device):  # torch >= 2.0: initialise weights on the GPU, not the CPU
            model = build(spec["model"])
    else:
        model = build(spec["model"])
    step = Step(torch, model, spec, env, device, batch, wrap)
    clock = Clock(torch, device.split(":")[0])
    clock.sync()
    setup = time.perf_counter() - t0
    first, warm_steps, warm_s, warm_times = warm_up(step, clock, spec, agree)
    times, measure_s = measure(step, clock, spec, warm_times, agree)
    dtype = step.dtype
    return {"times_s": times, "setup_s": setup, "first_step_s": first,
            "warmup_s": warm_s, "warmup_steps": warm_steps, "measure_s": measure_s,
            "dtype": str(dtype).replace("torch.", "") if dtype is not None else "float32",
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}


def run_single(torch, plan, env, device):
    """Run the single-process specs of ``plan``; return the batch each fitted, by id."""
    fitted = {}
    for spec in plan["runs"]:
        configure(torch, plan, spec)
        if spec.get("parallel") == "dp":
            n = torch.cuda.device_count() if device == "cuda" else 1
            # nn.DataParallel splits one batch of `batch` x GPUs, as DBC's benchmark does
            whole = dict(spec, world=n, batch=int(spec["batch"]) * n)
            wrap = torch.nn.DataParallel if n > 1 else None
            result = run_one(whole, env, "cuda:0" if device == "cuda" else device, wrap=wrap)
            result["spec"] = dict(spec, world=n)
            result["batch_requested"] = int(spec["batch"])
            if "batch" in result:
                result["batch"] = max(1, result["batch"] // n)
        else:
            result = run_one(dict(spec, world=1), env, "cuda:0" if device == "cuda" else device)
        if "batch" in result:
            fitted[spec["id"]] = result["batch"]
        emit(result)
    return fitted


def configure(torch, plan, spec=None):
    """cuDNN autotuning as the plan, and the run if given, ask (each DDP process sets it
    again: spawn does not carry it over)."""
    wanted = bool(plan.get("cudnn_benchmark", True))
    torch.backends.cudnn.benchmark = wanted and bool((spec or {}).get("autotune", True))
    limit = plan.get("cudnn_benchmark_limit")
    if limit is not None and hasattr(torch.backends.cudnn, "benchmark_limit"):
        torch.backends.cudnn.benchmark_limit = int(limit)  # torch >= 1.13


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_wrapper(torch, rank, cuda):
    """DistributedDataParallel as throughput benchmarks use it: gradients reduced in buckets
    straight from the parameters' own storage (torch >= 1.7), and no broadcast of the
    BatchNorm statistics from rank 0 before every forward pass (one more collective per
    step, and statistics that do not change the work)."""
    DDP = torch.nn.parallel.DistributedDataParallel
    ids = [rank] if cuda else None

    def wrap(model):
        try:
            return DDP(model, device_ids=ids, broadcast_buffers=False,
                       gradient_as_bucket_view=True)
        except TypeError:
            return DDP(model, device_ids=ids, broadcast_buffers=False)

    return wrap


def ddp_worker(rank, world, port, plan, env, reported):
    """One process per GPU (or per CPU rank over gloo); rank 0 reports, every rank's
    median is gathered."""
    import datetime

    import torch
    import torch.distributed as dist
    cuda = plan.get("device", "cuda") == "cuda"
    os.environ.setdefault("NCCL_DEBUG", "WARN")
    # A rank that fails mid-step leaves the others in a collective: time it out, not hang.
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    os.environ.setdefault("NCCL_ASYNC_ERROR_HANDLING", "1")  # torch < 2.2
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo",
                            init_method="tcp://127.0.0.1:%d" % port, rank=rank,
                            world_size=world,
                            timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    device = "cuda:%d" % rank if cuda else "cpu"
    agree = Agreed(torch, dist, device)
    wrap = ddp_wrapper(torch, rank, cuda)
    for spec in plan["runs"]:
        spec = dict(spec, world=world)
        configure(torch, plan, spec)
        dist.barrier()
        result = run_one(spec, env, device, wrap=wrap if spec["mode"] == "train" else None,
                         agree=agree)
        times = result.get("times_s") or []
        median = sorted(times)[len(times) // 2] if times else None
        # A plain tensor gather (not all_gather_object): no pickling, no size exchange.
        mine = torch.tensor([median if median is not None else -1.0],
                            dtype=torch.float64, device=device)
        gathered = [torch.zeros_like(mine) for _ in range(world)]
        dist.all_gather(gathered, mine)
        medians = [float(t.item()) if t.item() >= 0 else None for t in gathered]
        if rank == 0:
            result["rank_median_s"] = medians
            emit(result)
            with open(reported, "a") as fh:
                fh.write(spec["id"] + "\n")
    dist.barrier()
    dist.destroy_process_group()


def run_ddp(torch, plan, env, fitted):
    """The DDP specs, one process per GPU, each at the batch its single-GPU run fitted."""
    device = plan.get("device", "cuda")
    n = torch.cuda.device_count() if device == "cuda" else int(plan.get("cpu_world", 2))
    runs = []
    for spec in plan["runs"]:
        single = fitted.get(spec["id"].replace("-ddp", "-1gpu"))
        if single is not None and single < int(spec["batch"]):
            spec = dict(spec, batch=single)  # what fits one GPU fits each of them
        runs.append(spec)
    if n < 2:
        for spec in runs:
            emit({"kind": "result", "id": spec["id"], "spec": spec, "status": "skipped",
                  "reason": "torch sees %d GPU here: DDP needs 2 or more" % n})
        return
    import tempfile

    import torch.multiprocessing as mp
    if device == "cuda":
        torch.cuda.empty_cache()
    fd, reported = tempfile.mkstemp(prefix="dbc-ddp-")
    os.close(fd)
    try:
        mp.spawn(ddp_worker, args=(n, _free_port(), dict(plan, runs=runs), env, reported),
                 nprocs=n, join=True)
    except Exception as exc:  # a rank died or timed out: the runs it never reported
        with open(reported) as fh:
            done = set(fh.read().split())
        lines = str(exc).strip().splitlines()
        why = "%s: %s" % (type(exc).__name__, lines[-1] if lines else "")
        for spec in runs:
            if spec["id"] not in done:
                emit({"kind": "result", "id": spec["id"], "spec": spec, "status": "error",
                      "reason": "a DDP process ended: " + why})
    finally:
        os.unlink(reported)


def main(argv):
    start = time.perf_counter()
    if len(argv) != 2:
        sys.stderr.write("usage: cnn_bench.py PLAN.json\n")
        return 2
    with open(argv[1]) as fh:
        plan = json.load(fh)
    try:
        import torch
    except ImportError as exc:
        emit({"kind": "env", "error": "torch is not installed for %s: %s" % (sys.executable, exc)})
        emit({"kind": "done", "total_s": time.perf_counter() - start})
        return 0
    device = plan.get("device", "cuda")
    env = environment(torch, device)
    emit(env)
    if device == "cuda" and not env["cuda_available"]:
        emit({"kind": "done", "total_s": time.perf_counter() - start})
        return 0
    runs = plan.get("runs", [])
    single = [s for s in runs if s.get("parallel") != "ddp"]
    fitted = run_single(torch, dict(plan, runs=single), env, device)
    ddp = [s for s in runs if s.get("parallel") == "ddp"]
    if ddp:
        run_ddp(torch, dict(plan, runs=ddp), env, fitted)
    emit({"kind": "done", "total_s": time.perf_counter() - start})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
