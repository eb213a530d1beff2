"""Replay the host checks on a mutated copy of a base snapshot, in this process.

Typical use in a selftest::

    from selftests.snapshot_harness import copy_snapshot

    def test_no_ip_forward(tmp_path):
        snap = copy_snapshot("intel-2204-4gpu", tmp_path)
        snap.write("/proc/sys/net/ipv4/ip_forward", "0\\n")
        results = snap.run("test_network.py")
        assert results.failed == {"test_network.py::test_ip_forward_now"}
        assert "sysctl" in results.message("test_network.py::test_ip_forward_now")

Test ids are those of ``tests_host`` without the folder and without the node's name:
``test_gpu_vfio.py::test_function_on_vfio[0000:17:00.0]``, ``test_os.py::test_ubuntu_release``.
Outcomes: ``passed``, ``warned`` (passed with a WARN), ``failed``, ``skipped``, ``error``.
One pytest session runs per :meth:`Snapshot.run`; test modules stay imported between runs,
so a run costs a few tenths of a second.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

from dbc_accept.snapshot import command_slug
from dbc_accept.verdict import Finding

REPO = Path(__file__).resolve().parents[1]
TESTS_HOST = REPO / "tests_host"
BASE_SNAPSHOTS = REPO / "selftests" / "data" / "snapshots"


class Results(Dict[str, Tuple[str, str]]):
    """Test id -> (outcome, message) of one run."""

    def with_outcome(self, outcome: str, prefix: str = "") -> set[str]:
        return {k for k, (o, _) in self.items() if o == outcome and k.startswith(prefix)}

    @property
    def failed(self) -> set[str]:
        return self.with_outcome("failed")

    @property
    def warned(self) -> set[str]:
        return self.with_outcome("warned")

    @property
    def skipped(self) -> set[str]:
        return self.with_outcome("skipped")

    @property
    def errors(self) -> set[str]:
        return self.with_outcome("error")

    @property
    def not_passed(self) -> set[str]:
        return {k for k, (o, _) in self.items() if o != "passed"}

    def message(self, test_id: str) -> str:
        return self[test_id][1]

    def summary(self) -> str:
        """Every test that did not simply pass, with its message (for assertion output)."""
        return "\n".join(f"{o.upper()} {k}\n{m}" for k, (o, m) in sorted(self.items())
                         if o != "passed")


class _Collector:
    """Records each test's outcome and message as the nested session reports it."""

    def __init__(self, node_name: str) -> None:
        self.results = Results()
        self.prefix = node_name

    def key(self, nodeid: str) -> str:
        nodeid = nodeid[len("tests_host/"):] if nodeid.startswith("tests_host/") else nodeid
        head, sep, param = nodeid.partition("[")
        if not sep:
            return nodeid
        param = param[:-1]
        if param == self.prefix:
            return head
        prefix = self.prefix + "-"
        return f"{head}[{param[len(prefix):] if param.startswith(prefix) else param}]"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        key = self.key(report.nodeid)
        if report.when == "call":
            findings = [Finding(**f) for k, v in report.user_properties
                        if k == "dbc_findings" and isinstance(v, list) for f in v]
            if report.passed:
                outcome = "warned" if findings else "passed"
                self.results[key] = (outcome, "\n".join(f.render() for f in findings))
            else:
                outcome = "skipped" if report.skipped else "failed"
                self.results[key] = (outcome, _text(report.longrepr))
        elif report.skipped:
            self.results[key] = ("skipped", _text(report.longrepr))
        elif report.failed:
            self.results[key] = ("error", _text(report.longrepr))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.results[f"collect:{report.nodeid}"] = ("error", _text(report.longrepr))


def _text(longrepr: Any) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (file, line, reason)
        text = str(longrepr[2])
        return text[len("Skipped: "):] if text.startswith("Skipped: ") else text
    return str(longrepr)


def run_host_checks(snapshot: str | os.PathLike[str] | None, files: Sequence[str] = (),
                    extra_args: Sequence[str] = ()) -> Results:
    """Run `pytest -m host --snapshot DIR` on ``tests_host`` (or some of its files).

    With ``snapshot`` None the checks run on this machine (`pytest -m host`).
    """
    if snapshot is None:
        collector, where = _Collector("local"), []
    else:
        meta = json.loads((Path(snapshot) / "snapshot.json").read_text(encoding="utf-8"))
        collector = _Collector(f"snapshot:{meta.get('hostname') or Path(snapshot).name}")
        where = ["--snapshot", str(snapshot)]
    paths = [str(TESTS_HOST / f) for f in files] or [str(TESTS_HOST)]
    args = ["-m", "host", *where, "-q", "-p", "no:cacheprovider",
            "--no-report", "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"),
            *extra_args, *paths]
    # Options from the environment (`-n auto` for the selftests) are not for this run.
    saved = os.environ.pop("PYTEST_ADDOPTS", None)
    try:
        rc = pytest.main(args, plugins=[collector])
    finally:
        if saved is not None:
            os.environ["PYTEST_ADDOPTS"] = saved
    if rc not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not collector.results:
        raise RuntimeError(f"pytest {' '.join(args)} ended with {rc!r} and ran nothing")
    return collector.results


class Snapshot:
    """A writable copy of a snapshot folder, changed through host paths."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, host_path: str) -> Path:
        """Where a host path lives in the snapshot (`/proc/cmdline` -> DIR/fs/proc/cmdline)."""
        return self.root / "fs" / host_path.lstrip("/")

    def read(self, host_path: str) -> str:
        return self.path(host_path).read_text(encoding="utf-8")

    def _clear(self, local: Path) -> None:
        if local.is_symlink() or local.is_file():
            local.unlink()
        elif local.is_dir():
            shutil.rmtree(local)

    def write(self, host_path: str, text: str) -> Snapshot:
        """Create or replace a file (a link in the way is replaced, not followed)."""
        local = self.path(host_path)
        self._clear(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(text, encoding="utf-8")
        return self

    def append(self, host_path: str, text: str) -> Snapshot:
        local = self.path(host_path)
        local.parent.mkdir(parents=True, exist_ok=True)
        with local.open("a", encoding="utf-8") as fh:
            fh.write(text)
        return self

    def replace(self, host_path: str, old: str, new: str) -> Snapshot:
        """Replace text in a file; the old text must be there (a mutation that misses fails)."""
        text = self.read(host_path)
        if old not in text:
            raise AssertionError(f"{old!r} is not in {host_path} of {self.root}")
        self.path(host_path).write_text(text.replace(old, new), encoding="utf-8")
        return self

    def delete(self, host_path: str) -> Snapshot:
        """Remove a file, link or folder (it then reads as missing on the host)."""
        local = self.path(host_path)
        if not local.is_symlink() and not local.exists():
            raise AssertionError(f"{host_path} is not in {self.root}")
        self._clear(local)
        return self

    def link(self, host_path: str, dest: str) -> Snapshot:
        """Create or replace a symbolic link (``dest`` as the host would have it)."""
        local = self.path(host_path)
        self._clear(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(dest, local)
        return self

    def command(self, argv: Sequence[str], stdout: str = "", rc: int = 0,
                stderr: str = "") -> Snapshot:
        """Set what a command prints and how it ends."""
        record = self.root / "cmd" / f"{command_slug(argv)}.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"argv": list(argv), "rc": rc, "stdout": stdout,
                                      "stderr": stderr}), encoding="utf-8")
        return self

    def command_output(self, argv: Sequence[str]) -> str:
        record = self.root / "cmd" / f"{command_slug(argv)}.json"
        return str(json.loads(record.read_text(encoding="utf-8"))["stdout"])

    def drop_command(self, argv: Sequence[str]) -> Snapshot:
        """Remove a command's record: it then behaves as not installed (rc 127)."""
        (self.root / "cmd" / f"{command_slug(argv)}.json").unlink()
        return self

    def run(self, *files: str, extra_args: Sequence[str] = ()) -> Results:
        """Run the host checks (all of tests_host, or the named files) on this snapshot."""
        return run_host_checks(self.root, files, extra_args)


def copy_snapshot(name: str, tmp_path: Path) -> Snapshot:
    """A private copy of base snapshot ``name`` (a folder of selftests/data/snapshots)."""
    dest = tmp_path / name
    shutil.copytree(BASE_SNAPSHOTS / name, dest, symlinks=True)
    return Snapshot(dest)
