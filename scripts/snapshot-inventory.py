#!/usr/bin/env python3
"""Print every path and command the host checks read, for docs/snapshot.md.

The list is the union of (1) a recording of this machine: every registered gatherer run
once through a recording target, as `dbc-accept snapshot` does, and (2) the files, links
and commands of the good snapshots in selftests/data/snapshots/. Process ids, PCI
addresses, IOMMU group numbers and the dbc install folder are written as placeholders.
Run from the repository root: ``.venv/bin/python scripts/snapshot-inventory.py``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dbc_accept import inline  # noqa: E402 - after the path is set
from dbc_accept.recording import capture  # noqa: E402
from dbc_accept.snapshot import LISTING_FILE  # noqa: E402
from dbc_accept.target import LocalTarget  # noqa: E402

SNAPSHOTS = ROOT / "selftests" / "data" / "snapshots"
PLACEHOLDERS = [
    (re.compile(r"^/proc/\d+(?=/|$)"), "/proc/<pid>"),
    (re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]"), "<bdf>"),
    (re.compile(r"/pci[0-9a-f]{4}:[0-9a-f]{2}(?=/)"), "/pci<domain:bus>"),
    (re.compile(r"(/<bdf>)+"), "/<bdf>"),  # a device under its bridges: one level shown
    (re.compile(r"/iommu_groups/\d+"), "/iommu_groups/<group>"),
    (re.compile(r"^.*(?=/(conf/core\.conf|dat/node\.dat|conf|dat|dbc)$)"), "<dbc folder>"),
]


def general(path: str, dbc_folders: set[str]) -> str:
    """``path`` with its machine-specific parts as placeholders."""
    if path in dbc_folders:
        return "<dbc folder>"
    for pattern, placeholder in PLACEHOLDERS:
        path = pattern.sub(placeholder, path)
    return path


def command_line(argv: list[str]) -> str:
    """An argv for reading: an in-line probe by its key, another in-line script named."""
    shown = []
    for word in inline.stable_key(argv) or argv:
        if "\n" in word:
            first = next((ln.strip() for ln in word.splitlines() if ln.strip()), "")
            shown.append(f"'<in-line script: {first[:40]}...>'")
        else:
            shown.append(word if re.fullmatch(r"[\w@%+=:,./-]+", word) else repr(word))
    return " ".join(shown)


def from_recording() -> tuple[set[str], set[str], set[str], set[str]]:
    rec = capture(LocalTarget())
    return set(rec.files), set(rec.links), set(rec.listings), {
        command_line(list(argv)) for argv in rec.commands}


def from_snapshots() -> tuple[set[str], set[str], set[str], set[str]]:
    files: set[str] = set()
    links: set[str] = set()
    listed: set[str] = set()
    commands: set[str] = set()
    for snap in sorted(p for p in SNAPSHOTS.iterdir() if (p / "snapshot.json").is_file()):
        fs = snap / "fs"
        for path in fs.rglob("*"):
            host = "/" + str(path.relative_to(fs))
            if path.name == LISTING_FILE:
                listed.add(str(Path(host).parent))
            elif path.is_symlink():
                links.add(host)
            elif path.is_file():
                files.add(host)
        for record in (snap / "cmd").glob("*.json"):
            commands.add(command_line(json.loads(record.read_text())["argv"]))
    return files, links, listed, commands


def main() -> int:
    sets = [a | b for a, b in zip(from_recording(), from_snapshots())]
    files, links, listed, commands = sets
    dbc_folders = {p.rsplit("/conf/core.conf", 1)[0] for p in files if p.endswith(
        "/conf/core.conf")}
    for title, found in (("Files read", files), ("Links read", links),
                         ("Folders listed", listed)):
        print(f"### {title}\n")
        for path in sorted({general(p, dbc_folders) for p in found}):
            print(f"- `{path}`")
        print()
    print("### Commands run\n")
    for line in sorted(commands):
        print(f"- `{line}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
