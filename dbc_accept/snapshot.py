"""Snapshot folders: a node's facts captured once, replayed anywhere (format 1).

Layout (see docs/snapshot.md)::

    DIR/snapshot.json    {"format": 1, "hostname": ..., "captured_at": ..., ...}
    DIR/fs/<host path>   files and symbolic links at their host paths
    DIR/cmd/<slug>.json  {"argv": [...], "rc": 0, "stdout": "...", "stderr": "..."}

A path missing from the snapshot reads as missing on the host; a command missing from
it behaves like a command that is not installed (rc 127). A captured folder listing is
kept in ``<folder>/.dbc-listing`` (a JSON list of names), so that the folder lists the
same names on replay even where an entry's content was not captured.

Secrets never enter a snapshot: the value of any key that names a secret (see
:data:`SECRET_KEY`) is replaced by ``redacted:sha256:<hex digest of the value>``
(:data:`REDACTED_PREFIX`), which keeps that it is present and lets a backup be compared.
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
MAX_HOPS = 40  # symbolic links followed on one path, as the kernel allows
META_FILE = "snapshot.json"
LISTING_FILE = ".dbc-listing"
# A redacted value: this prefix, then the sha256 hex digest of the value. Parsers of
# files that hold secrets (node.dat) must accept it and take the digest as the value's.
REDACTED_PREFIX = "redacted:sha256:"
# Keys whose values are secrets: node.dat's node_private_key and priv_key, passwords,
# tokens. "priv" counts only as a word of its own (not in kernel.unprivileged_bpf...).
SECRET_KEY = re.compile(
    r"password|passwd|passphrase|secret|token|private[_.-]?key|(?:^|[_.-])priv(?:[_.-]|key|$)",
    re.IGNORECASE,
)
# key = value, key: value, KEY="value", --key=value (a line, an argv word, an env entry)
_ASSIGNMENT = re.compile(
    r"""^(?P<head>\s*[#;]?\s*(?:export\s+)?-{0,2}(?P<key>[A-Za-z0-9_.-]+)\s*[=:]\s*)
        (?P<quote>["']?)(?P<value>.*?)(?P=quote)(?P<tail>\s*[,;]?\s*)$""",
    re.VERBOSE,
)


def redacted(value: str) -> str:
    """The marker that stands for a secret value."""
    return REDACTED_PREFIX + hashlib.sha256(value.encode()).hexdigest()


# The same inside a line: key=value or key: value, and "--secret-flag VALUE".
_INLINE = re.compile(
    r"""(?P<head>(?P<key>[A-Za-z0-9_.-]+)(?:=|:[ \t]*)(?P<quote>["']?))
        (?P<value>[^\s"',;]+)""",
    re.VERBOSE,
)
_FLAG_VALUE = re.compile(r"(?P<head>(?P<key>--?[A-Za-z0-9_.-]+)[ \t]+)(?P<value>[^\s-]\S*)")


def _replace(match: re.Match[str]) -> str:
    value = match["value"]
    if not SECRET_KEY.search(match["key"]) or value.startswith(REDACTED_PREFIX):
        return match[0]
    return f"{match['head']}{redacted(value)}"


def _redact_word(word: str) -> str:
    match = _ASSIGNMENT.match(word)
    if match and SECRET_KEY.search(match["key"]) and match["value"]:
        if match["value"].startswith(REDACTED_PREFIX):
            return word
        q = match["quote"]
        return f"{match['head']}{q}{redacted(match['value'])}{q}{match['tail']}"
    return _FLAG_VALUE.sub(_replace, _INLINE.sub(_replace, word))


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with its secret values (``--password=X``, ``--token X``) redacted."""
    words = list(argv)
    if not words:
        return words
    return redact_text("\0".join([*words, ""])).split("\0")[:-1]


def redact_text(text: str) -> str:
    """``text`` with the value of every secret-named key replaced by its marker.

    Works line by line and on NUL-separated words (``/proc/PID/cmdline``, ``environ``);
    ``--password VALUE`` (the value as the next word) is redacted too.
    """
    sep = "\0" if "\0" in text else "\n"
    words = text.split(sep)
    out = []
    secret_next = False
    for word in words:
        if secret_next and word and not word.startswith("-"):
            out.append(redacted(word))
            secret_next = False
            continue
        secret_next = sep == "\0" and word.startswith("-") and "=" not in word and bool(
            SECRET_KEY.search(word))
        out.append(_redact_word(word))
    return sep.join(out)


class SnapshotError(Exception):
    """The folder is not a snapshot this version can replay."""


class SnapshotRefused(SnapshotError):
    """The snapshot tries to reach outside itself, or holds a file over the size cap."""


# Exit status of a run refused because its snapshot is unsafe (distinct from pytest's 0-5).
REFUSED_EXIT = 7
MAX_READ = 16 * 1024 * 1024  # bytes one read of a snapshot file may return


def command_slug(argv: Sequence[str]) -> str:
    """The file name (without ``.json``) under which a command's result is kept."""
    shown = redact_argv(argv[:3])  # a secret among the first words must not name the file
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

    def _fs(self, path: str) -> Path:
        if not path.startswith("/") or os.path.basename(path) == LISTING_FILE:
            raise FileNotFoundError(path)
        return self.root / "fs" / path.lstrip("/")

    def _resolve(self, path: str) -> Path:
        """The file in the snapshot for a host path, its links followed inside the snapshot."""
        if not path.startswith("/"):
            raise FileNotFoundError(path)
        local = self.root / "fs" / _real_path(self.root / "fs", path).lstrip("/")
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
        return _read_capped(local, path)

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
        record = self.root / "cmd" / f"{command_slug(argv)}.json"
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
                raise SnapshotRefused(
                    f"{path}: more than {MAX_HOPS} symbolic links in a row; refused")
            dest = os.path.normpath(os.path.join(resolved, os.readlink(local)))
            resolved = _real_path(fs, dest, hops)
        else:
            resolved = here
    return resolved


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
                    real = os.path.realpath(fs / _real_path(fs, shown).lstrip("/"))
                    if _outside(real, fs_real):
                        raise SnapshotRefused(f"{shown} leads out of the snapshot; refused")
                elif local.is_file() and local.stat().st_size > MAX_READ:
                    raise SnapshotRefused(
                        f"{shown}: larger than {MAX_READ // (1024 * 1024)} MiB; refused")
    return fs_real
