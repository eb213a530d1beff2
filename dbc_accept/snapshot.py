"""Snapshot folders: a node's facts captured once, replayed anywhere (format 1).

Layout (see docs/snapshot.md)::

    DIR/snapshot.json    {"format": 1, "hostname": ..., "captured_at": ..., ...}
    DIR/fs/<host path>   files and symbolic links at their host paths
    DIR/cmd/<slug>.json  {"argv": [...], "rc": 0, "stdout": "...", "stderr": "..."}
                         (an in-line probe's record also has "probe": "NAME@VERSION")

A path missing from the snapshot reads as missing on the host; a command missing from
it behaves like a command that is not installed (rc 127). An in-line probe
(:mod:`dbc_accept.inline`) is found by name and version, whatever its text. A captured
folder listing is kept in ``<folder>/.dbc-listing`` (a JSON list of names), so that the
folder lists the same names on replay even where an entry's content was not captured.

Secrets never enter a snapshot: the writer keeps only what :mod:`dbc_accept.secrecy`
allows of each file. A snapshot is untrusted input: every path read resolves inside its
``fs/`` or is refused (:class:`SnapshotRefused`, exit status :data:`REFUSED_EXIT`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dbc_accept.inline import stable_key
from dbc_accept.secrecy import register_node_dat, snapshot_argv
from dbc_accept.target import NOT_FOUND_RC, CommandResult

FORMAT = 1
MAX_HOPS = 40  # symbolic links followed on one path, as the kernel allows
META_FILE = "snapshot.json"
LISTING_FILE = ".dbc-listing"
class SnapshotError(Exception):
    """The folder is not a snapshot this version can replay."""


class SnapshotRefused(SnapshotError):
    """The snapshot tries to reach outside itself, or holds a file over the size cap."""


# Exit status of a run refused because its snapshot is unsafe (distinct from pytest's 0-5).
REFUSED_EXIT = 7
MAX_READ = 16 * 1024 * 1024  # bytes one read of a snapshot file may return


def command_slug(argv: Sequence[str]) -> str:
    """The file name (without ``.json``) under which a command's result is kept."""
    # A secret among the first words must not name the file. Word by word only: the names
    # of the commands of earlier snapshots stay the same.
    shown = snapshot_argv(argv[:3], inline=False)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(shown))[:48].strip("_")
    digest = hashlib.sha256(json.dumps(list(argv)).encode()).hexdigest()[:10]
    return f"{readable}-{digest}"


def load_meta(root: Path) -> dict[str, Any]:
    """Read and validate ``snapshot.json``; raise SnapshotError with the reason."""
    meta_path = root / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SnapshotError(f"{root} is not a snapshot: {META_FILE} is missing") from None
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"could not read {meta_path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        seen = meta.get("format") if isinstance(meta, dict) else meta
        raise SnapshotError(
            f"{meta_path} has format {seen!r}; this version reads format {FORMAT}. "
            "Capture it again with `dbc-accept snapshot DIR`."
        )
    return meta


class SnapshotTarget:
    """A host replayed from a snapshot folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.meta = load_meta(self.root)
        self.name = f"snapshot:{self.meta.get('hostname') or self.root.name}"
        self._fs_real = check_contained(self.root)
        self._probes: dict[tuple[str, ...], Path] | None = None

    @property
    def hmac_key(self) -> bytes | None:
        """The key of this snapshot's keyed hashes (None: an older, sha256 snapshot)."""
        raw = self.meta.get("hmac_key")
        try:
            return bytes.fromhex(raw) if isinstance(raw, str) else None
        except ValueError:
            return None

    def _fs(self, path: str) -> Path:
        if not path.startswith("/") or os.path.basename(path) == LISTING_FILE:
            raise FileNotFoundError(path)
        return self.root / "fs" / path.lstrip("/")

    def _resolve(self, path: str) -> Path:
        """The file in the snapshot for a host path, its links followed inside the snapshot."""
        if not path.startswith("/"):
            raise FileNotFoundError(path)
        local = self.root / "fs" / _inside_path(self.root / "fs", path).lstrip("/")
        return self._contained(local, path)

    def _contained(self, local: Path, path: str) -> Path:
        """``local`` when its real path lies inside ``fs/``; SnapshotRefused otherwise."""
        real = os.path.realpath(local)
        if _outside(real, self._fs_real):
            raise SnapshotRefused(f"{path} leads out of the snapshot (to {real}); refused")
        return local

    def read_text(self, path: str) -> str:
        self._fs(path)  # refuses relative paths and the listing file
        local = self._resolve(path)
        if local.is_dir():
            raise IsADirectoryError(path)
        text = _read_capped(local, path)
        if path.endswith("/node.dat"):  # a hand-made snapshot may hold real keys
            register_node_dat(text)
        return text

    def read_link(self, path: str) -> str:
        self._fs(path)  # refuses relative paths and the listing file
        parent = self._resolve(os.path.dirname(path))
        local = parent / os.path.basename(path)
        self._contained(parent, path)
        if parent.is_file():
            raise NotADirectoryError(path)
        if not local.is_symlink():
            if not local.exists():
                raise FileNotFoundError(path)
            raise OSError(22, "Invalid argument: not a symbolic link", path)
        return os.readlink(local)

    def list_dir(self, path: str) -> list[str]:
        local = self._resolve(path)
        if local.is_file():
            raise NotADirectoryError(path)
        try:
            names = os.listdir(local)
        except FileNotFoundError:
            raise FileNotFoundError(path) from None
        if LISTING_FILE in names:  # the listing as captured, whatever else was read
            try:
                listed = json.loads(_read_capped(local / LISTING_FILE, path))
            except (OSError, ValueError) as exc:
                raise OSError(f"{path}: unreadable {LISTING_FILE}: {exc}") from None
            return sorted(str(name) for name in listed)
        return sorted(names)

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        record = self._record(argv)
        try:
            data = json.loads(_read_capped(record, " ".join(argv)))
        except FileNotFoundError:
            return CommandResult(tuple(argv), NOT_FOUND_RC, "",
                                 f"{argv[0]}: not in snapshot {self.root}")
        except (OSError, ValueError) as exc:
            return CommandResult(tuple(argv), NOT_FOUND_RC, "", f"unreadable {record}: {exc}")
        return CommandResult(
            tuple(argv), int(data.get("rc", NOT_FOUND_RC)),
            str(data.get("stdout", "")), str(data.get("stderr", "")),
        )

    def _record(self, argv: Sequence[str]) -> Path:
        """The record of a command: by its exact argv, else an in-line probe by its key."""
        exact = self.root / "cmd" / f"{command_slug(argv)}.json"
        key = stable_key(argv)
        if key is None or exact.is_file():
            return exact
        return self._probe_records().get(key, exact)

    def _probe_records(self) -> dict[tuple[str, ...], Path]:
        """The records of in-line probes by stable key, whatever text ran (read once)."""
        if self._probes is None:
            self._probes = {}
            for record in sorted((self.root / "cmd").glob("*.json")):
                if record.is_symlink():
                    continue
                try:
                    data = json.loads(_read_capped(record, str(record)))
                except (OSError, ValueError):
                    continue
                key = _record_key(data)
                if key is not None:
                    self._probes.setdefault(key, record)
        return self._probes


def _record_key(data: Any) -> tuple[str, ...] | None:
    """The stable key of a command record that ran an in-line probe; None otherwise."""
    argv = data.get("argv") if isinstance(data, dict) else None
    if not isinstance(argv, list) or not all(isinstance(word, str) for word in argv):
        return None
    probe = data.get("probe")
    return stable_key(argv, probe if isinstance(probe, str) else None)


def _real_path(fs: Path, path: str, hops: int = 0) -> str:
    """``path`` with the snapshot's links resolved, walked one name at a time.

    So the operating system never follows a link of the snapshot: an absolute one would
    lead out of it, onto the machine that replays it. More than :data:`MAX_HOPS` links on
    one path is refused (the kernel would say ELOOP), never handed to the OS.
    """
    resolved = "/"
    for part in [p for p in path.split("/") if p and p != "."]:
        if part == "..":
            resolved = os.path.dirname(resolved)
            continue
        here = os.path.join(resolved, part)
        local = fs / here.lstrip("/")
        if local.is_symlink():
            hops += 1
            if hops > MAX_HOPS:
                raise SnapshotRefused(f"more than {MAX_HOPS} symbolic links in a row; refused")
            dest = os.path.normpath(os.path.join(resolved, os.readlink(local)))
            resolved = _real_path(fs, dest, hops)
        else:
            resolved = here
    return resolved


def _inside_path(fs: Path, path: str) -> str:
    """:func:`_real_path`, its refusal naming ``path``."""
    try:
        return _real_path(fs, path)
    except SnapshotRefused as exc:
        raise SnapshotRefused(f"{path}: {exc}") from None


def _read_capped(local: Path, shown: str) -> str:
    """A snapshot file's text; SnapshotRefused when it is larger than :data:`MAX_READ`."""
    try:
        with open(local, "rb") as fh:
            data = fh.read(MAX_READ + 1)
    except FileNotFoundError:
        raise FileNotFoundError(shown) from None
    if len(data) > MAX_READ:
        raise SnapshotRefused(f"{shown}: larger than {MAX_READ // (1024 * 1024)} MiB; refused")
    return data.decode("utf-8", errors="replace")


def _outside(real: str, fs_real: str) -> bool:
    return real != fs_real and not real.startswith(fs_real + os.sep)


def check_contained(root: Path) -> str:
    """Refuse a snapshot that reaches outside itself; the real path of its ``fs/``.

    ``DIR/fs`` must be a real folder (not a link), every link under it must resolve inside
    it within :data:`MAX_HOPS` hops, and no file may be larger than :data:`MAX_READ`.
    """
    fs = root / "fs"
    if fs.is_symlink():
        raise SnapshotRefused(f"{fs} is a symbolic link; a snapshot's fs/ must be a folder")
    fs_real = os.path.realpath(fs)
    for top in (fs, root / "cmd"):
        for folder, dirs, files in os.walk(top):
            for name in dirs + files:
                local = Path(folder, name)
                shown = "/" + str(local.relative_to(fs)) if top == fs else str(local)
                if top == fs and local.is_symlink():
                    real = os.path.realpath(fs / _inside_path(fs, shown).lstrip("/"))
                    if _outside(real, fs_real):
                        raise SnapshotRefused(f"{shown} leads out of the snapshot; refused")
                elif local.is_file() and local.stat().st_size > MAX_READ:
                    raise SnapshotRefused(
                        f"{shown}: larger than {MAX_READ // (1024 * 1024)} MiB; refused")
    return fs_real
