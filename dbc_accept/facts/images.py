"""(六) VM images in /data and what a test run may leave there.

The template is checked by its qcow2 header (docs/interop/qcow2.txt in qemu): magic
``QFI\\xfb``, version 2 or 3, the backing file's offset and length, cluster bits, the
virtual size, encryption, and (version 3) the incompatible feature bits. The first bytes
are read with ``od`` so that a remote node needs nothing but coreutils.
"""

from __future__ import annotations

import fnmatch
import struct
from dataclasses import dataclass

from dbc_accept.facts import list_optional
from dbc_accept.target import Target
from dbc_accept.verdict import FactError

MAGIC = b"QFI\xfb"
HEADER_BYTES = 1024  # the header, its extensions and the backing file name
DATA = "/data"
TEMPLATE = "/data/ubuntu.qcow2"
# check_env copies its template to <image minus extension>_domain_test.<ext> (so
# /data/ubuntu_domain_test.qcow2) and makes /data/data_1_domain_test.qcow2; this tool's
# overlays are /data/dbc-accept-*.qcow2.
STALE_PATTERNS = ("*_domain_test.qcow2", "dbc-accept-*.qcow2")
INCOMPATIBLE = {0: "dirty", 1: "corrupt", 2: "external data file", 3: "compression type",
                4: "extended L2"}


@dataclass(frozen=True)
class Qcow2Header:
    version: int
    virtual_size: int
    cluster_bits: int
    crypt_method: int
    backing_file: str | None
    incompatible: tuple[str, ...]  # names of the set incompatible feature bits


def parse_qcow2_header(data: bytes) -> Qcow2Header:
    """Decode a qcow2 header from the file's first bytes; ValueError if it is not one."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise ValueError(f"not a qcow2 image: starts with {data[:4]!r}, not {MAGIC!r}")
    if len(data) < 72:
        raise ValueError(f"qcow2 header truncated at {len(data)} bytes")
    (_, version, backing_off, backing_len, cluster_bits, size, crypt) = struct.unpack(
        ">IIQIIQI", data[:36])
    if version not in (2, 3):
        raise ValueError(f"qcow2 version {version}; qemu reads 2 and 3")
    if not 9 <= cluster_bits <= 21:
        raise ValueError(f"cluster_bits {cluster_bits} outside 9-21")
    incompatible: tuple[str, ...] = ()
    if version == 3:
        if len(data) < 80:
            raise ValueError("qcow2 v3 header truncated")
        bits = struct.unpack(">Q", data[72:80])[0]
        incompatible = tuple(INCOMPATIBLE.get(b, f"bit {b}") for b in range(64) if bits >> b & 1)
    backing: str | None = None
    if backing_off:
        if backing_len > 1023:
            raise ValueError(f"backing file name of {backing_len} bytes (qemu allows 1023)")
        end = backing_off + backing_len
        backing = (data[backing_off:end].decode("utf-8", "replace") if end <= len(data)
                   else f"(at byte {backing_off}, beyond the bytes read)")
    return Qcow2Header(version, size, cluster_bits, crypt, backing, incompatible)


def parse_od_bytes(text: str) -> bytes:
    """The bytes of `od -An -v -tx1` output (hex pairs separated by blanks)."""
    try:
        return bytes.fromhex(" ".join(text.split()))
    except ValueError as exc:
        raise ValueError(f"not od hex output: {exc}") from None


@dataclass(frozen=True)
class ImageFile:
    """What reading an image's first bytes found: the header, or why there is none."""

    path: str
    present: bool
    error: str = ""  # could not read it (permission, I/O error)
    header: Qcow2Header | None = None
    invalid: str = ""  # read, but not a usable qcow2 header


def gather_image(target: Target, path: str) -> ImageFile:
    folder, _, name = path.rpartition("/")
    if name not in list_optional(target, folder or "/"):
        return ImageFile(path, present=False)
    out = target.run(["od", "-An", "-v", "-tx1", "-N", str(HEADER_BYTES), "--", path])
    if out.rc == 127:
        raise FactError(f"`od {path}`", out.describe())
    if not out.ok:
        return ImageFile(path, True, error=out.describe())
    try:
        return ImageFile(path, True, header=parse_qcow2_header(parse_od_bytes(out.stdout)))
    except ValueError as exc:
        return ImageFile(path, True, invalid=str(exc))


def stale_disks(names: list[str], folder: str = DATA) -> list[str]:
    return [f"{folder}/{n}" for n in names if any(fnmatch.fnmatch(n, p) for p in STALE_PATTERNS)]


def gather_stale_disks(target: Target) -> list[str]:
    """Test disks left in /data by check_env or by this tool."""
    return stale_disks(list_optional(target, DATA))


def gather_template(target: Target) -> ImageFile:
    return gather_image(target, TEMPLATE)


GATHERERS = [gather_template, gather_stale_disks]
