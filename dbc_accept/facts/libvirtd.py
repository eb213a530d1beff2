"""(四) libvirtd: its config files, systemd state, TCP listener and a live connection.

libvirtd.conf uses libvirt's own syntax (src/util/virconf.c): ``name = value`` where a
value is an integer, a string in double or single quotes (or triple double quotes across
lines), or a list ``[ v, v ]`` that may span lines; ``#`` starts a comment; ``;`` may end a
statement. /etc/default/libvirtd is a shell fragment read by the systemd unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Union

from dbc_accept.facts import link_optional, read, read_optional
from dbc_accept.facts.system import gather_os_release
from dbc_accept.target import Target
from dbc_accept.verdict import FactError

CONF = "/etc/libvirt/libvirtd.conf"
DEFAULTS = "/etc/default/libvirtd"
SOCKETS = ("libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket",
           "libvirtd-tls.socket", "libvirtd-tcp.socket")
SERVICE = "libvirtd.service"
DEFAULT_TCP_PORT = 16509
WANTS_LINK = "/etc/systemd/system/multi-user.target.wants/libvirtd.service"

ConfValue = Union[int, str, List[Union[int, str]]]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_INT = re.compile(r"[+-]?\d+")


class _Cursor:
    """A position in the text with libvirt's notion of blanks, comments and separators."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    @property
    def line(self) -> int:
        return self.text.count("\n", 0, self.pos) + 1

    def error(self, why: str) -> ValueError:
        return ValueError(f"line {self.line}: {why}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_blanks(self, newlines: bool = False) -> None:
        """Skip spaces (and newlines and comments inside lists when ``newlines``)."""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self.pos += 1
            elif newlines and ch == "#":
                self.skip_comment()
            else:
                return

    def skip_comment(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def match(self, pattern: re.Pattern[str]) -> str | None:
        found = pattern.match(self.text, self.pos)
        if not found:
            return None
        self.pos = found.end()
        return found.group(0)


def _string(cur: _Cursor) -> str:
    quote = cur.peek()
    if cur.text.startswith('"""', cur.pos):
        end = cur.text.find('"""', cur.pos + 3)
        if end < 0:
            raise cur.error('unterminated """ string')
        value = cur.text[cur.pos + 3:end]
        cur.pos = end + 3
        return value
    end = cur.text.find(quote, cur.pos + 1)
    newline = cur.text.find("\n", cur.pos + 1)
    if end < 0 or (0 <= newline < end):
        raise cur.error(f"unterminated {quote} string")
    value = cur.text[cur.pos + 1:end]
    cur.pos = end + 1
    return value


def _scalar(cur: _Cursor) -> int | str:
    if cur.peek() in "\"'":
        return _string(cur)
    number = cur.match(_INT)
    if number is None:
        raise cur.error(f"expected a number, a string or a list, got {cur.peek()!r}")
    return int(number)


def _value(cur: _Cursor) -> ConfValue:
    if cur.peek() != "[":
        return _scalar(cur)
    cur.pos += 1
    items: list[int | str] = []
    while True:
        cur.skip_blanks(newlines=True)
        if cur.peek() == "]":
            cur.pos += 1
            return items
        if not cur.peek():
            raise cur.error("unterminated list")
        items.append(_scalar(cur))
        cur.skip_blanks(newlines=True)
        if cur.peek() == ",":
            cur.pos += 1
        elif cur.peek() != "]":
            raise cur.error(f"expected ',' or ']' in list, got {cur.peek()!r}")


def parse_libvirt_conf(text: str) -> dict[str, ConfValue]:
    """Parse a libvirt config file into {name: value}; the last assignment wins."""
    cur = _Cursor(text)
    values: dict[str, ConfValue] = {}
    while True:
        cur.skip_blanks(newlines=True)
        if not cur.peek():
            return values
        name = cur.match(_NAME)
        if name is None:
            raise cur.error(f"expected a setting name, got {cur.peek()!r}")
        cur.skip_blanks()
        if cur.peek() != "=":
            raise cur.error(f"expected '=' after {name}")
        cur.pos += 1
        cur.skip_blanks()
        values[name] = _value(cur)
        cur.skip_blanks()
        if cur.peek() == ";":
            cur.pos += 1
            cur.skip_blanks()
        if cur.peek() == "#":
            cur.skip_comment()
        if cur.peek() not in ("\n", ""):
            raise cur.error(f"unexpected {cur.peek()!r} after the value of {name}")


def parse_shell_vars(text: str) -> dict[str, str]:
    """Variables assigned in a shell fragment such as /etc/default/libvirtd."""
    import shlex

    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].strip()
        name, eq, rest = line.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            continue  # a command, not an assignment; the unit's EnvironmentFile skips it too
        try:
            words = shlex.split(rest, comments=True)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
        values[name] = " ".join(words)
    return values


def args_variables(version_id: str) -> tuple[str, ...]:
    """The /etc/default/libvirtd variables whose `-l` libvirtd honours on this release.

    Ubuntu 20.04's unit reads ``libvirtd_opts``; from 22.04 the guide writes
    ``LIBVIRT_ARGS``, while libvirt's own unit reads ``LIBVIRTD_ARGS``: either is accepted.
    """
    if version_id.startswith("20.") or version_id.startswith("18."):
        return ("libvirtd_opts",)
    return ("LIBVIRT_ARGS", "LIBVIRTD_ARGS")


def has_listen_flag(args: str) -> bool:
    return any(word in ("-l", "--listen") or re.fullmatch(r"-[a-z]*l[a-z]*", word) is not None
               for word in args.split())


def tcp_port(conf: dict[str, ConfValue]) -> int:
    """libvirtd's TCP port: tcp_port (a string in the shipped file), else 16509."""
    try:
        return int(str(conf.get("tcp_port", DEFAULT_TCP_PORT)))
    except ValueError:
        return DEFAULT_TCP_PORT


@dataclass(frozen=True)
class DaemonArgs:
    version_id: str
    variables: tuple[str, ...]  # the variables that count on this release
    values: dict[str, str]  # every variable of the file
    exists: bool

    @property
    def listen(self) -> bool:
        return any(has_listen_flag(self.values.get(v, "")) for v in self.variables)


@dataclass(frozen=True)
class ServiceState:
    active: str  # `systemctl is-active` output, or why it could not say
    enabled: str
    wants_link: bool  # the enablement symlink of multi-user.target


def gather_libvirtd_conf(target: Target) -> dict[str, ConfValue]:
    try:
        return parse_libvirt_conf(read(target, CONF))
    except ValueError as exc:
        raise FactError(CONF, str(exc), verb="parse") from None


def gather_daemon_args(target: Target) -> DaemonArgs:
    version = gather_os_release(target).version_id
    text = read_optional(target, DEFAULTS)
    try:
        values = parse_shell_vars(text or "")
    except ValueError as exc:
        raise FactError(DEFAULTS, str(exc), verb="parse") from None
    return DaemonArgs(version, args_variables(version), values, text is not None)


def gather_socket_masks(target: Target) -> dict[str, str | None]:
    """Each socket unit's link in /etc/systemd/system (masked: '/dev/null')."""
    return {name: link_optional(target, f"/etc/systemd/system/{name}") for name in SOCKETS}


def _systemctl(target: Target, verb: str) -> str:
    out = target.run(["systemctl", verb, SERVICE])
    word = out.stdout.strip().splitlines()
    if word and out.rc in (0, 1, 3, 4):
        return word[0]
    return out.describe()


def gather_service(target: Target) -> ServiceState:
    return ServiceState(_systemctl(target, "is-active"), _systemctl(target, "is-enabled"),
                        link_optional(target, WANTS_LINK) is not None)


GATHERERS = [gather_libvirtd_conf, gather_daemon_args, gather_socket_masks, gather_service]
