"""A guest with two healthy H200s, answering as nvidia-smi and the probes do (for selftests).

``faults`` maps a probe or tool name to a function that edits its answer, to plant a fault.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from dbc_accept.guest import PassedGpu
from dbc_accept.target import NOT_FOUND_RC, CommandResult
from selftests.fake_worker import ScriptedWorker, stream_by_run

DATA = Path(__file__).parent / "data" / "gpu"
BUSES = ("00000000:00:06.0", "00000000:00:07.0")
NAME = "NVIDIA H200"


def stats(median: float) -> dict[str, float]:
    return {"n": 20, "median": median, "min": median * 0.98, "max": median * 1.01,
            "spread": 0.03}


TELEMETRY = {"source": "pynvml", "samples": 120, "temp_c_max": 71, "power_w_max": 699.0,
             "power_w": stats(650.0), "sm_mhz": stats(1980.0), "mem_mhz": stats(3201.0),
             "reasons_seen": 0x5, "hw_slowdown_samples": 0, "pcie_gen_max": 5,
             "pcie_width_max": 16}
BURN = {"fp32": 48.1, "tf32": 254.6, "fp16": 416.3, "bf16": 424.2}  # TFLOP/s, H200


def burn_phase(precision: str) -> dict[str, Any]:
    rate = BURN[precision]
    return {"supported": True, "dtype": {"fp16": "float16", "bf16": "bfloat16"}.get(
        precision, "float32"), "iterations": int(rate * 15 / 1.1), "seconds": 15.0,
        "tflops": rate, "mismatched_elements": 0, "inexact_elements": 0, "first_finite": True,
        "checksum": f"{precision}-0000000000000001", "norm": 8.4e5, "telemetry": TELEMETRY}


def per_gpu(**fields: Any) -> list[dict[str, Any]]:
    return [{"index": i, "name": NAME, **json.loads(json.dumps(fields))} for i in range(2)]


def probe_docs() -> dict[str, dict[str, Any]]:
    losses = [2.3 * 0.97 ** k for k in range(150)]
    prec = {p: {"supported": True, "error": e, "max_error": 8 * e, "seconds": 0.01}
            for p, e in (("fp32", 3e-7), ("tf32", 3e-4), ("fp16", 4e-4), ("bf16", 3e-3))}
    return {
        "sysinfo": {"python": "3.12.3", "python_tuple": [3, 12, 3], "kernel": "6.18.44",
                    "machine": "x86_64", "cpus": 32, "executable": "/usr/bin/python3"},
        "nvml": {"binding": "pynvml", "driver": "580.159.04", "nvml": "13.580.159.04",
                 "cuda_driver": 13000,
                 "gpus": [{"index": i, "name": NAME, "bus_id": b, "pci_device_id": 590680286,
                           "memory_total": 150754820096} for i, b in enumerate(BUSES)]},
        "gpu_free": {"source": "pynvml", "seconds": 1.0, "gpus": per_gpu(
            bus_id="", memory_total=150754820096, memory_used=648347648, processes=[],
            process_kinds=["compute", "graphics"], utilization=[0, 0, 0, 0, 0, 0])},
        "torch_info": {"python": "3.12.3", "torch": "2.11.0+cu130", "cuda": "13.0",
                       "cudnn": 91900, "cuda_available": True,
                       "devices": per_gpu(total_memory=150754820096, capability="9.0",
                                          multiprocessors=132, bf16=True)},
        "matmul": {"n": 2048, "gpus": per_gpu(precisions=prec)},
        "train": {"steps": 150, "batch": 64,
                  "gpus": per_gpu(losses=losses, accuracy=1.0, seconds=1.1,
                                  infer_max_abs_diff=3e-7, infer_finite=True)},
        "transfer": {"gpus": per_gpu(h2d_GBps=stats(55.4), d2h_GBps=stats(55.3),
                                     d2d_rw_GBps=stats(4272.0), pcie_gen_busy=5,
                                     pcie_width_busy=16, link_samples=12,
                                     nvml_source="pynvml")},
        "vram": {"seconds_limit": 60, "gpus": per_gpu(
            free_bytes=150106472448, tested_bytes=141733920768, fraction_of_free=0.944,
            seconds=9.5, complete=True, copy_GBps=2136.0,
            patterns={n: {"passes": p, "errors": 0, "seconds": 3.0, "GBps": 1850.0}
                      for n, p in (("walking", 64), ("address", 2), ("random", 1))})},
        "stress": {"seconds": 60, "tolerance": 0.05, "seed": 100, "gpus": per_gpu(
            dtype="bfloat16", n=8192, tolerance=0.05, iterations=30000, seconds=60.0,
            tflops=BURN["bf16"], mismatched_elements=0, inexact_elements=0, first_finite=True,
            telemetry=TELEMETRY, precisions={p: burn_phase(p) for p in BURN})},
        "multi_gpu": {"count": 2, "p2p": [[True, True], [True, True]],
                      "allreduce": [[{"bytes": 1 << 30, "exact": True, "algbw_GBps": 120.0,
                                      "busbw_GBps": 120.0}]] * 2,
                      "ddp_losses": losses[:30], "single_losses": losses[:30],
                      "params_max_abs_diff": 2e-7, "params_max_abs": 0.4},
    }


def inventory_csv() -> str:
    head, row = (DATA / "h200-query-inventory.csv").read_text(encoding="utf-8").splitlines()
    second = row.replace(BUSES[0], BUSES[1]).replace("0, NVIDIA", "1, NVIDIA", 1)
    return "\n".join([head, row, second]) + "\n"


def smi_q() -> str:
    text = (DATA / "h200-smi-q.txt").read_text(encoding="utf-8")
    block = text.split(f"GPU {BUSES[0]}\n", 1)[1]
    text = re.sub(r"^(Attached GPUs\s+: )1$", r"\g<1>2", text, count=1, flags=re.MULTILINE)
    return text + f"GPU {BUSES[1]}\n" + block.replace(BUSES[0], BUSES[1])


CPUINFO = "".join(f"processor\t: {i}\nphysical id\t: 0\ncore id\t\t: {i}\nflags\t\t: fpu\n\n"
                  for i in range(32))
FILES = {
    "/proc/cpuinfo": CPUINFO,
    "/proc/meminfo": "MemTotal:       263000000 kB\nMemFree:        250000000 kB\n",
    "/proc/driver/nvidia/version": "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  "
                                   "580.159.04  Release Build  (root@host)\n",
}
Edit = Callable[[Any], Any]


class FakeGpuGuest:
    """Two H200s; ``faults[name](answer)`` edits what a probe/tool answers."""

    name = "fake-h200x2"
    workdir = "/tmp/fake-guest"

    def __init__(self, faults: dict[str, Edit] | None = None) -> None:
        self.faults = faults or {}
        self.passed_gpus = [PassedGpu(f"0000:{b}:00.0", "10de:2335") for b in ("18", "2a")]
        self.docs = probe_docs()
        self.ran: list[str] = []  # the probes run, in order
        self.workers: list[ScriptedWorker] = []  # probe workers started

    def _answer(self, name: str, value: Any) -> Any:
        return self.faults[name](value) if name in self.faults else value

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        args = tuple(argv)
        out: Any = None
        if args[0] == "python3":
            self.ran.append(Path(args[1]).stem)
            out = json.dumps(self._answer(Path(args[1]).stem,
                                          self.docs[Path(args[1]).stem]))
        elif args[0] == "nvidia-smi":
            out = self._answer("smi-q", smi_q()) if "-q" in args else \
                self._answer("smi-csv", inventory_csv())
        elif args[0] == "dmesg":
            out = self._answer("dmesg", "[    1.0] Linux version 6.18\n")
        elif args[0] == "df":
            out = "1B-blocks Mounted on\n214748364800 /\n"
        elif args[0] == "mkdir":
            out = ""
        if out is None:
            return CommandResult(args, NOT_FOUND_RC, "", f"{args[0]}: not found")
        return CommandResult(args, 0, out, "")

    def put(self, local_path: str, remote_path: str) -> None:
        return None

    def open_process(self, argv: Sequence[str]) -> ScriptedWorker:
        self.workers.append(ScriptedWorker(self.run, f"{self.workdir}/probes"))
        return self.workers[-1]

    def stream(self, argv: Sequence[str], timeout: float,
               on_line: Callable[[str], None]) -> CommandResult:
        return stream_by_run(self.run, argv, timeout, on_line)

    def read_text(self, path: str) -> str:
        if path in FILES:
            return str(self._answer(path, FILES[path]))
        raise FileNotFoundError(path)

    def read_link(self, path: str) -> str:
        raise FileNotFoundError(path)

    def list_dir(self, path: str) -> list[str]:
        raise FileNotFoundError(path)
