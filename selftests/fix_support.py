"""Helpers of the `dbc-accept fix` selftests: write a script for a snapshot, read its steps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dbc_accept.cli import main
from selftests.snapshot_harness import Snapshot

STEP_HEAD = re.compile(r"^# --- step (\d+) of (\d+): (.*)$")
BACKUP = Path(__file__).resolve().parent / "data" / "hostb" / "node.dat"  # the snapshots' node


@dataclass
class ScriptStep:
    title: str
    checks: str  # the comment line naming the checks and guide steps
    body: list[str]


def write_fix(snap: Snapshot, *args: str, backup: bool = True) -> str:
    """`dbc-accept fix --snapshot` on ``snap``; the script's text."""
    out = snap.root.parent / f"{snap.root.name}-fix.sh"
    extra = ["--node-dat-backup", str(BACKUP)] if backup else []
    rc = main(["fix", "--snapshot", str(snap.root), "-o", str(out), "-q", *extra, *args])
    assert rc == 0, f"dbc-accept fix ended with {rc}"
    return out.read_text(encoding="utf-8")


def steps(text: str) -> list[ScriptStep]:
    found: list[ScriptStep] = []
    lines = text.splitlines()
    for number, line in enumerate(lines):
        head = STEP_HEAD.match(line)
        if not head:
            continue
        body = []
        for after in lines[number + 2:]:
            if not after or after.startswith("# ---") or after.startswith("if [ -e"):
                break
            if not after.startswith("echo 'step ") and not after.startswith("#"):
                body.append(after)
        found.append(ScriptStep(head.group(3), lines[number + 1], body))
    return found


def commands(text: str) -> list[str]:
    """Every line of every step."""
    return [line for step in steps(text) for line in step.body]


def notes(text: str) -> str:
    """The comments for a person, as one text."""
    start = text.find("# === needs a person")
    if start < 0:
        return ""
    end = text.find("\n\n", start)
    return text[start:end]
