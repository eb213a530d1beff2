"""Every whole-host gatherer, for `dbc-accept snapshot` (which runs each one once).

Each facts module lists its gatherers in a module-level ``GATHERERS`` list; add the module
here. Gatherers that take arguments are called with their defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dbc_accept.facts import (
    cpu,
    dbcnode,
    images,
    iomem,
    kernel,
    libvirtconn,
    libvirtd,
    listeners,
    network_node,
    pci,
    storage,
    sysctl,
    system,
    virt,
)

MODULES = [
    system, cpu, kernel, pci, iomem, sysctl,
    storage, libvirtd, libvirtconn, listeners, virt, dbcnode, images,
    network_node,
]


def all_gatherers() -> list[Callable[..., Any]]:
    return [g for module in MODULES for g in getattr(module, "GATHERERS", [])]
