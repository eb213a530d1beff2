"""Where host facts come from: this machine, a testinfra host, or a snapshot folder.

Every gatherer reads a host through the four operations of :class:`Target` and nothing
else, so the same checks run on the local machine, over SSH, and offline on a snapshot.
Errors follow the ``os`` conventions: a missing path raises ``FileNotFoundError``, an
unreadable one ``PermissionError``; a command that is not installed returns rc 127.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

NOT_FOUND_RC = 127
TIMEOUT_RC = 124


@dataclass(frozen=True)
class CommandResult:
    """What one command printed and how it ended."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def cmdline(self) -> str:
        return shlex.join(self.argv)

    def describe(self) -> str:
        """One line naming the command and how it failed, for messages."""
        tail = (self.stderr or self.stdout).strip().splitlines()
        why = tail[-1] if tail else "no output"
        if self.rc == NOT_FOUND_RC:
            why = "command not found"
        return f"`{self.cmdline}` exited {self.rc}: {why}"


@runtime_checkable
class Target(Protocol):
    """The narrow interface every gatherer reads a host through."""

    @property
    def name(self) -> str:
        """A short label used in test ids and reports (``local``, ``ssh://root@n1``)."""
        ...

    def read_text(self, path: str) -> str:
        """The file's content as text (UTF-8, undecodable bytes replaced)."""
        ...

    def read_link(self, path: str) -> str:
        """The target of a symbolic link, as ``os.readlink`` gives it."""
        ...

    def list_dir(self, path: str) -> list[str]:
        """The names in a folder, sorted."""
        ...

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        """Run a command (no shell) and capture its output."""
        ...


def path_exists(target: Target, path: str) -> bool:
    """True when ``path`` is a file, folder or link (dangling included) on the target."""
    try:
        target.read_link(path)
        return True
    except OSError:
        pass
    try:
        target.list_dir(path)
        return True
    except NotADirectoryError:
        return True
    except OSError:
        pass
    try:
        target.read_text(path)
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True


class LocalTarget:
    """This machine."""

    name = "local"

    def read_text(self, path: str) -> str:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def read_link(self, path: str) -> str:
        return os.readlink(path)

    def list_dir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        args = list(argv)
        # The interpreter running the suite is this machine's python3 for our purposes:
        # it has the packages (libvirt-python) that in-line probes import.
        if args and args[0] == "python3":
            args[0] = sys.executable
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        try:
            proc = subprocess.run(
                args, capture_output=True, text=True, errors="replace",
                timeout=timeout, env=env, check=False,
            )
        except FileNotFoundError:
            return CommandResult(tuple(argv), NOT_FOUND_RC, "", f"{argv[0]}: not found")
        except PermissionError as exc:
            return CommandResult(tuple(argv), 126, "", str(exc))
        except subprocess.TimeoutExpired:
            return CommandResult(tuple(argv), TIMEOUT_RC, "", f"timed out after {timeout:g} s")
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


class TestinfraTarget:
    """Any host pytest-testinfra reaches (ssh, paramiko, ansible, docker, ...)."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, host: Any) -> None:
        self._host = host
        self.name: str = host.backend.get_pytest_id()

    def _check(self, path: str, kind: str) -> None:
        # One round trip that tells "missing" from "unreadable" from "wrong kind".
        script = (
            'p=$1; if [ ! -e "$p" ] && [ ! -L "$p" ]; then exit 2; fi; '
            'if [ "$2" = dir ] && [ ! -d "$p" ]; then exit 3; fi; '
            'if [ ! -r "$p" ]; then exit 4; fi; exit 0'
        )
        rc = self._host.run("sh -c %s _ %s %s", script, path, kind).rc
        errors: dict[int, type[OSError]] = {
            2: FileNotFoundError, 3: NotADirectoryError, 4: PermissionError,
        }
        if rc in errors:
            raise errors[rc](path)

    def read_text(self, path: str) -> str:
        out = self._host.run("cat -- %s", path)
        if out.rc != 0:
            self._check(path, "file")
            raise OSError(f"{path}: {out.stderr.strip()}")
        return str(out.stdout)

    def read_link(self, path: str) -> str:
        out = self._host.run("readlink -- %s", path)
        if out.rc != 0:
            self._check(path, "link")
            raise OSError(22, "Invalid argument: not a symbolic link", path)
        return str(out.stdout).rstrip("\n")

    def list_dir(self, path: str) -> list[str]:
        out = self._host.run("ls -A1 -- %s", path)
        if out.rc != 0:
            self._check(path, "dir")
            raise OSError(f"{path}: {out.stderr.strip()}")
        self._check(path, "dir")
        return sorted(line for line in str(out.stdout).splitlines() if line)

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        line = f"LC_ALL=C timeout {max(1, int(timeout))} " + " ".join(["%s"] * len(argv))
        out = self._host.run(line, *argv)
        return CommandResult(tuple(argv), int(out.rc), str(out.stdout), str(out.stderr))
