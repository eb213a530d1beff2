"""Options as users type them: `--opt VALUE` gives the same run as `--opt=VALUE`.

pytest finds its configuration before it loads plugins: without the plugin's entry point (and
the suite's configuration taken again, `dbc_accept.rootdir`), `--snapshot DIR` made DIR a
test path and the run was rooted there.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = sorted(p for p in (ROOT / "selftests" / "data" / "snapshots").iterdir() if p.is_dir())


def _outcomes(junit: Path) -> dict[str, str]:
    """test id -> passed / failed / skipped / error, from pytest's own junit.xml."""
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        found[f"{case.get('classname')}::{case.get('name')}"] = kinds[0] if kinds else "passed"
    return found


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-m", "host", "-q", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=[p.name for p in SNAPSHOTS])
def test_space_form_gives_the_same_outcomes(snapshot: Path, tmp_path: Path) -> None:
    outside = tmp_path / "snap"  # a folder outside the checkout, as an owner's would be
    shutil.copytree(snapshot, outside, symlinks=True)
    reference = _run(ROOT, f"--snapshot={outside}", "--no-report",
                     f"--junitxml={tmp_path / 'equals.xml'}")
    assert reference.returncode in (0, 1), reference.stdout + reference.stderr
    expected = _outcomes(tmp_path / "equals.xml")
    assert len(expected) > 50

    spaced = _run(ROOT, "--snapshot", str(outside), "--report-dir", str(tmp_path / "reports"),
                  "--junitxml", str(tmp_path / "space.xml"))
    assert spaced.returncode == reference.returncode, spaced.stdout + spaced.stderr
    assert _outcomes(tmp_path / "space.xml") == expected
    assert list((tmp_path / "reports").glob("*/results.json")), "--report-dir DIR was not used"

    elsewhere = tmp_path / "elsewhere"  # another working directory, the tests named
    elsewhere.mkdir()
    other = _run(elsewhere, str(ROOT / "tests_host"), "--snapshot", str(outside), "--no-report",
                 "--junitxml", str(tmp_path / "elsewhere.xml"))
    assert other.returncode == reference.returncode, other.stdout + other.stderr
    assert _outcomes(tmp_path / "elsewhere.xml") == expected
