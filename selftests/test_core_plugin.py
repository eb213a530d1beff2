"""The plugin's outcomes, per-node parametrization and usage errors, through pytester."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbc_accept.snapshot import FORMAT

CHECKS = '''
import pytest
from dbc_accept.plugin import each
from dbc_accept.verdict import FactError, check, warn

pytestmark = pytest.mark.host

def gather_cmdline(target):
    return target.read_text("/proc/cmdline")

def gather_broken(target):
    raise FactError("/proc/iomem", "garbage at line 3", verb="parse")

def functions(node):
    return [(name, name) for name in node.target.list_dir("/sys/bus/pci/devices")]

def no_items(node):
    return []

def test_pass(node):
    check("iommu=pt" in node.get(gather_cmdline), "iommu.cmdline", "x", "iommu=pt")

def test_warns(node):
    warn("cpu.ignore_msrs", observed="not set", expected="kvm.ignore_msrs=1")

def test_fails(node):
    check(False, "net.ip_forward", observed="0", expected="1")

def test_unreadable(node):
    node.get(gather_broken)

@each(functions, empty="no PCI function")
def test_per_item(node, entry):
    check(entry != "0000:02:00.0", "gpu.vfio_bound", observed=entry, expected="vfio-pci")

@each(no_items, empty="no NVIDIA GPU found")
def test_none(node, entry):
    check(False, "gpu.present", observed=entry, expected="never called")
'''


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    root = tmp_path / "snap"
    (root / "fs/proc").mkdir(parents=True)
    (root / "fs/proc/cmdline").write_text("intel_iommu=on iommu=pt\n")
    for bdf in ("0000:01:00.0", "0000:02:00.0"):
        (root / "fs/sys/bus/pci/devices" / bdf).mkdir(parents=True)
    (root / "snapshot.json").write_text(json.dumps({"format": FORMAT, "hostname": "n1"}))
    return root


def run(pytester: pytest.Pytester, snapshot: Path, *args: str) -> pytest.RunResult:
    pytester.makeini("[pytest]\nmarkers =\n    host: host checks\naddopts = --strict-markers\n")
    pytester.makepyfile(test_checks=CHECKS)
    return pytester.runpytest_inprocess(
        "-p", "dbc_accept.plugin", f"--snapshot={snapshot}", "--no-report", "-rs", *args)


def test_outcomes_ids_and_summary(pytester: pytest.Pytester, snapshot: Path) -> None:
    result = run(pytester, snapshot, "-v")
    result.assert_outcomes(passed=3, failed=3, skipped=1)
    result.stdout.fnmatch_lines([
        "*test_pass[[]snapshot:n1[]] PASSED*",
        "*test_warns[[]snapshot:n1[]] WARN*",
        "*test_per_item[[]snapshot:n1-0000:01:00.0[]] PASSED*",
        "*test_per_item[[]snapshot:n1-0000:02:00.0[]] FAILED*",
        "*dbc-accept: what to fix*",
        "*FAIL fix:*sysctl*",
        "*FAIL test_checks.py::test_fails [[]net.ip_forward[]] observed: 0; expected: 1",
        "*WARN fix:*kvm.ignore_msrs=1*",
        "*WARN test_checks.py::test_warns*",
        "*SKIPPED*snapshot:n1: no NVIDIA GPU found*",
    ])


def test_unreadable_fact_fails_cleanly(pytester: pytest.Pytester, snapshot: Path) -> None:
    result = run(pytester, snapshot)
    result.stdout.fnmatch_lines(["*could not parse /proc/iomem: garbage at line 3*"])
    assert "Traceback" not in result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str()


def test_unreadable_items_fail_the_per_item_test(pytester: pytest.Pytester, tmp_path: Path,
                                                  snapshot: Path) -> None:
    import shutil

    shutil.rmtree(snapshot / "fs/sys")
    result = run(pytester, snapshot, "-v", "-k", "per_item")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_per_item[[]snapshot:n1-unreadable[]] FAILED*"])


def test_bad_snapshot_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old/snapshot.json").write_text('{"format": 0}')
    result = run(pytester, tmp_path / "old")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*this version reads format 1*dbc-accept snapshot*"])
    missing = run(pytester, tmp_path / "nowhere")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*--snapshot*no such folder*"])


def test_unknown_marker_is_refused(pytester: pytest.Pytester, snapshot: Path) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    host: host checks\naddopts = --strict-markers\n")
    pytester.makepyfile(test_x="import pytest\n@pytest.mark.hots\ndef test_a():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "dbc_accept.plugin", "--no-report")
    result.stdout.fnmatch_lines(["*'hots' not found in `markers`*"])
