"""(五) and (七) The dbc node program runs from its install folder, with a valid
conf/core.conf, its ports in range, distinct and listening, and dat/node.dat backed up."""
from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.dbcnode import (
    PORT_RANGE,
    CoreConf,
    NodeDat,
    gather_core_conf,
    gather_dbc_processes,
    gather_folder,
    gather_node_dat,
    load_backup,
    other_ports,
)
from dbc_accept.facts.listeners import gather_listeners, on_port
from dbc_accept.plugin import each
from dbc_accept.prereqs import dbc_folder
from dbc_accept.verdict import FactError, check, fail, observe, warn

pytestmark = pytest.mark.host

PORT_KEYS = ("net_listen_port", "http_port")


def _conf(node: HostFacts, folder: str) -> CoreConf:
    """core.conf, or a dbc.config failure that says why it cannot be used."""
    try:
        return node.get(gather_core_conf, folder)
    except FactError as exc:
        fail("dbc.config", observed=str(exc), expected="a readable key=value conf/core.conf")


def _node_dat(node: HostFacts) -> NodeDat:
    try:
        return node.get(gather_node_dat, dbc_folder(node))
    except FactError as exc:
        fail("dbc.node_dat", observed=str(exc), expected="dat/node.dat with node_id and its key")


def test_dbc_running(node: HostFacts) -> None:
    procs = node.get(gather_dbc_processes)
    compute = [p for p in procs if p.role == "compute"]
    observe(dbc_processes=[f"{p.pid} {p.exe} ({p.role})" for p in procs])
    check(bool(compute), "dbc.process",
          observed="no dbc compute node process" + (
              f" (others: {', '.join(f'{p.exe} --{p.role}' for p in procs)})" if procs else ""),
          expected="`<folder>/dbc --compute -d` running")


def test_dbc_install_folder(node: HostFacts) -> None:
    folder = dbc_folder(node, dependent=False)
    observe(dbc_dir=folder)
    names = node.get(gather_folder, folder)
    missing = [n for n in ("dbc", "conf", "dat") if n not in names]
    check(not missing, "dbc.install_dir", observed=f"{folder} lacks {', '.join(missing)}",
          expected="the program dbc and its conf/ and dat/ folders")


@pytest.mark.requires("dbc_dir")
def test_dbc_core_conf(node: HostFacts) -> None:
    conf = _conf(node, dbc_folder(node))
    check(conf.get("net_type") in (None, "mainnet"), "dbc.config",
          observed=f"net_type={conf.get('net_type')}", expected="net_type=mainnet", level="warn")


@pytest.mark.requires("dbc_dir")
@each(lambda node: [(k, k) for k in PORT_KEYS], empty="no ports")
def test_dbc_port(node: HostFacts, entry: str) -> None:
    folder = dbc_folder(node)
    conf = _conf(node, folder)
    port = conf.port(entry)
    check(port in PORT_RANGE, "dbc.ports", observed=f"{entry}={port}",
          expected=f"{entry} in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")
    taken = {f"this node's {k}": conf.port(k) for k in PORT_KEYS if k != entry}
    taken.update(other_ports(node.target, node.get(gather_dbc_processes), folder))
    clash = [what for what, other in taken.items() if other == port]
    check(not clash, "dbc.ports", observed=f"{entry}={port} is also {', '.join(clash)}",
          expected="a port of its own")
    check(bool(on_port(node.get(gather_listeners), port)), "dbc.ports",
          observed=f"nothing listens on TCP {port} ({entry})",
          expected=f"the dbc program listening on {port}")


@pytest.mark.requires("dbc_dir")
def test_node_dat(node: HostFacts) -> None:
    observe(node_id=_node_dat(node).node_id)


@pytest.mark.requires("dbc_dir")
def test_node_dat_backup(node: HostFacts) -> None:
    dat = _node_dat(node)
    backup_path = node.options.node_dat_backup
    if not backup_path:
        warn("dbc.backup", observed="no backup of dat/node.dat was named (--node-dat-backup)",
             expected="a backup checked against the node's dat/node.dat")
        return
    # On a snapshot, the backup's keys are hashed with the snapshot's key to compare.
    backup = load_backup(backup_path, getattr(node.target, "hmac_key", None))
    # A wrong backup does not stop the node today, but it would not restore it: WARN.
    check(backup.node_id == dat.node_id, "dbc.backup", level="warn",
          observed=f"backup {backup_path} has node_id {backup.node_id}, the node {dat.node_id}",
          expected="the same node_id")
    differ = sorted(k for k in dat.key_digests if backup.key_digests.get(k) != dat.key_digests[k])
    check(not differ or backup.node_id != dat.node_id, "dbc.backup", level="warn",
          observed=f"backup {backup_path}: {', '.join(differ)} differ",
          expected="the same private keys")
