"""(十二) (十四) (十五) The node on the network: its monitor servers are set, several dbc nodes on
one machine use distinct ports, it broadcasts its status, and a client node knows it."""
from __future__ import annotations

import socket

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.dbcnode import gather_node_dat
from dbc_accept.facts.network_node import (
    BROADCAST_PORT,
    CLIENT_TIMEOUT,
    MONITOR_KEYS,
    MonitorSettings,
    ask_client,
    gather_monitor_settings,
    gather_node_confs,
    listen_broadcast,
    parse_host_port,
    port_clashes,
)
from dbc_accept.prereqs import dbc_folder
from dbc_accept.verdict import FactError, check, fail, observe, warn

pytestmark = pytest.mark.host


def _monitor(node: HostFacts) -> MonitorSettings:
    try:
        return node.get(gather_monitor_settings, dbc_folder(node))
    except FactError as exc:
        fail("dbc.config", observed=str(exc), expected="a readable key=value conf/core.conf")


@pytest.mark.requires("dbc_dir")
@pytest.mark.parametrize("key", sorted(MONITOR_KEYS))
def test_monitor_server(node: HostFacts, key: str) -> None:
    settings = _monitor(node)
    value = settings.values[key]
    if value is None:
        warn("dbc.monitor", observed=f"{settings.path}: no {key}",
             expected=f"{key}=host:port ({MONITOR_KEYS[key]})")
        return
    try:
        host, port = parse_host_port(value)
    except ValueError as exc:
        fail("dbc.monitor", observed=f"{settings.path}: {key}={value}: {exc}",
             expected=f"{key}=host:port ({MONITOR_KEYS[key]})")
    observe(**{key: f"{host}:{port}"})


@pytest.mark.requires("dbc_dir")
def test_ports_distinct_across_dbc_nodes(node: HostFacts) -> None:
    confs = node.get(gather_node_confs, node.options.dbc_dir)
    if not confs:
        fail("dbc.install_dir", observed="no dbc program runs and no --dbc-dir was given",
             expected="the dbc install folder (or --dbc-dir)")
    unreadable = [c.error for c in confs if c.error]
    if unreadable:
        fail("dbc.config", observed="; ".join(unreadable),
             expected="a readable conf/core.conf in every dbc node's folder")
    observe(dbc_nodes={f"{c.folder} ({c.role})": c.ports for c in confs})
    clashes = port_clashes(confs)
    check(not clashes, "dbc.ports",
          observed="; ".join(f"port {p} used by {' and '.join(u)}" for p, u in clashes.items()),
          expected="every port of every dbc node's conf/core.conf distinct")


def _network_prerequisite(node: HostFacts, option: str, value: object, what: str) -> object:
    """The option's value; skips (with the reason) without it or on a snapshot."""
    if value is None:
        pytest.skip(f"{option} not given (it {what})")
    if node.options.snapshot:
        pytest.skip(f"a snapshot is replayed: {option} needs the live network of the node")
    return value


def _node_id(node: HostFacts) -> str:
    try:
        return node.get(gather_node_dat, dbc_folder(node)).node_id
    except FactError as exc:
        fail("dbc.node_dat", observed=str(exc), expected="dat/node.dat with node_id and its key")


@pytest.mark.network
def test_status_broadcast(node: HostFacts) -> None:
    seconds = float(str(_network_prerequisite(
        node, "--listen-broadcast SECONDS", node.options.listen_broadcast,
        f"listens for the node's status broadcast on UDP {BROADCAST_PORT}")))
    node_id = _node_id(node)
    heard = listen_broadcast(node_id, seconds)
    where = f"UDP {BROADCAST_PORT} on {socket.gethostname()} for {seconds:g} s"
    ignored = "; ".join(f"{n} ({c}x)" for n, c in sorted(heard.others.items()))
    observe(broadcast_listened=where, broadcast_others_ignored=ignored or "none")
    if heard.own is not None:
        observe(broadcast_status=heard.own.status)
        check(not heard.garbage, "dbc.broadcast", level="warn",
              observed=f"undecodable messages beside the node's: {'; '.join(heard.garbage)}",
              expected='base64 of {"node_id": ..., "status": "renting"|"empty"} only')
        return
    seen = f"undecodable: {'; '.join(heard.garbage)}" if heard.garbage else "no message"
    if ignored:
        seen += f"; other nodes' messages ignored: {ignored}"
    fail("dbc.broadcast", observed=f"{seen} ({where})",
         expected=f'base64 of {{"node_id": "{node_id}", "status": "renting"|"empty"}}')


@pytest.mark.network
def test_client_node_knows_this_node(node: HostFacts) -> None:
    url = str(_network_prerequisite(node, "--dbc-client URL", node.options.dbc_client,
                                    "asks a client node whether it knows this node"))
    node_id = _node_id(node)
    answer = ask_client(url, node_id)  # the plugin refused a malformed URL at start
    observe(client=url, client_said=answer.said)
    check(answer.known, "dbc.client_view",
          observed=f"POST {url} /api/v1/mining_nodes for {node_id} (waited at most "
                   f"{CLIENT_TIMEOUT:g} s): {answer.said}",
          expected="the client node returns this node's machine information")
