"""(十二) (十四) (十五) The node on the network: monitor settings, ports, broadcast, client view.

File facts (core.conf of every dbc program on the node) come through the target and the
core.conf parser and install-folder discovery of :mod:`dbc_accept.facts.dbcnode`. The
status broadcast and the client node's HTTP API are not host files: they are listened to
and asked from the machine running the checks, with bounded waits.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from dbc_accept.facts import dbcnode
from dbc_accept.target import Target
from dbc_accept.verdict import FactError

MONITOR_KEYS = {
    "dbc_monitor_server": "DBC's monitor server, which watches the node's VMs for the network",
    "miner_monitor_server": "your own monitor server, which receives the node's VM status",
}
BROADCAST_PORT = 55555
STATUSES = ("renting", "empty")
CLIENT_TIMEOUT = 20.0  # seconds for the client node to ask this node and answer
SHOWN = 120  # characters of a strange message or answer shown in a failure
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def shorten(data: bytes | str, limit: int = SHOWN) -> str:
    """A printable, bounded rendering of what was received."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


# --- monitor settings and ports (files, through the target) -----------------------------


def parse_host_port(value: str) -> tuple[str, int]:
    """``host:port`` (an IPv4 address, a host name, or ``[IPv6]``) -> (host, port)."""
    raw = value.strip()
    match = re.fullmatch(r"\[(?P<v6>[^]]+)\]:(?P<port>\d+)|(?P<host>[^:\s]+):(?P<p>\d+)", raw)
    if not match:
        raise ValueError(f"{value!r} is not host:port")
    host = match["v6"] or match["host"]
    port = int(match["port"] or match["p"])
    if not 1 <= port <= 65535:
        raise ValueError(f"{value!r}: port {port} is not in 1-65535")
    if match["v6"]:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{value!r}: {host} is not an IPv6 address") from None
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{value!r}: {host!r} is not a host name or address")
    elif re.fullmatch(r"[\d.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{value!r}: {host} is not an IPv4 address") from None
    return host, port


@dataclass(frozen=True)
class MonitorSettings:
    """The monitor servers of one core.conf: key -> raw value, None when absent."""

    path: str
    values: dict[str, str | None]


def gather_monitor_settings(target: Target, folder: str) -> MonitorSettings:
    conf = dbcnode.gather_core_conf(target, folder)
    return MonitorSettings(f"{folder}/conf/core.conf", {k: conf.get(k) for k in MONITOR_KEYS})


@dataclass(frozen=True)
class NodeConf:
    """One dbc program's core.conf: its ports, or why they could not be read."""

    folder: str
    role: str
    ports: dict[str, int] = field(default_factory=dict)
    error: str = ""


def conf_ports(conf: dbcnode.CoreConf) -> dict[str, int]:
    """Every ``*_port`` of a core.conf, with the program's defaults for those left out."""
    ports = {key: conf.port(key) for key in dbcnode.PORT_DEFAULTS}
    for key in conf.values:
        if key.endswith("_port") and key not in ports:
            raw = conf.get(key) or ""
            if not raw.isdigit():
                raise ValueError(f"{key}={raw!r} is not a port number")
            ports[key] = int(raw)
    return ports


def gather_node_confs(target: Target, dbc_dir: str | None = None) -> list[NodeConf]:
    """The core.conf of every running dbc program (and of ``dbc_dir``), one per folder."""
    processes = dbcnode.gather_dbc_processes(target)
    folders: dict[str, str] = {}
    for proc in processes:
        folders.setdefault(proc.folder, proc.role)
    own = dbcnode.install_folder(processes, dbc_dir)
    if own is not None:
        folders.setdefault(own, "compute")
    found = []
    for folder, role in sorted(folders.items()):
        try:
            ports = conf_ports(dbcnode.gather_core_conf(target, folder))
        except FactError as exc:
            found.append(NodeConf(folder, role, error=str(exc)))
            continue
        except ValueError as exc:
            found.append(NodeConf(folder, role, error=f"could not parse {folder}/conf/core.conf: "
                                                      f"{exc}"))
            continue
        found.append(NodeConf(folder, role, ports))
    return found


def port_clashes(confs: list[NodeConf]) -> dict[int, list[str]]:
    """Port -> the ``folder key`` settings that share it (only ports used twice or more)."""
    users: dict[int, list[str]] = {}
    for conf in confs:
        for key, port in sorted(conf.ports.items()):
            users.setdefault(port, []).append(f"{conf.folder}/conf/core.conf {key}")
    return {port: names for port, names in sorted(users.items()) if len(names) > 1}


def folder_gatherers(folder: str) -> list[Callable[[Target], Any]]:
    """What the checks read for ``--dbc-dir FOLDER`` (for `dbc-accept snapshot`)."""
    return [partial(gather_monitor_settings, folder=folder),
            partial(gather_node_confs, dbc_dir=folder)]


def gather_installed_monitor_settings(target: Target) -> MonitorSettings | None:
    """The monitor settings of the running compute node (None: no dbc program runs)."""
    folder = dbcnode.install_folder(dbcnode.gather_dbc_processes(target), None)
    return gather_monitor_settings(target, folder) if folder else None


GATHERERS = [gather_node_confs, gather_installed_monitor_settings]


# --- the status broadcast (UDP, heard on the machine running the checks) -----------------


@dataclass(frozen=True)
class Broadcast:
    node_id: str
    status: str


def parse_broadcast(data: bytes) -> Broadcast:
    """base64 of JSON ``{"node_id": ..., "status": "renting"|"empty"}``; ValueError else."""
    try:
        text = base64.b64decode(data.strip(), validate=True).decode("utf-8")
        message = json.loads(text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not base64 of JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ValueError(f"JSON is not an object: {shorten(text)}")
    node_id, status = message.get("node_id"), message.get("status")
    if not isinstance(node_id, str) or not node_id:
        raise ValueError(f"no node_id: {shorten(text)}")
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not renting or empty: {shorten(text)}")
    return Broadcast(node_id, str(status))


@dataclass
class Heard:
    """What arrived on the broadcast port while listening."""

    seconds: float
    own: Broadcast | None = None
    others: dict[str, int] = field(default_factory=dict)  # other node id -> messages
    garbage: list[str] = field(default_factory=list)  # "sender: why: what" per bad message


def listen_broadcast(node_id: str, seconds: float, port: int = BROADCAST_PORT,
                     address: str = "") -> Heard:
    """Listen on UDP ``port`` until a message of ``node_id`` arrives or ``seconds`` pass."""
    heard = Heard(seconds)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # beside other listeners
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise FactError(f"UDP port {port}", f"cannot listen: {exc.strerror or exc}") from None
    deadline = time.monotonic() + seconds
    with sock:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, sender = sock.recvfrom(65535)
            except socket.timeout:  # TimeoutError from Python 3.10 on, an OSError before
                break
            try:
                message = parse_broadcast(data)
            except ValueError as exc:
                heard.garbage.append(f"{sender[0]}: {exc}: {shorten(data)}")
                continue
            if message.node_id == node_id:
                heard.own = message
                break
            heard.others[message.node_id] = heard.others.get(message.node_id, 0) + 1
    return heard


# --- the client node's view (HTTP, asked from the machine running the checks) ------------


@dataclass(frozen=True)
class ClientAnswer:
    """What the client node said about this node: known, or why not."""

    known: bool
    said: str  # the machine information (known) or the error / answer (not known)


def mining_nodes_url(url: str) -> str:
    """The documented request URL from ``--dbc-client`` (a base URL or the full one)."""
    base = url.rstrip("/")
    if not re.match(r"https?://[^/\s]+", base):
        raise ValueError(f"--dbc-client {url!r} is not an http:// URL "
                         "(e.g. http://10.0.0.5:5052)")
    return base if base.endswith("/api/v1/mining_nodes") else f"{base}/api/v1/mining_nodes"


def parse_client_answer(body: bytes, node_id: str) -> ClientAnswer:
    """The answer to ``POST /api/v1/mining_nodes``: the node's information, or an error.

    The client replies ``{"errcode"|"error_code": 0, "message"|"data": {machine info}}``
    when the node answered it, and a non-zero code with a message when not.
    """
    try:
        answer = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return ClientAnswer(False, f"not JSON: {shorten(body)}")
    if not isinstance(answer, dict):
        return ClientAnswer(False, f"not a JSON object: {shorten(body)}")
    code = answer.get("errcode", answer.get("error_code", 0))
    info = answer.get("message", answer.get("data"))
    if code not in (0, "0"):
        why = answer.get("error_message") or answer.get("message") or ""
        return ClientAnswer(False, f"error {code}: {shorten(str(why))}")
    if not isinstance(info, dict) or not info:
        return ClientAnswer(False, f"no machine information: {shorten(body)}")
    named = info.get("node_id") or info.get("nodeid")
    if isinstance(named, str) and named and named != node_id:
        return ClientAnswer(False, f"information about another node ({named})")
    return ClientAnswer(True, shorten(json.dumps(info, ensure_ascii=False), 300))


def ask_client(url: str, node_id: str, timeout: float = CLIENT_TIMEOUT) -> ClientAnswer:
    """``POST {url}/api/v1/mining_nodes`` for ``node_id``; waits at most ``timeout`` s."""
    import urllib.error  # here: urllib.request costs start-up time that most runs never use
    import urllib.request

    body = json.dumps({"peer_nodes_list": [node_id], "additional": {}}).encode()
    request = urllib.request.Request(
        mining_nodes_url(url), data=body, method="POST",
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return parse_client_answer(reply.read(), node_id)
    except urllib.error.HTTPError as exc:  # the DBC client answers errors as JSON too
        said = parse_client_answer(exc.read(), node_id)
        return ClientAnswer(False, f"HTTP {exc.code}: {said.said}")
    except socket.timeout:
        return ClientAnswer(False, f"no answer within {timeout:g} s")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, socket.timeout):
            return ClientAnswer(False, f"no answer within {timeout:g} s")
        return ClientAnswer(False, f"cannot connect: {reason}")
    except OSError as exc:
        return ClientAnswer(False, f"connection failed: {exc}")
