"""Shared helpers of the in-guest probes: output, torch import, statistics, NVML sampling.

Shipped next to every probe and imported by it. Runs on Python >= 3.8 with the standard
library and, where asked for, torch (>= 1.9) and pynvml; nothing else.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import traceback

# CUDA numbers GPUs fastest-first by default; NVML and nvidia-smi by PCI address. The same
# order everywhere lets a test name "GPU 1" once.
os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
# NVLink multicast (NVLS) can take shared GPUs out of service when it misbehaves; the checks
# here do not need it.
os.environ.setdefault("NCCL_NVLS_ENABLE", "0")


class Unavailable(Exception):
    """A prerequisite of the probe is missing (no torch, no CUDA): reported as data."""


def emit(doc):
    """Print the probe's one JSON document."""
    sys.stdout.write(json.dumps(doc, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def main(collect, parser=None):
    """Run ``collect(args)`` and print its result, or ``{"error": why}``; exit 0 either way."""
    emit(answer(collect, parser))


def answer(collect, parser=None, argv=None):
    """``collect(args)``'s document, or ``{"error": why}``: what :func:`main` prints.
    ``argv`` defaults to the command line (the probe worker passes each request's)."""
    args = parser.parse_args(argv) if parser is not None else None
    try:
        return collect(args)
    except Unavailable as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a probe must always answer with JSON, never a traceback
        return {"error": "%s: %s" % (type(exc).__name__, exc),
                "traceback": traceback.format_exc()[-2000:]}


def import_torch(need_cuda=True):
    """torch, or Unavailable saying why it cannot be used."""
    try:
        import torch
    except ImportError as exc:
        raise Unavailable("torch not installed (%s)" % exc) from None
    if need_cuda and not torch.cuda.is_available():
        raise Unavailable("torch %s: CUDA not available (%s)" % (torch.__version__,
                                                                 cuda_error(torch)))
    return torch


def cuda_error(torch):
    """Why torch sees no CUDA device, in a few words."""
    if not torch.version.cuda:
        return "torch was built without CUDA"
    try:
        torch.cuda.init()
    except Exception as exc:
        return str(exc).strip().splitlines()[0][:300]
    return "no CUDA device visible"


def has_bf16(torch, index):
    """bf16 matrix products are native from compute capability 8.0 (Ampere)."""
    if not hasattr(torch, "bfloat16"):
        return False
    return torch.cuda.get_device_capability(index)[0] >= 8


def set_tf32(torch, on):
    """Turn TF32 on/off with the allow_tf32 flags (torch >= 1.7). Their setters keep the
    fp32_precision settings of torch >= 2.9 in step; setting those directly instead makes
    torch refuse the mix with the flags that its own code still reads."""
    matmul = getattr(torch.backends.cuda, "matmul", None)
    if matmul is not None and hasattr(matmul, "allow_tf32"):
        matmul.allow_tf32 = on
    if hasattr(torch.backends.cudnn, "allow_tf32"):
        torch.backends.cudnn.allow_tf32 = on


def stats(values):
    """Median, min, max and spread ((max-min)/median) of a list of floats."""
    xs = sorted(values)
    if not xs:
        return {"n": 0}
    n = len(xs)
    med = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2.0
    return {"n": n, "median": med, "min": xs[0], "max": xs[-1],
            "spread": (xs[-1] - xs[0]) / med if med else 0.0}


def free_bytes(torch, index):
    """Free device memory: mem_get_info where this torch has it (>= 1.10), else an estimate."""
    if hasattr(torch.cuda, "mem_get_info"):
        return int(torch.cuda.mem_get_info(index)[0])
    props = torch.cuda.get_device_properties(index)
    return int(props.total_memory * 0.95) - int(torch.cuda.memory_reserved(index))


# --- the model and task shared by the training, inference and DDP probes -------------------

def make_model(torch, classes=10, width=16):
    """A small CNN without batch norm (so DDP over slices equals one GPU over the batch)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * width * 16, 64), nn.ReLU(), nn.Linear(64, classes),
    )


def make_task(torch, seed, samples, classes=10, size=16, noise=1.0):
    """Images = a class template (fixed per seed) + Gaussian noise; labels = the class."""
    gen = torch.Generator().manual_seed(seed)
    templates = torch.randn(classes, 3, size, size, generator=gen)
    labels = torch.randint(0, classes, (samples,), generator=gen)
    images = templates[labels] + noise * torch.randn(samples, 3, size, size, generator=gen)
    return images, labels


def init_model(torch, seed, width=16):
    """The same initial weights on every device: built on the CPU from a fixed seed."""
    torch.manual_seed(seed)
    return make_model(torch, width=width)


# --- NVML sampling: pynvml where installed, nvidia-smi otherwise ----------------------------

SMI_FIELDS = ("index,temperature.gpu,power.draw,clocks.sm,clocks.mem,"
              "pcie.link.gen.current,pcie.link.width.current")
REASON_FIELDS = ("clocks_event_reasons.active", "clocks_throttle_reasons.active")


class Nvml(object):
    """Reads temperature, power, clocks, throttle reasons and PCIe link of each GPU."""

    def __init__(self):
        self.source = None
        self._nv = None
        self._handles = []
        self._reason_field = REASON_FIELDS[0]
        try:
            import pynvml
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._nv = pynvml
            self.source = "pynvml"
        except Exception:  # no pynvml, or NVML does not start: read nvidia-smi instead
            self.source = "nvidia-smi"

    def read(self):
        """{index: {temp_c, power_w, sm_mhz, mem_mhz, reasons, pcie_gen, pcie_width}}."""
        if self._nv is not None:
            return dict((i, self._read_nvml(h)) for i, h in enumerate(self._handles))
        return self._read_smi()

    def _read_nvml(self, h):
        nv = self._nv
        out = {}
        calls = (
            ("temp_c", lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
            ("power_w", lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0),
            ("sm_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
            ("mem_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)),
            ("reasons", lambda: nv.nvmlDeviceGetCurrentClocksThrottleReasons(h)),
            ("pcie_gen", lambda: nv.nvmlDeviceGetCurrPcieLinkGeneration(h)),
            ("pcie_width", lambda: nv.nvmlDeviceGetCurrPcieLinkWidth(h)),
        )
        for key, call in calls:
            try:
                out[key] = call()
            except Exception:  # a field this GPU or driver does not report: unknown
                out[key] = None
        return out

    def _read_smi(self):
        for _ in range(2):
            fields = SMI_FIELDS + "," + self._reason_field
            try:
                proc = subprocess.run(
                    ["nvidia-smi", "--query-gpu=" + fields, "--format=csv,noheader,nounits"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10,
                    universal_newlines=True, check=False)
            except (OSError, subprocess.TimeoutExpired):
                return {}
            if proc.returncode == 0:
                return parse_smi_sample(proc.stdout)
            if self._reason_field == REASON_FIELDS[0]:  # drivers before 535 know the old name
                self._reason_field = REASON_FIELDS[1]
        return {}


def _num(text):
    text = text.strip()
    try:
        return int(text, 16) if text.startswith("0x") else float(text)
    except ValueError:
        return None


def parse_smi_sample(text):
    """Parse the noheader,nounits CSV of SMI_FIELDS + the reasons field."""
    keys = ("temp_c", "power_w", "sm_mhz", "mem_mhz", "pcie_gen", "pcie_width", "reasons")
    out = {}
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(keys) + 1 or not cells[0].isdigit():
            continue
        out[int(cells[0])] = dict(zip(keys, (_num(c) for c in cells[1:])))
    return out


class Sampler(object):
    """Samples Nvml.read() every ``period`` seconds in a thread until stopped."""

    def __init__(self, period=0.5):
        self.period = period
        self.samples = []  # (t, {index: reading})
        self.nvml = Nvml()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop)
        self._thread.daemon = True
        self._t0 = time.time()

    def _loop(self):
        while not self._stop.is_set():
            self.samples.append((self.elapsed(), self.nvml.read()))
            self._stop.wait(self.period)

    def elapsed(self):
        """Seconds since sampling started."""
        return time.time() - self._t0

    def __enter__(self):
        self._t0 = time.time()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        return False

    def summary(self, index, start=None, end=None):
        """Per-GPU summary of the samples (those from ``start`` to ``end`` seconds when given):
        maxima, clocks and power, and the OR of throttle reasons."""
        rows = [r[index] for t, r in list(self.samples) if index in r
                and (start is None or t >= start) and (end is None or t <= end)]

        def col(key):
            return [row[key] for row in rows if row.get(key) is not None]

        reasons = 0
        hw_samples = 0
        for row in rows:
            bits = int(row.get("reasons") or 0)
            reasons |= bits
            if bits & HW_SLOWDOWN_BITS:
                hw_samples += 1
        temps, power, sm, mem = col("temp_c"), col("power_w"), col("sm_mhz"), col("mem_mhz")
        return {
            "source": self.nvml.source, "samples": len(rows),
            "temp_c_max": max(temps) if temps else None,
            "power_w_max": max(power) if power else None,
            "power_w": stats(power) if power else None,
            "sm_mhz": stats(sm) if sm else None,
            "mem_mhz": stats(mem) if mem else None,
            "reasons_seen": reasons, "hw_slowdown_samples": hw_samples,
            "pcie_gen_max": max(col("pcie_gen")) if col("pcie_gen") else None,
            "pcie_width_max": max(col("pcie_width")) if col("pcie_width") else None,
        }


# NVML clock event reasons that mean the hardware slowed the GPU down (nvml.h):
# HW_SLOWDOWN 0x8, HW_THERMAL_SLOWDOWN 0x40, HW_POWER_BRAKE_SLOWDOWN 0x80.
HW_SLOWDOWN_BITS = 0x8 | 0x40 | 0x80


def deadline_after(seconds):
    """A monotonic deadline ``seconds`` from now."""
    return time.monotonic() + float(seconds)


def past(deadline):
    return time.monotonic() >= deadline
