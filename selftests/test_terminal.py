"""The terminal tells one story: each finding once, fixes grouped root causes first, and a
last line that counts PASS, FAIL, WARN and SKIP and gives the node's verdict."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dbc_accept.guide import numeral, readable, step_number
from dbc_accept.remedies import REMEDIES, remedy_for
from dbc_accept.story import Tally, group_findings, short_id
from dbc_accept.verdict import Finding
from selftests.snapshot_harness import REPO, TESTS_HOST, Snapshot, copy_snapshot
from selftests.test_faults_host_b import dbc_gone
from selftests.test_prereqs import PROBE_ARGV

VERDICT = re.compile(r"^dbc-accept: \d+ PASS, \d+ FAIL, \d+ WARN, \d+ SKIP: "
                     r"(READY|READY WITH WARNINGS|NOT READY)$")


def _f(check: str, observed: str = "x", level: str = "fail") -> Finding:
    return Finding(check, level, observed, "y", remedy_for(check), "n1")  # type: ignore[arg-type]


def test_groups_one_fix_once_root_causes_first() -> None:
    found = [("a::t1", _f("storage.mount")), ("a::t2", _f("storage.mount")),
             ("a::t3", _f("cpu.ignore_msrs", level="warn")), ("a::t4", _f("libvirtd.connect")),
             ("a::t5", _f("virt.packages")), ("a::t1", _f("storage.mount"))]
    groups = group_findings(found)
    assert [g.checks for g in groups] == [["virt.packages"], ["libvirtd.connect"],
                                          ["storage.mount"], ["cpu.ignore_msrs"]]
    assert [len(g.findings) for g in groups] == [1, 1, 2, 1]
    assert [g.level for g in groups] == ["fail", "fail", "fail", "warn"]
    assert len(groups[2].alike()) == 1  # the same observation: one line for both tests


def test_tally_and_verdict() -> None:
    tally = Tally()
    tally.add("t1", "call", "passed", False)
    assert tally.verdict() == "READY"
    tally.add("t2", "call", "passed", True)
    tally.add("t3", "setup", "skipped", False)
    assert tally.verdict() == "READY WITH WARNINGS"
    tally.add("t1", "teardown", "failed", False)
    assert tally.verdict() == "NOT READY"
    assert VERDICT.match(tally.line())
    assert tally.line() == "dbc-accept: 0 PASS, 1 FAIL, 1 WARN, 1 SKIP: NOT READY"
    assert Tally().verdict() == "NOT READY"  # nothing checked is not ready


def test_short_ids_and_guide_steps() -> None:
    assert short_id("tests_host/test_os.py::test_x[local]", "local") == "test_os.py::test_x"
    assert short_id("tests_host/t.py::f[ssh://n-1-a-b]", "ssh://n-1") == "t.py::f[a-b]"
    assert short_id("tests_host/t.py::f[ssh://n-1-a]", "ssh://n-1", 2) == "t.py::f[ssh://n-1-a]"
    assert [numeral(x) for x in ("一", "十", "十二", "十五", "二十", "x")] == [1, 10, 12, 15, 20,
                                                                           None]
    assert readable("(三) vfio") == "step 3 (三) vfio"
    assert readable("(十二)", ascii_only=True) == "step 12"
    assert step_number("(四) 1") == 4
    for remedy in REMEDIES.values():
        assert not re.search(r"[^\x00-\x7f]", readable(remedy.step, ascii_only=True))


def _no_libvirt(snap: Snapshot) -> Snapshot:
    status = snap.read("/var/lib/dpkg/status")
    kept = [b for b in status.split("\n\n") if not re.match(r"Package: (libvirt|qemu)", b)]
    snap.write("/var/lib/dpkg/status", "\n\n".join(kept))
    snap.delete("/etc/libvirt/libvirtd.conf")
    snap.command(PROBE_ARGV, '{"connected": false, "error_code": -1, "error": '
                 '"cannot import libvirt: No module named \'libvirt\'"}\n')
    return snap


def _pytest(snap: Path, *args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "host", "-p", "no:cacheprovider", "--no-report",
         f"--snapshot={snap}", *args, str(TESTS_HOST)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    return out.stdout.splitlines()


@pytest.fixture
def broken(tmp_path: Path) -> Snapshot:
    """A node without libvirt, without its dbc program and with /data missing."""
    snap = _no_libvirt(copy_snapshot("intel-2204-4gpu", tmp_path))
    dbc_gone(snap)
    snap.replace("/proc/self/mountinfo", " /data ", " /data-gone ")
    return snap


def test_each_finding_once_fixes_grouped_and_the_verdict_last(broken: Snapshot) -> None:
    lines = _pytest(broken.root)
    text = "\n".join(lines)
    assert len(lines) <= 120, text
    assert "FAILURES" not in text, text
    assert "short test summary" not in text, text
    fixes = [line for line in lines if re.match(r"^ *\d+\. (FAIL|WARN) fix: ", line)]
    assert len(fixes) == len(set(fixes)) >= 3, text
    assert "virt.packages" in lines[lines.index(fixes[0]) + 1], text  # the root cause first
    assert text.count("[libvirtd.") == 0, text  # every libvirtd check skips behind it
    assert VERDICT.match(lines[-1]) and lines[-1].endswith(": NOT READY"), lines[-1]


def test_verbose_keeps_pytest_detail(broken: Snapshot) -> None:
    text = "\n".join(_pytest(broken.root, "-v", "-rA"))
    assert "FAILURES" in text and "short test summary" in text and "PASSED" in text


def test_a_node_with_warnings_only(tmp_path: Path) -> None:
    lines = _pytest(copy_snapshot("intel-2204-4gpu", tmp_path).root)
    assert lines[-1].endswith(": READY WITH WARNINGS") and " 0 FAIL" in lines[-1], lines[-8:]
