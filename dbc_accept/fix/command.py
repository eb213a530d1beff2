"""`dbc-accept fix`: run the host checks, write the script, and with --apply run its steps.

The host checks run in this process (``pytest -m host`` on the folder tests_host of this
checkout), on this machine, on ``--hosts`` or on ``--snapshot DIR``; their findings are
read from the reports, never from the printed text.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from dbc_accept.facts import HostFacts, NodeOptions
from dbc_accept.facts.libvirtconn import DEFAULT_URI
from dbc_accept.fix.resolve import Plan, Step, plan
from dbc_accept.fix.script import render, step_header, step_script
from dbc_accept.target import Target
from dbc_accept.verdict import FactError, Finding

REPO = Path(__file__).resolve().parents[2]
TESTS_HOST = REPO / "tests_host"
DEFAULT_OUT = "dbc-accept-fix.sh"
STEP_TIMEOUT = 3600.0  # apt-get install, update-initramfs -k all


def add_parser(sub: Any, usage_error: type[Exception]) -> None:
    fix = sub.add_parser(
        "fix", help="write one shell script that fixes what the host checks found",
        description="Run the host checks (this machine, --hosts, or --snapshot DIR) and write "
                    "one shell script with a step for each FAIL and WARN a script can fix; "
                    "what needs a person is written as comments. Nothing runs without "
                    "--apply. See docs/fix.md.")
    fix.add_argument("-o", "--output", default=DEFAULT_OUT, metavar="FILE",
                     help=f"the script to write (default: {DEFAULT_OUT}; '-': stdout)")
    fix.add_argument("--snapshot", default=None, metavar="DIR",
                     help="take the findings from a snapshot folder (writes the script only)")
    fix.add_argument("--hosts", default=None,
                     help="one testinfra host (ssh://root@node1) instead of this machine")
    fix.add_argument("--ssh-config", default=None, metavar="FILE", help="SSH config file")
    fix.add_argument("--ssh-identity-file", default=None, metavar="FILE",
                     help="SSH private key")
    fix.add_argument("--dbc-dir", default=None, metavar="DIR",
                     help="the dbc install folder (default: found from its process)")
    fix.add_argument("--node-dat-backup", default=None, metavar="PATH",
                     help="a backup of dat/node.dat to compare with the node's")
    fix.add_argument("--libvirt-uri", default=DEFAULT_URI,
                     help=f"libvirt connection the checks use (default: {DEFAULT_URI})")
    fix.add_argument("--fails-only", action="store_true",
                     help="leave WARN findings out (default: a step where a script can "
                          "fix them, else a comment)")
    fix.add_argument("--apply", action="store_true",
                     help="run the steps now, asking before each one")
    fix.add_argument("--yes", action="store_true", help="with --apply: do not ask")
    fix.add_argument("-q", "--quiet", action="store_true", help="do not show the host run")
    fix.set_defaults(func=lambda args: cmd_fix(args, usage_error))


def _usage(args: argparse.Namespace, usage_error: type[Exception]) -> None:
    if args.yes and not args.apply:
        raise usage_error("--yes goes with --apply (nothing runs without --apply)")
    if args.snapshot and (args.apply or args.hosts):
        raise usage_error("--snapshot writes the script only: leave out --apply and --hosts")
    if args.snapshot and not (Path(args.snapshot) / "snapshot.json").is_file():
        raise usage_error(f"--snapshot {args.snapshot}: not a snapshot folder (no snapshot.json)")
    if args.hosts and "," in args.hosts.strip(","):
        raise usage_error(f"--hosts {args.hosts}: one host at a time (one script per node)")
    if args.apply and args.output == "-":
        raise usage_error("--apply writes the script to a file: leave out '-o -'")
    if args.apply and not args.hosts and os.geteuid() != 0:
        raise usage_error("--apply changes this machine: run it as root (sudo)")
    if not TESTS_HOST.is_dir():
        raise usage_error(f"the host checks are not at {TESTS_HOST}: run it from a checkout")
    out = Path(args.output)
    if args.output != "-" and (out.is_dir() or not out.parent.is_dir()):
        raise usage_error(f"-o {args.output}: not a file in an existing folder")


class _Collector:
    """Findings of the nested run, and the tests that failed without one."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self.unchecked: list[str] = []

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call":
            found = [Finding(**f) for k, v in report.user_properties
                     if k == "dbc_findings" and isinstance(v, list) for f in v]
            self.findings += [f for f in found if f.level == "warn" or report.failed]
            if report.failed and not any(f.level == "fail" for f in found):
                self.unchecked.append(f"{report.nodeid}: {_first_line(report.longrepr)}")
        elif report.failed:
            self.unchecked.append(f"{report.nodeid} ({report.when}): "
                                  f"{_first_line(report.longrepr)}")


def _first_line(longrepr: Any) -> str:
    text = str(longrepr).strip().splitlines()
    return " ".join(text[-3:])[:300] if text else "failed"


def run_checks(args: argparse.Namespace) -> _Collector:
    """`pytest -m host` on tests_host, in this process; its output to stderr."""
    import pytest

    collector = _Collector()
    where = ["--snapshot", args.snapshot] if args.snapshot else []
    where += ["--hosts", args.hosts] if args.hosts else []
    for flag, value in (("--ssh-config", args.ssh_config),
                        ("--ssh-identity-file", args.ssh_identity_file),
                        ("--dbc-dir", args.dbc_dir),
                        ("--node-dat-backup", args.node_dat_backup)):
        where += [flag, value] if value else []
    argv = ["-p", "dbc_accept.plugin", "-m", "host", *where, "--libvirt-uri", args.libvirt_uri,
            "--no-report", "-p", "no:cacheprovider", "--rootdir", str(REPO),
            "-c", str(REPO / "pyproject.toml"),
            *(["-p", "no:terminal"] if args.quiet else ["-q"]), str(TESTS_HOST)]
    saved = os.environ.pop("PYTEST_ADDOPTS", None)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            rc = pytest.main(argv, plugins=[collector])
    finally:
        if saved is not None:
            os.environ["PYTEST_ADDOPTS"] = saved
    if rc not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise RuntimeError(f"the host checks did not run (pytest exit status {int(rc)})")
    return collector


def _target(args: argparse.Namespace, usage_error: type[Exception]) -> Target:
    if args.snapshot:
        from dbc_accept.snapshot import SnapshotError, SnapshotTarget

        try:
            return SnapshotTarget(args.snapshot)
        except SnapshotError as exc:
            raise usage_error(f"--snapshot {args.snapshot}: {exc}") from None
    from dbc_accept.cli import node_targets

    ns = argparse.Namespace(hosts=args.hosts, ansible_inventory=None, connection=None,
                            ssh_config=args.ssh_config, sudo=False,
                            ssh_identity_file=args.ssh_identity_file, dbc_dir=args.dbc_dir)
    return node_targets(ns)[0]


def _source(args: argparse.Namespace, hostname: str) -> str:
    """Where the findings came from, and when the script was written."""
    from dbc_accept.recording import tool_version

    when = f"written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by dbc-accept " \
           f"{tool_version()}"
    if args.snapshot:
        meta = json.loads((Path(args.snapshot) / "snapshot.json").read_text(encoding="utf-8"))
        return f"snapshot {args.snapshot} (host {meta.get('hostname') or '?'})\n# {when}"
    return f"{args.hosts or 'this machine'} ({hostname})\n# {when}"


def _hostname(target: Target) -> str:
    """The node's name; FactError when it cannot be reached."""
    from dbc_accept.facts import read

    return read(target, "/proc/sys/kernel/hostname").strip() or "?"


def cmd_fix(args: argparse.Namespace, usage_error: type[Exception]) -> int:
    _usage(args, usage_error)
    target = _target(args, usage_error)
    try:
        hostname = "" if args.snapshot else _hostname(target)
        found = run_checks(args)
    except (RuntimeError, FactError) as exc:
        print(f"dbc-accept fix: {exc}", file=sys.stderr)
        return 1
    node = HostFacts(target, NodeOptions(libvirt_uri=args.libvirt_uri, dbc_dir=args.dbc_dir))
    result = plan(found.findings, node, warn_steps=not args.fails_only,
                  unchecked=found.unchecked)
    text = render(result, _source(args, hostname), warn_steps=not args.fails_only)
    try:
        _write(args.output, text)
    except OSError as exc:
        print(f"dbc-accept fix: cannot write {args.output}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    _summary(args, found, result)
    if args.apply and result.steps:
        from dbc_accept.nodecache import NodeReadTarget

        # Steps run on the node itself, not through a reader that serves cached answers.
        runner = target.inner if isinstance(target, NodeReadTarget) else target
        return apply(result, runner, ask=None if args.yes else _ask)
    return 0


def _write(output: str, text: str) -> None:
    if output == "-":
        sys.stdout.write(text)
        return
    path = Path(output)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)


def _summary(args: argparse.Namespace, found: _Collector, result: Plan) -> None:
    fails = sum(f.level == "fail" for f in found.findings)
    warns = len(found.findings) - fails
    where = "stdout" if args.output == "-" else args.output
    out = sys.stderr if args.output == "-" else sys.stdout
    if result.empty:
        print(f"dbc-accept fix: nothing to fix; wrote {where}", file=out)
        return
    print(f"dbc-accept fix: {fails} FAIL, {warns} WARN findings -> {len(result.steps)} steps, "
          f"{len(result.notes)} notes for a person, {len(found.unchecked)} tests that could "
          f"not judge; wrote {where}" + ("" if args.apply else
                                          f" (read it, then: sudo sh {where})"), file=out)


def _ask(step: Step, number: int, total: int) -> str:
    try:
        return input(f"run step {number} of {total}? [y]es / [n]o, skip it / [q]uit: ")
    except EOFError:
        return "q"


def apply(result: Plan, target: Target,
          ask: Callable[[Step, int, int], str] | None) -> int:
    """Run the steps one by one on ``target``; stop at the first that fails or at 'q'."""
    total = len(result.steps)
    for number, step in enumerate(result.steps, 1):
        print("\n".join(step_header(step, number, total) + step.body()))
        answer = (ask(step, number, total) if ask else "y").strip().lower()
        if answer.startswith("q"):
            print("dbc-accept fix: stopped; the rest was not run")
            return 1
        if not answer.startswith("y"):
            print(f"  step {number} skipped")
            continue
        out = target.run(["sh", "-c", step_script(step)], timeout=STEP_TIMEOUT)
        for line in (out.stdout + out.stderr).splitlines():
            print(f"  | {line}")
        if not out.ok:
            print(f"dbc-accept fix: step {number} failed (exit {out.rc}); the rest was not run",
                  file=sys.stderr)
            return 1
    return 0
