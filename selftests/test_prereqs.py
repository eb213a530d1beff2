"""Prerequisites: declared once, each with an owner that fails; everything behind it skips.

A missing prerequisite (libvirt, libvirtd, systemd, the dbc folder, the host itself) fails its
owner test with the fix and no other test under another id.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

from dbc_accept.facts.libvirtconn import DEFAULT_URI, PROBE
from dbc_accept.prereqs import PREREQUISITES, chain
from dbc_accept.remedies import REMEDIES
from selftests.snapshot_harness import REPO, TESTS_HOST, copy_snapshot
from selftests.test_faults_host_b import dbc_gone

PROBE_ARGV = ["python3", "-c", PROBE, DEFAULT_URI]
LIBVIRT_OWNER = PREREQUISITES["libvirt"].owner


def _required_names() -> set[str]:
    """Every name given to @pytest.mark.requires(...) in tests_host."""
    names: set[str] = set()
    for path in TESTS_HOST.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "requires" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                names.add(str(node.args[0].value))
    return names


def test_every_requirement_is_declared_with_an_owner_and_a_fix(tmp_path: Path) -> None:
    used = _required_names()
    assert used and used <= set(PREREQUISITES), used - set(PREREQUISITES)
    results = copy_snapshot("intel-2204-4gpu", tmp_path).run()
    for pre in PREREQUISITES.values():
        assert pre.owner in results, f"{pre.name}: owner {pre.owner} is not a host test"
        assert results[pre.owner][0] == "passed", results.summary()
        assert pre.check_id in REMEDIES
    assert [p.name for p in chain(["libvirtd"])] == ["libvirt", "libvirtd"]


def _check_ids(results: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Failed test id -> the check id in its message."""
    return {k: m.split("[", 1)[1].split("]", 1)[0] for k, (o, m) in results.items()
            if o == "failed" and "[" in m}


def test_without_libvirt_only_the_package_check_fails(tmp_path: Path) -> None:
    snap = copy_snapshot("intel-2204-4gpu", tmp_path)
    snap.replace("/var/lib/dpkg/status",
                 "Package: libvirt-daemon-system\nStatus: install ok installed",
                 "Package: libvirt-daemon-system\nStatus: deinstall ok config-files")
    snap.delete("/etc/libvirt/libvirtd.conf")
    snap.command(PROBE_ARGV, '{"connected": false, "error_code": 38, "error": "refused"}\n')
    results = snap.run()
    assert _check_ids(results) == {LIBVIRT_OWNER: "virt.packages"}, results.summary()
    behind = {k for k, (o, m) in results.items() if o == "skipped" and LIBVIRT_OWNER in m}
    for test in ("test_libvirtd.py::test_libvirt_connects",
                 "test_libvirtd.py::test_libvirt_offers_kvm",
                 "test_security.py::test_libvirtd_not_open_to_the_network",
                 "test_virt_parity.py::test_default_network",
                 "test_leftovers.py::test_no_test_domain",
                 "test_libvirtd.py::test_libvirtd_active"):
        assert test in behind, results.summary()


def test_without_systemd_the_service_checks_skip(tmp_path: Path) -> None:
    snap = copy_snapshot("intel-2204-4gpu", tmp_path)
    gone = "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
    for verb in ("is-active", "is-enabled"):
        snap.command(["systemctl", verb, "libvirtd.service"], "", rc=1, stderr=gone)
    results = snap.run("test_os.py", "test_libvirtd.py")
    assert _check_ids(results) == {"test_os.py::test_systemd_runs": "host.systemd"}
    for test in ("test_libvirtd_active", "test_libvirtd_enabled"):
        outcome, message = results[f"test_libvirtd.py::{test}"]
        assert outcome == "skipped" and "test_os.py::test_systemd_runs" in message, message


def test_without_a_dbc_folder_the_cross_node_check_skips(tmp_path: Path) -> None:
    snap = copy_snapshot("intel-2204-4gpu", tmp_path)
    dbc_gone(snap)
    results = snap.run("test_dbc_node.py", "test_dbc_network.py")
    ids = _check_ids(results)
    assert ids.get("test_dbc_node.py::test_dbc_install_folder") == "dbc.install_dir", ids
    assert list(ids.values()).count("dbc.install_dir") == 1, results.summary()
    outcome, message = results["test_dbc_network.py::test_ports_distinct_across_dbc_nodes"]
    assert outcome == "skipped" and PREREQUISITES["dbc_dir"].owner in message, message


def test_unreachable_host_is_one_failure_in_seconds(tmp_path: Path) -> None:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "host", "-p", "no:cacheprovider", "-q",
         "--no-report", "--hosts=ssh://root@nonexistent.invalid", str(TESTS_HOST)],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    assert took < 5, f"{took:.1f} s\n{out.stdout[-3000:]}"
    assert "1 failed" in out.stdout or "1 FAIL" in out.stdout, out.stdout[-3000:]
    assert out.stdout.count("[node.reachable]") <= 1, out.stdout[-3000:]
    assert "test_os.py::test_host_reachable" in out.stdout, out.stdout[-3000:]
