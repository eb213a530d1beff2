"""The operating system and memory: /etc/os-release, /proc/meminfo."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from dbc_accept.target import Target
from dbc_accept.verdict import FactError


@dataclass(frozen=True)
class OsRelease:
    id: str
    version_id: str
    pretty_name: str


def parse_os_release(text: str) -> OsRelease:
    """Parse os-release(5): KEY=value lines, values possibly shell-quoted."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:
            parts = [raw.strip("\"'")]
        values[key.strip()] = parts[0] if parts else ""
    if "ID" not in values:
        raise ValueError("no ID= line")
    return OsRelease(values["ID"].lower(), values.get("VERSION_ID", ""),
                     values.get("PRETTY_NAME", ""))


def gather_os_release(target: Target) -> OsRelease:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            text = target.read_text(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise FactError(path, str(exc)) from None
        try:
            return parse_os_release(text)
        except ValueError as exc:
            raise FactError(path, str(exc), verb="parse") from None
    raise FactError("/etc/os-release", "no such file")
GATHERERS = [gather_os_release]
