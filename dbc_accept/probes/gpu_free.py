"""Probe: is every GPU free before the tests use it? Processes on it (compute and graphics,
with pid, name and memory), memory used, and utilization sampled over a short time.

Reads NVML only (pynvml, else ``nvidia-smi``): it makes no CUDA context of its own, so what
it sees is what was there before. A pid of another container or of the host shows without a
name; ``name`` is then the empty string.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbcprobe


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def process_name(pid):
    """The command name of ``pid`` where this guest can see it, else ''."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except (OSError, ValueError):
        return ""


def _nvml_processes(nv, handle, kinds):
    """Processes on the GPU; ``kinds`` gets the kinds NVML could list."""
    out = []
    for kind, call in (("compute", "nvmlDeviceGetComputeRunningProcesses"),
                       ("graphics", "nvmlDeviceGetGraphicsRunningProcesses")):
        try:
            procs = getattr(nv, call)(handle)
        except Exception:  # a call this driver or binding lacks: that kind is not known
            continue
        kinds.append(kind)
        for p in procs:
            used = getattr(p, "usedGpuMemory", None)
            out.append({"pid": int(p.pid), "name": process_name(int(p.pid)), "type": kind,
                        "used_bytes": int(used) if isinstance(used, int) else None})
    return out


def with_pynvml(nv, samples, period):
    nv.nvmlInit()
    try:
        handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(nv.nvmlDeviceGetCount())]
        gpus = []
        for i, h in enumerate(handles):
            mem, kinds = nv.nvmlDeviceGetMemoryInfo(h), []
            gpus.append({"index": i, "name": _text(nv.nvmlDeviceGetName(h)),
                         "bus_id": _text(nv.nvmlDeviceGetPciInfo(h).busId),
                         "memory_total": int(mem.total), "memory_used": int(mem.used),
                         "processes": _nvml_processes(nv, h, kinds), "process_kinds": kinds,
                         "utilization": []})
        for k in range(samples):
            for gpu, h in zip(gpus, handles):
                # no utilization counter on this GPU: left unknown
                with contextlib.suppress(Exception):
                    gpu["utilization"].append(int(nv.nvmlDeviceGetUtilizationRates(h).gpu))
            if k + 1 < samples:
                time.sleep(period)
        return {"source": "pynvml", "gpus": gpus}
    finally:
        nv.nvmlShutdown()


def _smi(args):
    proc = subprocess.run(["nvidia-smi", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=30, universal_newlines=True,
                          check=False)
    if proc.returncode != 0:
        raise dbcprobe.Unavailable("nvidia-smi %s failed: %s" % (" ".join(args),
                                                                 proc.stdout.strip()[:300]))
    return proc.stdout


def parse_smi_pids(text):
    """{bus id: [process]} from ``nvidia-smi -q -d PIDS`` (C = compute, G = graphics)."""
    out, bus, proc = {}, None, None
    for line in text.splitlines():
        head = re.match(r"^GPU ([0-9A-Fa-f:.]+)\s*$", line)
        if head:
            bus = head.group(1)
            out[bus] = []
            continue
        kv = re.match(r"^\s+([^:]+?)\s+:\s*(.*)$", line)
        if not kv or bus is None:
            continue
        key, value = kv.group(1), kv.group(2).strip()
        if key == "Process ID" and value.isdigit():
            proc = {"pid": int(value), "name": "", "type": "compute", "used_bytes": None}
            out[bus].append(proc)
        elif proc is not None and key == "Type":
            proc["type"] = "graphics" if value.startswith("G") and "C" not in value \
                else "compute"
        elif proc is not None and key == "Name":
            proc["name"] = value if value not in ("", "N/A") else process_name(proc["pid"])
        elif proc is not None and key == "Used GPU Memory":
            mib = re.match(r"(\d+)\s*MiB", value)
            proc["used_bytes"] = int(mib.group(1)) << 20 if mib else None
    return out


def with_smi(samples, period):
    fields = "index,name,pci.bus_id,memory.total,memory.used"
    gpus = []
    for row in _smi(["--query-gpu=" + fields, "--format=csv,noheader,nounits"]).splitlines():
        cells = [c.strip() for c in row.split(",")]
        if len(cells) == 5 and cells[0].isdigit():
            gpus.append({"index": int(cells[0]), "name": cells[1], "bus_id": cells[2],
                         "memory_total": int(float(cells[3])) << 20,
                         "memory_used": int(float(cells[4])) << 20, "utilization": []})
    pids = parse_smi_pids(_smi(["-q", "-d", "PIDS"]))
    for gpu in gpus:
        gpu["processes"] = pids.get(gpu["bus_id"], [])
        gpu["process_kinds"] = ["compute", "graphics"] if gpu["bus_id"] in pids else []
    for k in range(samples):
        text = _smi(["--query-gpu=index,utilization.gpu", "--format=csv,noheader,nounits"])
        for row in text.splitlines():
            cells = [c.strip() for c in row.split(",")]
            if len(cells) == 2 and cells[0].isdigit() and cells[1].isdigit():
                for gpu in gpus:
                    if gpu["index"] == int(cells[0]):
                        gpu["utilization"].append(int(cells[1]))
        if k + 1 < samples:
            time.sleep(period)
    return {"source": "nvidia-smi", "gpus": gpus}


def collect(args):
    seconds = max(0.0, args.seconds)
    samples = max(1, round(seconds / args.period) + 1)
    period = seconds / (samples - 1) if samples > 1 else 0.0
    try:
        import pynvml
    except ImportError:
        pynvml = None
    if pynvml is not None:
        try:
            doc = with_pynvml(pynvml, samples, period)
        except pynvml.NVMLError:
            doc = None  # NVML through pynvml fails: nvidia-smi says why, or answers
        if doc is not None:
            doc["seconds"] = seconds
            return doc
    try:
        doc = with_smi(samples, period)
    except OSError as exc:
        raise dbcprobe.Unavailable("neither pynvml nor nvidia-smi answer (%s)" % exc) from None
    doc["seconds"] = seconds
    return doc


def parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=1.0, help="utilization sampling time")
    p.add_argument("--period", type=float, default=0.2, help="seconds between samples")
    return p


if __name__ == "__main__":
    dbcprobe.main(collect, parser())
