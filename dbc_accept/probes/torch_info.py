"""Probe: torch, CUDA and cuDNN versions and the CUDA devices torch sees."""
from __future__ import annotations

import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbcprobe


def collect(_args):
    torch = dbcprobe.import_torch(need_cuda=False)
    doc = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": None,
        "cuda_available": bool(torch.cuda.is_available()),
        "devices": [],
    }
    try:
        doc["cudnn"] = torch.backends.cudnn.version()
    except Exception as exc:  # cuDNN missing or broken: a fact, not a crash
        doc["cudnn_error"] = str(exc)
    if not doc["cuda_available"]:
        doc["cuda_error"] = dbcprobe.cuda_error(torch)
        return doc
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        doc["devices"].append({
            "index": i, "name": props.name, "total_memory": int(props.total_memory),
            "capability": "%d.%d" % (props.major, props.minor),
            "multiprocessors": int(props.multi_processor_count),
            "bf16": dbcprobe.has_bf16(torch, i),
        })
    return doc


if __name__ == "__main__":
    dbcprobe.main(collect)
