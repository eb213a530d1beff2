"""The gpu_free probe's logic without a GPU: a fake pynvml, and nvidia-smi's PIDS report."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType, SimpleNamespace
from typing import Any

from dbc_accept.guest.probe import PROBES_DIR


def load() -> ModuleType:
    if str(PROBES_DIR) not in sys.path:
        sys.path.insert(0, str(PROBES_DIR))
    spec = importlib.util.spec_from_file_location("probe_gpu_free", PROBES_DIR / "gpu_free.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SMI_PIDS = """
==============NVSMI LOG==============

Attached GPUs                             : 2
GPU 00000000:00:06.0
    Processes
        GPU instance ID                   : N/A
        Compute instance ID               : N/A
        Process ID                        : 4242
            Type                          : C
            Name                          : python3
            Used GPU Memory               : 81920 MiB
        Process ID                        : 77
            Type                          : G
            Name                          : Xorg
            Used GPU Memory               : 12 MiB

GPU 00000000:00:07.0
    Processes                             : None
"""


def test_smi_pids_report_names_every_process() -> None:
    pids = load().parse_smi_pids(SMI_PIDS)
    assert pids["00000000:00:07.0"] == []
    first, second = pids["00000000:00:06.0"]
    assert first == {"pid": 4242, "name": "python3", "type": "compute", "used_bytes": 80 << 30}
    assert second["type"] == "graphics" and second["name"] == "Xorg"


class FakeNvml:
    """pynvml with one GPU: a compute process and some utilization; graphics not listed."""

    class NVMLError(Exception):
        pass

    def __init__(self, util: list[int]) -> None:
        self.util = list(util)
        self.calls: list[str] = []

    def nvmlInit(self) -> None:
        self.calls.append("init")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return b"NVIDIA H200"

    def nvmlDeviceGetPciInfo(self, h: int) -> Any:
        return SimpleNamespace(busId=b"00000000:00:06.0")

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return SimpleNamespace(total=150754820096, used=120 << 30)

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [SimpleNamespace(pid=1, usedGpuMemory=1 << 30),
                SimpleNamespace(pid=999999999, usedGpuMemory=None)]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: int) -> list[Any]:
        raise self.NVMLError("Not Supported")

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=self.util.pop(0))


def test_pynvml_reading_lists_processes_memory_and_utilization() -> None:
    nv = FakeNvml([40, 50, 60])
    doc = load().with_pynvml(nv, 3, 0.0)
    (gpu,) = doc["gpus"]
    assert nv.calls == ["init", "shutdown"]
    assert gpu["memory_used"] == 120 << 30 and gpu["utilization"] == [40, 50, 60]
    assert gpu["process_kinds"] == ["compute"]  # graphics could not be listed: said so
    one, gone = gpu["processes"]
    assert one["pid"] == 1 and one["used_bytes"] == 1 << 30 and one["type"] == "compute"
    assert one["name"]  # pid 1 is visible here
    assert gone["name"] == "" and gone["used_bytes"] is None
