"""Which PCI functions count as GPUs: NVIDIA by default, or the ids of ``--gpu-ids``.

By default a GPU is an NVIDIA display controller (vendor 10de, class 03xx: VGA, 3D or
other display) and its card's functions are the NVIDIA functions of the kinds a GPU card
carries (display, audio, USB, serial bus).

``--gpu-ids VENDOR:DEVICE,...`` (or the environment variable ``DBC_ACCEPT_GPU_IDS``)
replaces that rule, for a machine whose stand-in device plays the GPU (QEMU cannot emulate
an NVIDIA GPU): every function with one of these ids is a GPU, whatever its class, and its
card's functions are it and the other functions of its slot (same bus and device number),
as a GPU's audio function sits next to its VGA function. Everything else (IOMMU groups,
binding, the test VM's hostdevs, teardown) then runs unchanged on those functions.
"""

from __future__ import annotations

import os
import re
from typing import Optional, Tuple

ENV = "DBC_ACCEPT_GPU_IDS"
NVIDIA = "10de"
# Classes (class code >> 8) of the functions an NVIDIA card carries besides its display
CARD_CLASSES = frozenset({0x0300, 0x0302, 0x0380, 0x0403, 0x0c03, 0x0c80})
_ID_RE = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{4})$")

GpuIds = Optional[Tuple[str, ...]]  # None: the NVIDIA rule

_state: dict[str, GpuIds] = {}


def parse_gpu_ids(text: str, source: str = "--gpu-ids") -> GpuIds:
    """``8086:10d3,8086:293e`` -> ("8086:10d3", "8086:293e"); "" or "nvidia" -> None.

    ValueError with one line saying what is wrong and what is expected.
    """
    value = text.strip().lower()
    if value in ("", "nvidia"):
        return None
    ids: list[str] = []
    for part in (p.strip() for p in value.split(",")):
        part = part[2:] if part.startswith("0x") else part
        if not _ID_RE.match(part):
            raise ValueError(f"{source} {text.strip()!r}: {part!r} is not a PCI id; expected "
                             "VENDOR:DEVICE in hex, comma-separated (e.g. 8086:10d3,8086:293e)"
                             ", or 'nvidia' for the default")
        if part not in ids:
            ids.append(part)
    return tuple(ids)


def set_gpu_ids(ids: GpuIds) -> None:
    """Set the rule for this process (the plugin does, from --gpu-ids or the environment)."""
    _state["ids"] = ids


def reset() -> None:
    """Back to the environment's rule (or the default); for tests."""
    _state.pop("ids", None)


def gpu_ids() -> GpuIds:
    """The rule in force: set_gpu_ids's, else DBC_ACCEPT_GPU_IDS's, else None (NVIDIA)."""
    if "ids" in _state:
        return _state["ids"]
    return parse_gpu_ids(os.environ.get(ENV, ""), source=ENV)


def describe() -> str:
    """For messages: what counts as a GPU on this run."""
    ids = gpu_ids()
    if ids is None:
        return "NVIDIA display controller (vendor 10de, class 03xx)"
    return f"function with a --gpu-ids id ({', '.join(ids)})"


def is_gpu(vendor: str, device: str, pci_class: int) -> bool:
    """A GPU's display function (one per GPU). ``pci_class``: the 24-bit class code."""
    ids = gpu_ids()
    if ids is None:
        return vendor == NVIDIA and pci_class >> 16 == 0x03
    return f"{vendor}:{device}" in ids


def _slot(bdf: str) -> str:
    return bdf.rsplit(".", 1)[0]


def card_bdfs(functions: list[tuple[str, str, str, int]]) -> set[str]:
    """The addresses of every GPU card's functions among (bdf, vendor, device, class)."""
    ids = gpu_ids()
    if ids is None:
        return {bdf for bdf, vendor, _device, cls in functions
                if vendor == NVIDIA and (cls >> 16 == 0x03 or cls >> 8 in CARD_CLASSES)}
    slots = {_slot(bdf) for bdf, vendor, device, cls in functions if is_gpu(vendor, device, cls)}
    return {bdf for bdf, _v, _d, cls in functions if _slot(bdf) in slots and cls >> 8 != 0x0604}
