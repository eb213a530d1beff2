"""(五) and (七) The dbc node program: its process, install folder, config and identity.

The installer unpacks the program as ``<folder>/dbc`` and ``shell/start.sh`` runs
``<folder>/shell/../dbc --compute -d -n HOST`` (older releases: ``-a``; a client node is
``--client``). The program finds ``conf/core.conf`` and ``dat/node.dat`` beside its
executable. Both files are boost program_options config files: ``key=value`` lines, ``#``
comments, a key may repeat. node.dat holds ``node_id`` and ``node_private_key`` (older
releases also ``pub_key`` and ``priv_key``); the private keys are never shown, only hashed.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from dbc_accept.facts import link_optional, list_optional, read, read_optional
from dbc_accept.secrecy import (
    HMAC_PREFIX,
    NODE_DAT_PRIVATE,
    SHA256_PREFIX,
    hmac_digest,
    register_node_dat,
    snapshot_text,
)
from dbc_accept.target import Target
from dbc_accept.verdict import FactError

PROGRAM = "dbc"
PRIVATE_KEYS = NODE_DAT_PRIVATE
# The program's own defaults when core.conf leaves a port out (ConfManager::ParseConf);
# the installer writes 5001 and 5002 and asks for ports in 5000-5100.
PORT_DEFAULTS = {"net_listen_port": 5001, "http_port": 5050}
PORT_RANGE = range(5000, 5101)


@dataclass(frozen=True)
class DbcProcess:
    pid: int
    exe: str
    argv: tuple[str, ...]
    role: str  # compute, client, seed or baremetal

    @property
    def folder(self) -> str:
        return os.path.dirname(self.exe)


@dataclass(frozen=True)
class CoreConf:
    values: dict[str, list[str]]

    def get(self, key: str) -> str | None:
        found = self.values.get(key)
        return found[-1] if found else None

    def port(self, key: str) -> int:
        raw = self.get(key)
        if raw is None:
            return PORT_DEFAULTS[key]
        if not raw.isdigit():
            raise ValueError(f"{key}={raw!r} is not a port number")
        return int(raw)


@dataclass(frozen=True)
class NodeDat:
    node_id: str
    key_digests: dict[str, str]  # private key name -> sha256 (or snapshot's HMAC) of its value


def role_of(argv: tuple[str, ...]) -> str:
    for role in ("client", "seed", "baremetal"):
        if f"--{role}" in argv:
            return role
    return "compute"


def parse_config_lines(text: str, source: str = "config") -> dict[str, list[str]]:
    """Parse a boost program_options config file into {key: [values...]}."""
    values: dict[str, list[str]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line or (line.startswith("[") and line.endswith("]")):
            continue
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            # The line itself is never quoted: in node.dat it may be a private key.
            raise ValueError(f"{source} line {number}: expected key=value (the line is not "
                             "shown: it may hold a secret)")
        values.setdefault(key, []).append(value.strip())
    return values


def parse_core_conf(text: str) -> CoreConf:
    conf = CoreConf(parse_config_lines(text, "core.conf"))
    for key in PORT_DEFAULTS:
        conf.port(key)  # raises ValueError on a non-number
    return conf


def key_digest(value: str, key: bytes | None = None) -> str:
    """The digest of a private key: the one a snapshot's marker carries, else HMAC-SHA256
    under ``key`` (a snapshot's, to compare a backup with it), else sha256."""
    for prefix in (HMAC_PREFIX, SHA256_PREFIX):
        if value.startswith(prefix):
            return value[len(prefix):]
    if key is not None:
        return hmac_digest(key, value)
    return hashlib.sha256(value.encode()).hexdigest()


def parse_node_dat(text: str, key: bytes | None = None) -> NodeDat:
    """node.dat's id and key digests; its secrets are registered before anything else."""
    register_node_dat(text)
    values = parse_config_lines(text, "node.dat")
    node_id = (values.get("node_id") or [""])[-1]
    if not node_id:
        raise ValueError("no node_id")
    digests = {k: key_digest(values[k][-1], key) for k in PRIVATE_KEYS
               if values.get(k, [""])[-1]}
    if "node_private_key" not in digests:
        raise ValueError("no node_private_key")
    return NodeDat(node_id, digests)


def redact_node_dat(text: str, key: bytes) -> str:
    """node.dat as a snapshot keeps it (its allow-list, private keys HMAC-ed under ``key``)."""
    return snapshot_text("/dat/node.dat", text, key)


def gather_dbc_processes(target: Target) -> list[DbcProcess]:
    """Every running dbc program (one read of /proc/PID/comm per process)."""
    found = []
    for pid in (p for p in list_optional(target, "/proc") if p.isdigit()):
        comm = read_optional_quiet(target, f"/proc/{pid}/comm")
        if comm is None or comm.strip() != PROGRAM:
            continue
        raw = read_optional_quiet(target, f"/proc/{pid}/cmdline") or ""
        argv = tuple(a for a in raw.split("\0") if a)
        exe = link_optional(target, f"/proc/{pid}/exe")
        if exe and exe.endswith(" (deleted)"):
            exe = exe[: -len(" (deleted)")]
        exe = exe or os.path.normpath(argv[0] if argv else "")
        found.append(DbcProcess(int(pid), exe, argv, role_of(argv)))
    return sorted(found, key=lambda p: p.pid)


def read_optional_quiet(target: Target, path: str) -> str | None:
    """A /proc file of a process that may exit meanwhile: None when it is gone."""
    try:
        return read_optional(target, path)
    except FactError:
        return None


def install_folder(processes: list[DbcProcess], option: str | None) -> str | None:
    """--dbc-dir, else the folder of the running compute node."""
    if option:
        return option.rstrip("/") or "/"
    compute = [p for p in processes if p.role == "compute"]
    return compute[0].folder if compute else None


def gather_folder(target: Target, folder: str) -> list[str]:
    """The names in the install folder ([] when it does not exist)."""
    return list_optional(target, folder)


def gather_core_conf(target: Target, folder: str) -> CoreConf:
    path = f"{folder}/conf/core.conf"
    try:
        return parse_core_conf(read(target, path))
    except ValueError as exc:
        raise FactError(path, str(exc), verb="parse") from None


def gather_node_dat(target: Target, folder: str) -> NodeDat:
    path = f"{folder}/dat/node.dat"
    try:
        return parse_node_dat(read(target, path))
    except ValueError as exc:
        raise FactError(path, str(exc), verb="parse") from None


def load_backup(path: str, key: bytes | None = None) -> NodeDat:
    """The owner's backup of node.dat, read on the machine running the checks (``key``:
    the replayed snapshot's, so the digests compare with its markers)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return parse_node_dat(fh.read(), key)
    except OSError as exc:
        raise FactError(path, exc.strerror or str(exc)) from None
    except ValueError as exc:
        raise FactError(path, str(exc), verb="parse") from None


def other_ports(target: Target, processes: list[DbcProcess], folder: str) -> dict[str, int]:
    """Ports configured by the other dbc programs on the node (a client node, say)."""
    ports: dict[str, int] = {}
    for proc in processes:
        if proc.folder == folder:
            continue
        text = read_optional_quiet(target, f"{proc.folder}/conf/core.conf")
        try:
            conf = parse_core_conf(text) if text else None
        except ValueError:
            conf = None
        if conf is not None:
            for key in PORT_DEFAULTS:
                ports[f"{proc.folder} {key}"] = conf.port(key)
    return ports


@dataclass(frozen=True)
class DbcInstall:
    """The running compute node's folder and what the checks read there."""

    folder: str
    names: tuple[str, ...]
    core_conf: CoreConf | None
    node_dat: NodeDat | None


def gather_dbc_install(target: Target) -> DbcInstall | None:
    """Everything of the install folder at once, for `dbc-accept snapshot` (None: no dbc)."""
    folder = install_folder(gather_dbc_processes(target), None)
    if folder is None:
        return None
    conf = dat = None
    try:
        conf = gather_core_conf(target, folder)
        dat = gather_node_dat(target, folder)
    except FactError:
        pass  # the checks report it; a capture only needs the files to have been read
    return DbcInstall(folder, tuple(gather_folder(target, folder)), conf, dat)


GATHERERS = [gather_dbc_processes, gather_dbc_install]
