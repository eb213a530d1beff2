"""Listening TCP sockets from /proc/net/tcp and /proc/net/tcp6 (what `ss -ltn` shows)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dbc_accept.facts import read_optional
from dbc_accept.target import Target
from dbc_accept.verdict import FactError

LISTEN_STATE = "0A"  # TCP_LISTEN in include/net/tcp_states.h


@dataclass(frozen=True)
class Listener:
    """One socket in the LISTEN state."""

    address: str
    port: int

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


def _decode_address(hex_addr: str) -> str:
    """Decode the kernel's hex address: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_addr)
    if len(raw) not in (4, 16):
        raise ValueError(f"address {hex_addr!r} is neither IPv4 nor IPv6")
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    addr = ipaddress.ip_address(words)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def parse_proc_net_tcp(text: str) -> list[Listener]:
    """The LISTEN sockets of /proc/net/tcp or tcp6 (header line, then one socket a line)."""
    lines = text.splitlines()
    if not lines or not lines[0].split() or lines[0].split()[0] != "sl":
        raise ValueError("no 'sl local_address ...' header line")
    found: list[Listener] = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 4 or ":" not in fields[1]:
            raise ValueError(f"line {number}: expected 'sl: local remote st ...', got {line!r}")
        if fields[3].upper() != LISTEN_STATE:
            continue
        hex_addr, _, hex_port = fields[1].partition(":")
        try:
            found.append(Listener(_decode_address(hex_addr), int(hex_port, 16)))
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
    return found


def gather_listeners(target: Target) -> list[Listener]:
    """Every listening TCP socket, IPv4 and IPv6."""
    found: list[Listener] = []
    seen_any = False
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        text = read_optional(target, path)
        if text is None:
            continue
        seen_any = True
        try:
            found.extend(parse_proc_net_tcp(text))
        except ValueError as exc:
            raise FactError(path, str(exc), verb="parse") from None
    if not seen_any:
        raise FactError("/proc/net/tcp", "no such file")
    return sorted(set(found), key=lambda s: (s.port, s.address))


def on_port(listeners: list[Listener], port: int) -> list[Listener]:
    """The listeners of one port."""
    return [s for s in listeners if s.port == port]


GATHERERS = [gather_listeners]
