"""The node on the network: parsers, real UDP datagrams on loopback, a real HTTP server on
127.0.0.1 that answers as a DBC client node does (whole runs of tests_host's checks:
test_dbc_network_runs.py)."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest

from dbc_accept.facts.dbcnode import CoreConf
from dbc_accept.facts.network_node import (
    NodeConf,
    ask_client,
    conf_ports,
    listen_broadcast,
    mining_nodes_url,
    parse_broadcast,
    parse_client_answer,
    parse_host_port,
    port_clashes,
)
from selftests.dbc_network_support import (  # noqa: F401 - sender, client_node: fixtures
    NODE_ID,
    OTHER_ID,
    ClientNode,
    Sender,
    client_node,
    free_udp_port,
    message,
    sender,
)

# --- parsers ---------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("115.231.234.34:5005", ("115.231.234.34", 5005)),
    ("monitor.dbcwallet.io:8080", ("monitor.dbcwallet.io", 8080)),
    ("[2001:db8::1]:443", ("2001:db8::1", 443)),
    (" 10.0.0.1:1 ", ("10.0.0.1", 1)),
])
def test_host_port_accepted(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", [
    "", "10.0.0.1", "10.0.0.1:", ":8080", "10.0.0.1:0", "10.0.0.1:70000", "300.1.1.1:80",
    "http://10.0.0.1:80", "host name:80", "[nothex]:80", "10.0.0.1:80:90", "a_b:80",
])
def test_host_port_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(text)


def test_broadcast_parsed_and_garbage_refused() -> None:
    assert parse_broadcast(message(NODE_ID, "empty") + b"\n").status == "empty"
    for bad in (b"not base64!", base64.b64encode(b"{not json"), base64.b64encode(b"[1]"),
                base64.b64encode(b'{"status": "empty"}'), message(NODE_ID, "sleeping"), b""):
        with pytest.raises(ValueError):
            parse_broadcast(bad)


def test_ports_of_several_nodes() -> None:
    conf = CoreConf({"net_listen_port": ["5001"], "http_port": ["5002"], "rest_port": ["41107"]})
    assert conf_ports(conf) == {"net_listen_port": 5001, "http_port": 5002, "rest_port": 41107}
    assert conf_ports(CoreConf({})) == {"net_listen_port": 5001, "http_port": 5050}
    with pytest.raises(ValueError, match="rest_port"):
        conf_ports(CoreConf({"rest_port": ["x"]}))
    compute = NodeConf("/home/dbc/0.3.7.3/dbc_repo", "compute", {"net_listen_port": 5001,
                                                                  "http_port": 5002})
    client = NodeConf("/home/dbc/client/dbc_repo", "client", {"net_listen_port": 5003,
                                                               "http_port": 5002})
    assert port_clashes([compute]) == {}
    assert port_clashes([compute, client]) == {5002: [
        "/home/dbc/0.3.7.3/dbc_repo/conf/core.conf http_port",
        "/home/dbc/client/dbc_repo/conf/core.conf http_port"]}


def test_client_answers_parsed() -> None:
    known = json.dumps({"errcode": 0, "message": {"gpu": "4 x RTX 3090", "state": "idle"}})
    assert parse_client_answer(known.encode(), NODE_ID).known
    older = json.dumps({"error_code": 0, "data": {"node_id": NODE_ID, "version": "0.3.7.3"}})
    assert parse_client_answer(older.encode(), NODE_ID).known
    cases = {
        json.dumps({"errcode": -1, "message": "list node timeout"}): "error -1: list node timeout",
        json.dumps({"error_code": 1, "error_message": "Invalid JSON"}): "Invalid JSON",
        json.dumps({"errcode": 0, "message": {}}): "no machine information",
        json.dumps({"errcode": 0, "message": {"node_id": OTHER_ID}}): "another node",
        "<html>502 Bad Gateway</html>": "not JSON",
        "[]": "not a JSON object",
    }
    for body, said in cases.items():
        answer = parse_client_answer(body.encode(), NODE_ID)
        assert not answer.known and said in answer.said, (body, answer)
    assert mining_nodes_url("http://10.0.0.5:5052/") == "http://10.0.0.5:5052/api/v1/mining_nodes"
    with pytest.raises(ValueError, match="not an http:// URL"):
        mining_nodes_url("10.0.0.5:5052")


# --- real datagrams on loopback ----------------------------------------------------------



def test_broadcast_of_this_node_heard(sender: Sender) -> None:
    port = free_udp_port()
    sender(port, [message(OTHER_ID), message(NODE_ID, "empty")])
    start = time.monotonic()
    heard = listen_broadcast(NODE_ID, 10, port=port, address="127.0.0.1")
    assert heard.own is not None and heard.own.status == "empty"
    assert time.monotonic() - start < 5  # stops at the first message of the node
    assert heard.others == {OTHER_ID: 1}


def test_only_other_nodes_heard(sender: Sender) -> None:
    port = free_udp_port()
    sender(port, [message(OTHER_ID)])
    heard = listen_broadcast(NODE_ID, 0.6, port=port, address="127.0.0.1")
    assert heard.own is None and heard.others[OTHER_ID] >= 2 and not heard.garbage


def test_garbage_heard_and_shortened(sender: Sender) -> None:
    port = free_udp_port()
    sender(port, [b"x" * 500])
    heard = listen_broadcast(NODE_ID, 0.4, port=port, address="127.0.0.1")
    assert heard.own is None and heard.garbage
    assert "127.0.0.1: not base64 of JSON" in heard.garbage[0]
    assert "(500 characters)" in heard.garbage[0] and len(heard.garbage[0]) < 300


def test_nothing_heard_in_time() -> None:
    start = time.monotonic()
    heard = listen_broadcast(NODE_ID, 0.5, port=free_udp_port(), address="127.0.0.1")
    assert heard.own is None and not heard.others and not heard.garbage
    assert 0.45 < time.monotonic() - start < 2


# --- a real HTTP server that answers as a client node ------------------------------------


@pytest.mark.parametrize("mode,known,said", [
    ("found", True, "RTX 3090"),
    ("not_found", False, "error -1: list node timeout"),
    ("error", False, "HTTP 500: error -32603: internal error"),
    ("silence", False, "no answer within 1 s"),
])
def test_client_node_asked(client_node: str, mode: str, known: bool, said: str) -> None:
    ClientNode.mode = mode
    start = time.monotonic()
    answer = ask_client(client_node, NODE_ID, timeout=1)
    assert answer.known is known and said in answer.said
    assert time.monotonic() - start < 2.5
    assert ClientNode.requests == [{"path": "/api/v1/mining_nodes",
                                    "body": {"peer_nodes_list": [NODE_ID], "additional": {}}}]


def test_client_node_not_there() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    answer = ask_client(f"http://127.0.0.1:{port}", NODE_ID, timeout=1)
    assert not answer.known and "cannot connect" in answer.said


