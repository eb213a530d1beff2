"""Thresholds of the in-guest unit tests per profile (``--profile``), from
``dbc_accept/data/profiles.json``, and the guest's CPU and memory facts they apply to."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

GIB = 1 << 30
DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@lru_cache(maxsize=None)
def profiles() -> dict[str, dict[str, Any]]:
    text = (DATA_DIR / "profiles.json").read_text(encoding="utf-8")
    found: dict[str, dict[str, Any]] = json.loads(text)["profiles"]
    return found


def profile(name: str) -> dict[str, Any]:
    """The named profile; KeyError listing the known names."""
    known = profiles()
    if name not in known:
        raise KeyError(f"unknown profile {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


@dataclass(frozen=True)
class Need:
    """What a profile asks of a guest with ``gpus`` GPUs; None: not checked."""

    cpu_kind: str  # "physical" or "logical"
    cpus: int | None
    ram_gib: float | None
    root_disk_gib: float | None
    vram_gib_each: float | None
    display_devices: int | None


def need(spec: dict[str, Any], gpus: int, vram_total_gib: float = 0.0) -> Need:
    """Thresholds for a guest with ``gpus`` GPUs holding ``vram_total_gib`` GiB in all."""
    cpus = [spec.get("cpu_min"), None]
    if spec.get("cpu_per_gpu") is not None:
        cpus[1] = spec["cpu_per_gpu"] * gpus + (spec.get("cpu_extra") or 0)
    rams = [spec.get("ram_gib_min")]
    if spec.get("ram_gib_per_gpu") is not None:
        rams.append(spec["ram_gib_per_gpu"] * gpus)
    if spec.get("ram_vs_vram") is not None:
        rams.append(spec["ram_vs_vram"] * vram_total_gib)
    cpu_values = [c for c in cpus if c is not None]
    ram_values = [r for r in rams if r is not None]
    return Need(
        cpu_kind=str(spec.get("cpu_count", "logical")),
        cpus=int(max(cpu_values)) if cpu_values else None,
        ram_gib=float(max(ram_values)) if ram_values else None,
        root_disk_gib=spec.get("root_disk_gib_min"),
        vram_gib_each=spec.get("vram_gib_min"),
        display_devices=spec.get("display_devices"),
    )


def gib(nbytes: float) -> float:
    return round(nbytes / GIB, 1)


def safe_id(text: str) -> str:
    """A test-id fragment: ``NVIDIA H200`` -> ``NVIDIA_H200``."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")
