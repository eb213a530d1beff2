"""Where in-guest tests run: the test VM, an existing machine over SSH, or this machine.

A :class:`Guest` is a :class:`~dbc_accept.target.Target` (read files, run commands) that can
also receive files, stream a command's output and hold a process open (its stdin and stdout
as pipes); in-guest tests ship probe scripts to it and assert on their JSON.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

from dbc_accept.guest.process import GuestProcess, open_local, stream_local
from dbc_accept.target import CommandResult, LocalTarget, Target


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

    def stream(self, argv: Sequence[str], timeout: float,
               on_line: Callable[[str], None]) -> CommandResult:
        """As ``run``, also calling ``on_line`` with each stdout line as it arrives."""
        ...

    def open_process(self, argv: Sequence[str]) -> GuestProcess:
        """Start ``argv`` with its stdin and stdout as pipes (OSError if it cannot start)."""
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

    def stream(self, argv: Sequence[str], timeout: float,
               on_line: Callable[[str], None]) -> CommandResult:
        return stream_local(argv, timeout, on_line)

    def open_process(self, argv: Sequence[str]) -> GuestProcess:
        return open_local(argv)

    def put(self, local_path: str, remote_path: str) -> None:
        if os.path.abspath(local_path) != os.path.abspath(remote_path):
            shutil.copyfile(local_path, remote_path)
