"""A bare key in the node.dat of the dbc program running here reaches no artifact.

It starts a process named ``dbc``: other selftests that look at this machine's processes must
not run meanwhile, so the portable runs on two workers leave it out (see conftest.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from selftests.test_report import all_text

ROOT = Path(__file__).resolve().parent.parent


def _fake_dbc(folder: Path) -> subprocess.Popen[bytes]:
    """A process named dbc whose executable sits in ``folder`` (as the installer lays it)."""
    shutil.copy(shutil.which("sleep") or "/bin/sleep", folder / "dbc")
    proc = subprocess.Popen([str(folder / "dbc"), "120"])
    for _ in range(50):
        try:
            if os.readlink(f"/proc/{proc.pid}/exe") == str(folder / "dbc"):
                break
        except OSError:
            pass
        time.sleep(0.05)
    return proc


def test_a_bare_key_of_the_running_nodes_node_dat_leaks_nowhere(tmp_path: Path) -> None:
    bare = "BareKeyOnItsOwnLine0123456789abcdef"
    folder = tmp_path / "dbc_repo"
    (folder / "dat").mkdir(parents=True)
    (folder / "conf").mkdir()
    (folder / "conf" / "core.conf").write_text("net_listen_port=5001\nhttp_port=5002\n")
    (folder / "dat" / "node.dat").write_text(f"node_id=2gfpp3MAB4Aa\n{bare}\n")
    proc = _fake_dbc(folder)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir",
             str(ROOT), "-m", "host", "-p", "no:randomly", "-k", "node_dat", "-rA",
             "--report-dir", str(tmp_path / "out"), str(ROOT / "tests_host")],
            capture_output=True, text=True, cwd=ROOT, check=False, timeout=300)
    finally:
        proc.kill()
        proc.wait()
    terminal = out.stdout + out.stderr
    assert "node.dat line 2: expected key=value" in terminal, terminal[-3000:]
    assert bare not in terminal
    report = only_folder_any(tmp_path / "out")
    assert {"report.html", "junit.xml", "results.json"} <= {p.name for p in report.iterdir()}
    assert bare not in all_text(report)


def only_folder_any(out: Path) -> Path:
    folders = list(out.iterdir())
    assert len(folders) == 1, folders
    return folders[0]
