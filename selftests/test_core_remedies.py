"""Every check id the suite uses has an entry in the one remedies table."""

from __future__ import annotations

import ast
from pathlib import Path

from dbc_accept.remedies import REMEDIES, remedy_for

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("dbc_accept", "tests_host", "tests_vm", "benchmarks")
POSITION = {"check": 1, "fail": 0, "warn": 0}


def used_check_ids() -> dict[str, str]:
    """check id -> first place it is used, from check()/fail()/warn() calls."""
    found: dict[str, str] = {}
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "probes" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                    continue
                pos = POSITION.get(node.func.id)
                if pos is None or len(node.args) <= pos:
                    continue
                arg = node.args[pos]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.setdefault(arg.value, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_used_check_id_has_a_remedy() -> None:
    used = used_check_ids()
    assert used, "the scan found no checks at all"
    missing = {cid: where for cid, where in used.items() if cid not in REMEDIES}
    assert not missing, f"check ids without an entry in dbc_accept/remedies.py: {missing}"


def test_every_remedy_says_what_to_do() -> None:
    for cid, remedy in REMEDIES.items():
        assert len(remedy.fix) > 12, cid
        assert "." in cid, f"{cid}: ids are area.what"


def test_fix_text_names_the_guide_step() -> None:
    assert remedy_for("net.ip_forward").endswith("(install guide step 3 (三) 3)")
    assert "README" in remedy_for("no.such-check")
