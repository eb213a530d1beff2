"""(十一) No boot framebuffer holds a GPU's memory, and vfio-pci reserved every BAR."""

from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.iomem import gather_iomem
from dbc_accept.facts.kernel import gather_bar_reserve_errors
from dbc_accept.facts.pci import PciFunction, gather_pci_devices, nvidia_gpus
from dbc_accept.plugin import each
from dbc_accept.verdict import check

pytestmark = pytest.mark.host


def _gpus(node: HostFacts) -> list[tuple[str, PciFunction]]:
    return [(g.bdf, g) for g in nvidia_gpus(node.get(gather_pci_devices))]


@each(_gpus, empty="no NVIDIA GPU on this node")
def test_no_framebuffer_on_gpu(node: HostFacts, entry: PciFunction) -> None:
    iomem = node.get(gather_iomem)
    held = [f"{bar} held by {fb.name} ({fb.start:x}-{fb.end:x})"
            for bar in entry.bars if bar.is_memory
            for fb in iomem.framebuffers_over(bar.start, bar.end)]
    check(not held, "fb.iomem", observed=f"{entry.bdf}: " + "; ".join(held) + " in /proc/iomem",
          expected="no vesafb/efifb/simplefb/BOOTFB range over a GPU BAR")


def test_no_bar_reserve_errors(node: HostFacts) -> None:
    errors = node.get(gather_bar_reserve_errors)
    check(not errors, "fb.bar_reserve",
          observed="kernel log: " + "; ".join(
              f"vfio-pci {e.bdf}: BAR {e.bar}: can't reserve {e.range}".strip() for e in errors),
          expected="no `vfio-pci ... BAR N: can't reserve` in dmesg")
