"""The `dbc-accept` command: what is not a test run.

``dbc-accept snapshot DIR`` captures this machine (or ``--hosts``) into a snapshot folder
that ``pytest -m host --snapshot DIR`` replays; ``dbc-accept cleanup`` removes the test
VMs and overlays that an interrupted run left behind; ``dbc-accept fix`` writes a script that
fixes what the host checks found (dbc_accept/fix). Bad input ends with one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from dbc_accept.facts.images import TEMPLATE as DEFAULT_IMAGE
from dbc_accept.facts.libvirtconn import DEFAULT_URI
from dbc_accept.target import LocalTarget, Target
from dbc_accept.verdict import FactError

USAGE_ERROR = 2
CONNECT_TIMEOUT = 10  # seconds, as `pytest --node-connect-timeout` by default


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dbc-accept", description="DBC node acceptance: what is not a test run.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    snap = sub.add_parser(
        "snapshot", help="capture what the host checks read into a snapshot folder",
        description="Capture what the host checks read (files, links, folder listings, "
                    "command output; secrets redacted) into DIR. Replay it with "
                    "`pytest -m host --snapshot DIR`. The format is in docs/snapshot.md.")
    snap.add_argument("dir", metavar="DIR", help="a new or empty folder to write")
    snap.add_argument("--hosts", default=None,
                      help="capture these testinfra hosts instead of this machine "
                           "(ssh://root@node1,paramiko://node2); several go to DIR/<host>/")
    snap.add_argument("--ansible-inventory", default=None, metavar="FILE",
                      help="capture the hosts of this Ansible inventory")
    snap.add_argument("--connection", default=None,
                      help="testinfra backend for hosts without a scheme (ssh, paramiko, ...)")
    snap.add_argument("--ssh-config", default=None, metavar="FILE", help="SSH config file")
    snap.add_argument("--ssh-identity-file", default=None, metavar="FILE",
                      help="SSH private key")
    snap.add_argument("--sudo", action="store_true", help="run the remote reads with sudo")
    snap.add_argument("--dbc-dir", default=None, metavar="DIR",
                      help="the dbc install folder (default: found from its process); pass "
                           "it again when replaying")
    snap.set_defaults(func=cmd_snapshot)
    clean = sub.add_parser(
        "cleanup", help="remove test VMs and overlays an interrupted run left behind",
        description="Remove this tool's leftover test VMs and overlay disks (and nothing "
                    "else: check_env's domain_test and renters' VMs are never touched).")
    clean.add_argument("--libvirt-uri", default=DEFAULT_URI,
                       help=f"libvirt connection (default: {DEFAULT_URI})")
    clean.add_argument("--vm-image", default=DEFAULT_IMAGE, metavar="PATH",
                       help="template image; overlays beside it are looked for too "
                            f"(default: {DEFAULT_IMAGE})")
    clean.add_argument("--force", action="store_true",
                       help="remove test VMs of runs that still seem to be going")
    clean.set_defaults(func=cmd_cleanup)
    from dbc_accept.fix.command import add_parser

    add_parser(sub, UsageError)
    return parser


# --- snapshot --------------------------------------------------------------------------


def node_targets(args: argparse.Namespace) -> list[Target]:
    """The machines ``args`` names: ``--hosts`` / ``--ansible-inventory``, else this one."""
    if not args.hosts and not args.ansible_inventory:
        return [LocalTarget()]
    from dbc_accept.facts import NodeOptions
    from dbc_accept.hosts import HostsError, testinfra_hosts
    from dbc_accept.nodecache import NodeReadTarget
    from dbc_accept.target import TestinfraTarget

    def warn(text: str) -> None:
        print(f"warning: {text}", file=sys.stderr)

    try:
        hosts = testinfra_hosts(
            args.hosts, args.ansible_inventory, warn=warn, connection=args.connection,
            ssh_config=args.ssh_config, ssh_identity_file=args.ssh_identity_file,
            sudo=args.sudo, sudo_user=None, force_ansible=False, timeout=CONNECT_TIMEOUT)
    except HostsError as exc:
        raise UsageError(str(exc)) from None
    # read in a few batched commands, as the checks read a remote node
    return [NodeReadTarget(TestinfraTarget(host, name), NodeOptions(dbc_dir=args.dbc_dir))
            for name, host in hosts]


def replay_line(snapshot: Path) -> str:
    """The command that replays ``snapshot``, runnable as written from any folder."""
    suite = Path(__file__).resolve().parents[1]
    where = f"cd {shlex.quote(str(suite))} && " if (suite / "tests_host").is_dir() else ""
    return f"{where}pytest -m host --snapshot={shlex.quote(str(snapshot))}"


def _empty_folder(path: Path) -> None:
    """Create ``path`` (or accept an empty one), or raise UsageError saying why not."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} exists and is not a folder; choose a new folder")
    if path.is_dir() and any(path.iterdir()):
        raise UsageError(f"{path} is not empty; choose a new folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".dbc-accept-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to {path}: {exc.strerror or exc}") from None


def _folder_gatherers(folder: str) -> list[Callable[[Target], Any]]:
    """The reads the checks do for ``--dbc-dir FOLDER``."""
    from dbc_accept.facts import dbcnode, network_node

    return [
        partial(dbcnode.gather_folder, folder=folder),
        partial(dbcnode.gather_core_conf, folder=folder),
        partial(dbcnode.gather_node_dat, folder=folder),
        *network_node.folder_gatherers(folder),
    ]


def _check_dbc_dir(target: Target, folder: str) -> None:
    try:
        target.list_dir(folder)
    except FileNotFoundError:
        raise UsageError(f"--dbc-dir {folder}: no such folder on {target.name}") from None
    except NotADirectoryError:
        raise UsageError(f"--dbc-dir {folder}: not a folder on {target.name}") from None
    except (OSError, FactError) as exc:
        raise UsageError(f"--dbc-dir {folder}: cannot list it on {target.name}: {exc}") from None


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "host"


def cmd_snapshot(args: argparse.Namespace) -> int:
    from dbc_accept.recording import capture

    root = Path(args.dir)
    targets = node_targets(args)
    if args.dbc_dir and len(targets) == 1:
        _check_dbc_dir(targets[0], args.dbc_dir)  # before anything is written
    _empty_folder(root)
    extra = _folder_gatherers(args.dbc_dir) if args.dbc_dir else []
    status = 0
    for target in targets:
        where = root if len(targets) == 1 else root / _safe_name(target.name)
        try:
            recorder = capture(target, extra)
        except FactError as exc:
            print(f"dbc-accept snapshot: {exc}", file=sys.stderr)
            status = 1
            continue
        recorder.write(where, {"dbc_dir": args.dbc_dir} if args.dbc_dir else None)
        print(f"captured {target.name} into {where}: {len(recorder.files)} files, "
              f"{len(recorder.links)} links, {len(recorder.listings)} folder listings, "
              f"{len(recorder.commands)} commands (secrets redacted)")
        for problem in recorder.problems:
            print(f"  note: a gatherer failed and its facts may be incomplete: {problem}")
    if status and root.is_dir() and not any(root.iterdir()):
        root.rmdir()  # nothing captured: no empty folder left behind
    if status == 0:
        where = root.resolve() if len(targets) == 1 else root.resolve() / "<host>"
        print(f"replay: {replay_line(where)}")
    return status


# --- cleanup ---------------------------------------------------------------------------


def cmd_cleanup(args: argparse.Namespace) -> int:
    try:
        from dbc_accept.vm.reaper import sweep
    except ImportError as exc:
        raise UsageError(f"cleanup needs libvirt-python ({exc}): pip install libvirt-python") \
            from None
    folder = os.path.dirname(os.path.abspath(args.vm_image))
    if args.vm_image != DEFAULT_IMAGE and not os.path.isfile(args.vm_image):
        # a mistyped path would sweep the wrong folder and report success
        raise UsageError(f"--vm-image {args.vm_image}: no such file (give the template image "
                         "the test VM used: this tool's overlays sit beside it)")
    notes: list[str] = []
    try:
        removed = sweep(args.libvirt_uri, force=args.force, log=notes.append,
                        folders=[folder])
    except Exception as exc:  # libvirtError and friends: report, do not trace back
        get = getattr(exc, "get_error_message", None)
        why = get() if callable(get) else str(exc)
        print(f"dbc-accept cleanup: cannot clean up at {args.libvirt_uri}: {why}",
              file=sys.stderr)
        return 1
    for line in [*notes, *removed]:
        print(line)
    if not removed:
        print(f"nothing to remove at {args.libvirt_uri}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"dbc-accept {args.command}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"dbc-accept {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
