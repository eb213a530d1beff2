"""Probe: does NVML answer? Through pynvml, or libnvidia-ml through ctypes where it is absent."""
from __future__ import annotations

import ctypes
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbcprobe


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def with_pynvml(nv):
    nv.nvmlInit()
    try:
        doc = {"binding": "pynvml", "driver": _text(nv.nvmlSystemGetDriverVersion()),
               "nvml": _text(nv.nvmlSystemGetNVMLVersion()), "gpus": []}
        try:
            doc["cuda_driver"] = int(nv.nvmlSystemGetCudaDriverVersion())
        except Exception:  # older drivers and bindings lack it: reported as unknown
            doc["cuda_driver"] = None
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            pci = nv.nvmlDeviceGetPciInfo(h)
            doc["gpus"].append({
                "index": i, "name": _text(nv.nvmlDeviceGetName(h)),
                "bus_id": _text(pci.busId), "pci_device_id": int(pci.pciDeviceId),
                "memory_total": int(nv.nvmlDeviceGetMemoryInfo(h).total),
            })
        return doc
    finally:
        nv.nvmlShutdown()


def with_ctypes():
    """The three calls that prove NVML answers, without pynvml."""
    try:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError as exc:
        raise dbcprobe.Unavailable("libnvidia-ml.so.1 not found (NVIDIA driver not installed?): "
                                   "%s" % exc) from None
    rc = lib.nvmlInit_v2()
    if rc != 0:
        raise dbcprobe.Unavailable("nvmlInit failed with NVML error %d" % rc)
    try:
        count = ctypes.c_uint(0)
        lib.nvmlDeviceGetCount_v2(ctypes.byref(count))
        buf = ctypes.create_string_buffer(96)
        lib.nvmlSystemGetDriverVersion(buf, 96)
        return {"binding": "ctypes", "driver": buf.value.decode(), "count": int(count.value),
                "gpus": None}
    finally:
        lib.nvmlShutdown()


def collect(_args):
    try:
        import pynvml
    except ImportError:
        return with_ctypes()
    try:
        return with_pynvml(pynvml)
    except pynvml.NVMLError as exc:
        raise dbcprobe.Unavailable("NVML error: %s" % exc) from None


if __name__ == "__main__":
    dbcprobe.main(collect)
