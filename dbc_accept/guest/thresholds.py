"""Thresholds of the in-guest unit tests per ``--profile``, from
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


@dataclass(frozen=True)
class Thresholds:
    """One ``--profile``: what the in-guest unit tests ask of a guest (None: not checked).

    Sizes in GiB; per-GPU figures are multiplied by the guest's GPUs, ``*_min`` are floors.
    """

    name: str
    description: str = ""
    cpu_count: str = "logical"  # which CPUs count: "physical" cores or "logical" processors
    cpu_min: float | None = None
    cpu_per_gpu: float | None = None
    cpu_extra: float | None = None
    ram_gib_min: float | None = None
    ram_gib_per_gpu: float | None = None
    ram_vs_vram: float | None = None  # RAM at least this times the guest's total VRAM
    root_disk_gib_min: float | None = None
    gpu_min: int | None = None
    vram_gib_min: float | None = None
    display_devices: int | None = None


def _number(doc: dict[str, Any], key: str) -> Any:
    """A figure of profiles.json as written there (an int stays an int in messages)."""
    value = doc.get(key)
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise ValueError(f"profiles.json: {key} is {value!r}; expected a number or null")


def parse_thresholds(name: str, doc: dict[str, Any]) -> Thresholds:
    """One entry of profiles.json; ValueError naming a field that is not a number."""
    return Thresholds(
        name=name, description=str(doc.get("description", "")),
        cpu_count=str(doc.get("cpu_count", "logical")),
        **{key: _number(doc, key) for key in (
            "cpu_min", "cpu_per_gpu", "cpu_extra", "ram_gib_min", "ram_gib_per_gpu",
            "ram_vs_vram", "root_disk_gib_min", "gpu_min", "vram_gib_min", "display_devices")},
    )


@lru_cache(maxsize=None)
def all_thresholds() -> dict[str, Thresholds]:
    """Every profile of dbc_accept/data/profiles.json, by name."""
    text = (DATA_DIR / "profiles.json").read_text(encoding="utf-8")
    found: dict[str, dict[str, Any]] = json.loads(text)["profiles"]
    return {name: parse_thresholds(name, doc) for name, doc in found.items()}


def thresholds_for(name: str) -> Thresholds:
    """The named profile's thresholds; KeyError listing the known names."""
    known = all_thresholds()
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


def need(spec: Thresholds, gpus: int, vram_total_gib: float = 0.0) -> Need:
    """Thresholds for a guest with ``gpus`` GPUs holding ``vram_total_gib`` GiB in all."""
    cpus = [spec.cpu_min, None]
    if spec.cpu_per_gpu is not None:
        cpus[1] = spec.cpu_per_gpu * gpus + (spec.cpu_extra or 0)
    rams = [spec.ram_gib_min]
    if spec.ram_gib_per_gpu is not None:
        rams.append(spec.ram_gib_per_gpu * gpus)
    if spec.ram_vs_vram is not None:
        rams.append(spec.ram_vs_vram * vram_total_gib)
    cpu_values = [c for c in cpus if c is not None]
    ram_values = [r for r in rams if r is not None]
    return Need(
        cpu_kind=spec.cpu_count,
        cpus=int(max(cpu_values)) if cpu_values else None,
        ram_gib=float(max(ram_values)) if ram_values else None,
        root_disk_gib=spec.root_disk_gib_min,
        vram_gib_each=spec.vram_gib_min,
        display_devices=spec.display_devices,
    )


def gib(nbytes: float) -> float:
    return round(nbytes / GIB, 1)


def safe_id(text: str) -> str:
    """A test-id fragment: ``NVIDIA H200`` -> ``NVIDIA_H200``."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")
