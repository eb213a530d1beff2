"""Where in-guest tests run: the test VM, an existing machine over SSH, or this machine.

A :class:`Guest` is a :class:`~dbc_accept.target.Target` (read files, run commands) that can
also receive files; in-guest tests ship probe scripts to it and assert on their JSON.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from dbc_accept.target import LocalTarget, Target


@dataclass(frozen=True)
class PassedGpu:
    """A GPU the host handed to the guest: its host PCI address and vendor:device id."""

    bdf: str
    pci_id: str  # "10de:2335"
    name: str = ""


@runtime_checkable
class Guest(Target, Protocol):
    """A Target that also takes uploads; ``passed_gpus`` is None when not known."""

    @property
    def passed_gpus(self) -> list[PassedGpu] | None: ...

    @property
    def workdir(self) -> str:
        """A folder in the guest, writable, private to this run."""
        ...

    def put(self, local_path: str, remote_path: str) -> None:
        """Copy a local file into the guest."""
        ...


@dataclass
class LocalGuest(LocalTarget):
    """This machine as the guest (bare-metal nodes; GPU boxes without nested virtualization)."""

    workdir: str = "/tmp/dbc-accept-guest"
    passed_gpus: list[PassedGpu] | None = field(default=None)

    def __post_init__(self) -> None:
        os.makedirs(self.workdir, exist_ok=True)

    def put(self, local_path: str, remote_path: str) -> None:
        if os.path.abspath(local_path) != os.path.abspath(remote_path):
            shutil.copyfile(local_path, remote_path)
