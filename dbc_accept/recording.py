"""Capture a snapshot: a Target that records what it serves, and the writer of format 1.

:class:`RecordingTarget` wraps any target (this machine, a testinfra host) and keeps every
file, link, folder listing and command result it hands out. :func:`capture` runs every
registered gatherer once through it; :meth:`RecordingTarget.write` lays the records out as
described in :mod:`dbc_accept.snapshot`, each file through its allow-list
(:mod:`dbc_accept.secrecy`). What failed to read (missing,
unreadable) is not kept, so it reads as missing on replay.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import posixpath
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dbc_accept.inline import probe_key
from dbc_accept.secrecy import new_key, register_node_dat, scrub_lines, snapshot_argv, snapshot_text
from dbc_accept.snapshot import (
    FORMAT,
    LISTING_FILE,
    META_FILE,
    command_slug,
)
from dbc_accept.target import CommandResult, Target
from dbc_accept.verdict import FactError

MAX_HOPS = 40  # symbolic links followed while placing a path, as the kernel allows


def tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dbc-accept")
    except PackageNotFoundError:
        return "unknown"


class RecordingTarget:
    """A target that serves from ``inner`` and remembers everything it served."""

    def __init__(self, inner: Target) -> None:
        self.inner = inner
        self.name = inner.name
        self.files: dict[str, str] = {}
        self.links: dict[str, str] = {}
        self.listings: dict[str, list[str]] = {}
        self.commands: dict[tuple[str, ...], CommandResult] = {}
        self._link_cache: dict[str, str | None] = {}
        self.problems: list[str] = []  # gatherers that broke (not: facts that were absent)

    def read_text(self, path: str) -> str:
        text = self.inner.read_text(path)
        self.files[path] = text
        return text

    def read_link(self, path: str) -> str:
        dest = self.inner.read_link(path)
        self.links[path] = dest
        self._link_cache[path] = dest
        return dest

    def list_dir(self, path: str) -> list[str]:
        names = self.inner.list_dir(path)
        self.listings[path] = list(names)
        return names

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        result = self.inner.run(argv, timeout)
        self.commands[tuple(argv)] = result
        return result

    # --- placing paths: a path is stored where it is on the host, links kept ----------

    def _link_of(self, path: str) -> str | None:
        if path not in self._link_cache:
            try:
                self._link_cache[path] = self.inner.read_link(path)
            except (OSError, FactError):
                self._link_cache[path] = None
        return self._link_cache[path]

    def physical(self, path: str, hops: int = 0) -> str:
        """``path`` with every symbolic link resolved; each link met is recorded."""
        resolved = "/"
        for part in [p for p in path.split("/") if p]:
            here = posixpath.join(resolved, part)
            if part == "..":
                resolved = posixpath.dirname(resolved) or "/"
                continue
            if part == ".":
                continue
            dest = self._link_of(here) if hops < MAX_HOPS else None
            if dest is None:
                resolved = here
                continue
            self.links[here] = dest
            hops += 1
            resolved = self.physical(posixpath.normpath(posixpath.join(resolved, dest)), hops)
        return resolved

    def _place(self, path: str, final: bool = True) -> str:
        """Where a record of ``path`` goes: its folder resolved, and itself if ``final``."""
        if final:
            return self.physical(path)
        parent = self.physical(posixpath.dirname(path))
        return posixpath.join(parent, posixpath.basename(path))

    # --- writing ----------------------------------------------------------------------

    def write(self, root: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
        """Write the records as a format-1 snapshot under ``root`` (which must be empty)."""
        top = Path(root)
        key = new_key()  # the keyed hashes of this snapshot (kept in snapshot.json)
        for path, text in self.files.items():  # known before anything is written
            if path.endswith("/node.dat"):
                register_node_dat(text)
        fs = top / "fs"
        fs.mkdir(parents=True, exist_ok=True)
        resolve = getattr(self.inner, "resolve_paths", None)  # a remote node: in one command
        if resolve is not None:
            resolve([*self.listings, *self.files, *(posixpath.dirname(p) for p in self.links)])
        for path in sorted(self.listings):  # links first: later paths are placed through them
            self._place(path)
        for path in sorted(self.files):
            self._place(path, final=path in self.links)
        for path, dest in sorted(self.links.items()):
            _write_link(fs, self._place(path, final=False), dest)
        for path, names in sorted(self.listings.items()):
            folder = _inside(fs, self._place(path))
            folder.mkdir(parents=True, exist_ok=True)
            (folder / LISTING_FILE).write_text(json.dumps(sorted(names)), encoding="utf-8")
        for path, text in sorted(self.files.items()):
            # A file's own name is resolved only when it was also read as a link: asking
            # whether every file is a link would cost a round trip each on a remote host.
            local = _inside(fs, self._place(path, final=path in self.links))
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(snapshot_text(path, text, key), encoding="utf-8")
        cmd = top / "cmd"
        cmd.mkdir(exist_ok=True)
        for argv, result in sorted(self.commands.items()):
            probe = probe_key(argv)  # an in-line probe: found by it whatever its text
            record = {"argv": snapshot_argv(argv), **({"probe": probe} if probe else {}),
                      "rc": result.rc, "stdout": scrub_lines(result.stdout),
                      "stderr": scrub_lines(result.stderr)}
            (cmd / f"{command_slug(argv)}.json").write_text(
                json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        (top / META_FILE).write_text(
            json.dumps({**self._meta(meta), "hmac_key": key.hex()}, indent=2, sort_keys=True)
            + "\n", encoding="utf-8")
        return top

    def _meta(self, extra: dict[str, Any] | None) -> dict[str, Any]:
        hostname = self.files.get("/proc/sys/kernel/hostname", "").strip()
        if not hostname:
            try:
                hostname = self.inner.read_text("/proc/sys/kernel/hostname").strip()
            except OSError:
                hostname = socket.gethostname() if self.inner.name == "local" else ""
        return {
            "format": FORMAT,
            "hostname": hostname or self.inner.name,
            "captured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "tool": "dbc-accept",
            "tool_version": tool_version(),
            "target": self.inner.name,
            **(extra or {}),
        }


def _inside(fs: Path, host_path: str) -> Path:
    """The file under ``fs`` for an absolute host path (never outside ``fs``)."""
    return fs / posixpath.normpath("/" + host_path).lstrip("/")


def _write_link(fs: Path, host_path: str, dest: str) -> None:
    local = _inside(fs, host_path)
    local.parent.mkdir(parents=True, exist_ok=True)
    if local.is_symlink() or local.exists():
        return  # placed already (the same link reached by two paths)
    os.symlink(dest, local)


def capture(target: Target, extra: Sequence[Callable[[Target], Any]] = ()) -> RecordingTarget:
    """Run every registered gatherer (and ``extra`` ones) once through a recorder."""
    from dbc_accept.facts.registry import all_gatherers

    recorder = RecordingTarget(target)
    for gatherer in [*all_gatherers(), *extra]:
        try:
            gatherer(recorder)
        except FactError as exc:
            if "cannot connect" in exc.why:  # an unreachable host: nothing else will read
                raise
            # Otherwise the replayed check reports it the same way; the reads are recorded.
        except Exception as exc:  # a gatherer's bug must not lose the rest of the capture
            name = getattr(gatherer, "__name__", repr(gatherer))
            recorder.problems.append(f"{name}: {type(exc).__name__}: {exc}")
    return recorder
