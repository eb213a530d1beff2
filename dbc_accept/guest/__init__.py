"""Where in-guest tests run: the test VM, an existing machine over SSH, or this machine.

A :class:`Guest` is a :class:`~dbc_accept.target.Target` (read files, run commands) that can
also receive files; in-guest tests ship probe scripts to it and assert on their JSON.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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


def guest_workdir(guest: object) -> str:
    """The guest's private work folder; a guest without one cannot receive probes."""
    workdir = getattr(guest, "workdir", None)
    if not isinstance(workdir, str) or not workdir:
        raise OSError(f"{type(guest).__name__} has no private work folder for probes")
    return workdir


@dataclass
class LocalGuest(LocalTarget):
    """This machine as the guest (bare-metal nodes; GPU boxes without nested virtualization)."""

    # A fresh private folder (mode 0700) unless one is given: probes are copied there and
    # run as root, so never a predictable shared path.
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="dbc-accept-guest."))
    passed_gpus: list[PassedGpu] | None = field(default=None)

    def __post_init__(self) -> None:
        os.makedirs(self.workdir, mode=0o700, exist_ok=True)

    def put(self, local_path: str, remote_path: str) -> None:
        if os.path.abspath(local_path) != os.path.abspath(remote_path):
            shutil.copyfile(local_path, remote_path)
