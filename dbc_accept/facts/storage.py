"""(二) The data disk and host memory: /data on XFS with ftype=1 and project quotas.

Sources: /proc/self/mountinfo, `xfs_info /data`, /etc/fstab, a write probe under /data,
`df -B1`, /proc/meminfo. check_env refuses a node whose /data is 350 GiB or less (it
reads `df -m` and divides by 1024) or whose RAM is 32 GiB or less (`free -k`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dbc_accept import inline
from dbc_accept.facts import read
from dbc_accept.target import Target
from dbc_accept.verdict import FactError

DATA = "/data"
GIB = 1024**3
# The write probe (dbc_accept.inline) creates and removes one hidden file in $1.
WRITE_PROBE = inline.PROBES["data-write"].text


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo."""

    mount_point: str
    fstype: str
    source: str
    options: tuple[str, ...]  # per-mount options (rw, relatime, ...)
    super_options: tuple[str, ...]  # file-system options (prjquota, ...)

    @property
    def all_options(self) -> tuple[str, ...]:
        return self.options + self.super_options


@dataclass(frozen=True)
class FstabEntry:
    spec: str
    mount_point: str
    fstype: str
    options: tuple[str, ...]
    line: str


@dataclass(frozen=True)
class XfsInfo:
    ftype: int | None
    block_size: int | None
    data_blocks: int | None


@dataclass(frozen=True)
class WriteProbe:
    written: bool
    mode: str  # octal, as `stat -c %a` prints it; "" when unknown
    owner: str
    error: str


def _unescape(field: str) -> str:
    """Undo the kernel's octal escapes (\\040 for a space) in mount paths."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse proc(5) mountinfo: `id parent maj:min root point opts [tags] - type src super`."""
    mounts: list[Mount] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if "-" not in fields[6:]:
            raise ValueError(f"line {number}: no ' - ' separator: {line!r}")
        sep = fields.index("-", 6)
        tail = fields[sep + 1:]
        if len(tail) < 2 or len(fields) < 6:
            raise ValueError(f"line {number}: too few fields: {line!r}")
        supers = tuple(tail[2].split(",")) if len(tail) > 2 else ()
        mounts.append(Mount(_unescape(fields[4]), tail[0], _unescape(tail[1]),
                            tuple(fields[5].split(",")), supers))
    if not mounts:
        raise ValueError("no mounts listed")
    return mounts


def mount_of(mounts: list[Mount], path: str) -> Mount | None:
    """The mount whose mount point is exactly ``path`` (the last one wins, as in the kernel)."""
    found = [m for m in mounts if m.mount_point == path]
    return found[-1] if found else None


def parse_fstab(text: str) -> list[FstabEntry]:
    """Parse fstab(5); lines with fewer than 3 fields are skipped (mount(8) rejects them)."""
    entries = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 3:
            continue
        opts = tuple(fields[3].split(",")) if len(fields) > 3 else ("defaults",)
        entries.append(FstabEntry(_unescape(fields[0]), _unescape(fields[1]).rstrip("/") or "/",
                                  fields[2], opts, line))
    return entries


def parse_xfs_info(text: str) -> XfsInfo:
    """Read ftype and the data section's size from `xfs_info` output."""
    if "meta-data=" not in text:
        raise ValueError("no 'meta-data=' section: not xfs_info output")
    ftype = re.search(r"\bftype=(\d+)", text)
    data = re.search(r"^data\s*=.*?\bbsize=(\d+)\s+blocks=(\d+)", text, re.MULTILINE)
    return XfsInfo(
        ftype=int(ftype.group(1)) if ftype else None,
        block_size=int(data.group(1)) if data else None,
        data_blocks=int(data.group(2)) if data else None,
    )


def parse_df_size(text: str, path: str = DATA) -> int:
    """The size in bytes from `df -B1 --output=size,target PATH`."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2 or not lines[0] or lines[0][0] != "1B-blocks":
        raise ValueError("expected a '1B-blocks Mounted on' header and one line")
    size = lines[1][0]
    if not size.isdigit():
        raise ValueError(f"size {size!r} is not a number")
    return int(size)


def parse_write_probe(stdout: str, rc: int, stderr: str) -> WriteProbe:
    """Interpret the write probe's output (see WRITE_PROBE)."""
    fields = dict(f.split("=", 1) for f in stdout.split() if "=" in f)
    error = "" if rc == 0 else (stderr.strip().splitlines() or [f"exit status {rc}"])[-1]
    return WriteProbe(written=rc == 0 and fields.get("written") == "1",
                      mode=fields.get("mode", ""), owner=fields.get("owner", ""), error=error)


def parse_meminfo_total(text: str) -> int:
    """MemTotal from /proc/meminfo, in bytes."""
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    if not match:
        raise ValueError("no 'MemTotal: N kB' line")
    return int(match.group(1)) * 1024


def gather_mounts(target: Target) -> list[Mount]:
    path = "/proc/self/mountinfo"
    try:
        return parse_mountinfo(read(target, path))
    except ValueError as exc:
        raise FactError(path, str(exc), verb="parse") from None


def gather_fstab(target: Target) -> list[FstabEntry]:
    return parse_fstab(read(target, "/etc/fstab"))


def gather_xfs_info(target: Target, path: str = DATA) -> XfsInfo:
    out = target.run(["xfs_info", path])
    if not out.ok:
        raise FactError(f"`xfs_info {path}`", out.describe())
    try:
        return parse_xfs_info(out.stdout)
    except ValueError as exc:
        raise FactError(f"`xfs_info {path}` output", str(exc), verb="parse") from None


def gather_size(target: Target, path: str = DATA) -> int:
    out = target.run(["df", "-B1", "--output=size,target", path])
    if not out.ok:
        raise FactError(f"`df {path}`", out.describe())
    try:
        return parse_df_size(out.stdout, path)
    except ValueError as exc:
        raise FactError(f"`df {path}` output", str(exc), verb="parse") from None


def gather_write_probe(target: Target, path: str = DATA) -> WriteProbe:
    out = target.run(inline.argv("data-write", "sh", path))
    if out.rc in (126, 127):
        raise FactError(f"the write probe of {path}", out.describe())
    return parse_write_probe(out.stdout, out.rc, out.stderr)


def gather_memory(target: Target) -> int:
    """Host RAM in bytes."""
    try:
        return parse_meminfo_total(read(target, "/proc/meminfo"))
    except ValueError as exc:
        raise FactError("/proc/meminfo", str(exc), verb="parse") from None


GATHERERS = [gather_mounts, gather_fstab, gather_xfs_info, gather_size, gather_write_probe,
             gather_memory]
