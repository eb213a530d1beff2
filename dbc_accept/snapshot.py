"""Snapshot folders: a node's facts captured once, replayed anywhere (format 1).

Layout (see docs/snapshot.md)::

    DIR/snapshot.json    {"format": 1, "hostname": ..., "captured_at": ..., ...}
    DIR/fs/<host path>   files and symbolic links at their host paths
    DIR/cmd/<slug>.json  {"argv": [...], "rc": 0, "stdout": "...", "stderr": "..."}

A path missing from the snapshot reads as missing on the host; a command missing from
it behaves like a command that is not installed (rc 127).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dbc_accept.target import NOT_FOUND_RC, CommandResult

FORMAT = 1
META_FILE = "snapshot.json"


class SnapshotError(Exception):
    """The folder is not a snapshot this version can replay."""


def command_slug(argv: Sequence[str]) -> str:
    """The file name (without ``.json``) under which a command's result is kept."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(argv[:3]))[:48].strip("_")
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

    def _fs(self, path: str) -> Path:
        if not path.startswith("/"):
            raise FileNotFoundError(path)
        return self.root / "fs" / path.lstrip("/")

    def _resolve(self, path: str, hops: int = 0) -> Path:
        """Follow snapshot symlinks that point at host paths, inside the snapshot."""
        local = self._fs(path)
        if hops < 40 and local.is_symlink():
            dest = os.readlink(local)
            host_dest = os.path.normpath(os.path.join(os.path.dirname(path), dest))
            return self._resolve(host_dest, hops + 1)
        parent = os.path.dirname(path)
        if hops < 40 and parent != path and not local.exists():
            real_parent = self._resolve(parent, hops + 1) if parent != "/" else self._fs("/")
            return real_parent / os.path.basename(path)
        return local

    def read_text(self, path: str) -> str:
        local = self._resolve(path)
        if local.is_dir():
            raise IsADirectoryError(path)
        try:
            return local.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            raise FileNotFoundError(path) from None

    def read_link(self, path: str) -> str:
        parent = self._resolve(os.path.dirname(path)) if os.path.dirname(path) != "/" else None
        local = (parent / os.path.basename(path)) if parent else self._fs(path)
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
            return sorted(os.listdir(local))
        except FileNotFoundError:
            raise FileNotFoundError(path) from None

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        record = self.root / "cmd" / f"{command_slug(argv)}.json"
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return CommandResult(tuple(argv), NOT_FOUND_RC, "",
                                 f"{argv[0]}: not in snapshot {self.root}")
        except (OSError, ValueError) as exc:
            return CommandResult(tuple(argv), NOT_FOUND_RC, "", f"unreadable {record}: {exc}")
        return CommandResult(
            tuple(argv), int(data.get("rc", NOT_FOUND_RC)),
            str(data.get("stdout", "")), str(data.get("stderr", "")),
        )
