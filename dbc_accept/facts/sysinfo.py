"""What the report says about the machine: node, GPUs, driver, CUDA, software versions."""

from __future__ import annotations

import platform
import re
from importlib import metadata
from typing import Any

from dbc_accept.target import Target


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


GPU_QUERY = ("nvidia-smi", "--query-gpu=index,name,driver_version,memory.total,pci.bus_id",
             "--format=csv,noheader")
KERNEL_RELEASE = "/proc/sys/kernel/osrelease"


def gpu_info(target: Target) -> dict[str, Any]:
    """GPUs, driver and CUDA as ``nvidia-smi`` on the node tells them (empty when absent)."""
    query = target.run(GPU_QUERY, timeout=20)
    if not query.ok:
        return {"nvidia_smi": query.describe()}
    gpus = []
    for line in query.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 5:
            gpus.append(dict(zip(("index", "name", "driver", "memory", "bus_id"), parts)))
    head = target.run(["nvidia-smi"], timeout=20)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", head.stdout) if head.ok else None
    return {"gpus": gpus, "driver": gpus[0]["driver"] if gpus else "",
            "cuda": cuda.group(1) if cuda else ""}


def system_info(node: str, target: Target | None) -> dict[str, Any]:
    """Everything the environment table and system_info.json show."""
    info: dict[str, Any] = {
        "node": node,
        "dbc_accept": _version("dbc-accept"),
        "python": platform.python_version(),
        "pytest": _version("pytest"),
        "torch (controller)": _version("torch"),
    }
    if target is not None:
        info["target"] = target.name
        try:
            info["kernel"] = target.read_text(KERNEL_RELEASE).strip()
        except OSError as exc:
            info["kernel"] = f"could not read /proc/sys/kernel/osrelease: {exc}"
        info.update(gpu_info(target))
    return info


def environment_rows(info: dict[str, Any]) -> dict[str, str]:
    """The rows of pytest-html's environment table: the node and the tool.

    The node's facts are in the report's own sections (the host's nvidia-smi cannot answer
    on a node whose GPUs sit on vfio-pci); the controller's Python and plugins are folded.
    """
    return {"Node": str(info.get("node", "")), "dbc-accept": str(info.get("dbc_accept", ""))}


CONTROLLER_KEYS = ("Python", "Platform", "Packages", "Plugins")


def fold_controller(meta: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """Take the controller's rows out of ``meta``: what ran pytest, not the node."""
    controller = {k: meta.pop(k) for k in CONTROLLER_KEYS if k in meta}
    controller.update({k: info[k] for k in ("python", "pytest", "torch (controller)")
                       if k in info})
    return controller
