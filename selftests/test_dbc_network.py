"""The node on the network: parsers, real UDP datagrams on loopback, a real HTTP server on
127.0.0.1 that answers as a DBC client node does, and whole runs of tests_host's checks."""

from __future__ import annotations

import base64
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from dbc_accept.facts.dbcnode import CoreConf
from dbc_accept.facts.network_node import (
    NodeConf,
    ask_client,
    conf_ports,
    gather_node_confs,
    listen_broadcast,
    mining_nodes_url,
    parse_broadcast,
    parse_client_answer,
    parse_host_port,
    port_clashes,
)
from dbc_accept.target import LocalTarget

ROOT = Path(__file__).resolve().parent.parent
NODE_ID = "2gfpp3MAB4Aa1f0fA5bWq5fV1vKrpWD4xcCSMcdxbZ6o"
OTHER_ID = "2gfpp3MAB4AaOtherNodeOtherNodeOtherNodeOther"


def message(node_id: str, status: str = "renting") -> bytes:
    return base64.b64encode(json.dumps({"node_id": node_id, "status": status}).encode())


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


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Sender = Callable[[int, List[bytes]], Callable[[], None]]


@pytest.fixture
def sender() -> Iterator[Sender]:
    """Sends datagrams to 127.0.0.1:port every 0.1 s, in turn; returns how to stop it."""
    stops: list[Callable[[], None]] = []

    def start(port: int, datagrams: list[bytes]) -> Callable[[], None]:
        stop = threading.Event()

        def loop() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                i = 0
                while not stop.wait(0.1):
                    sock.sendto(datagrams[i % len(datagrams)], ("127.0.0.1", port))
                    i += 1
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join(5)
        stops.append(halt)
        return halt

    yield start
    for halt in stops:
        halt()


def test_broadcast_of_this_node_heard(sender: Sender) -> None:
    port = _free_udp_port()
    sender(port, [message(OTHER_ID), message(NODE_ID, "empty")])
    start = time.monotonic()
    heard = listen_broadcast(NODE_ID, 10, port=port, address="127.0.0.1")
    assert heard.own is not None and heard.own.status == "empty"
    assert time.monotonic() - start < 5  # stops at the first message of the node
    assert heard.others == {OTHER_ID: 1}


def test_only_other_nodes_heard(sender: Sender) -> None:
    port = _free_udp_port()
    sender(port, [message(OTHER_ID)])
    heard = listen_broadcast(NODE_ID, 0.6, port=port, address="127.0.0.1")
    assert heard.own is None and heard.others[OTHER_ID] >= 2 and not heard.garbage


def test_garbage_heard_and_shortened(sender: Sender) -> None:
    port = _free_udp_port()
    sender(port, [b"x" * 500])
    heard = listen_broadcast(NODE_ID, 0.4, port=port, address="127.0.0.1")
    assert heard.own is None and heard.garbage
    assert "127.0.0.1: not base64 of JSON" in heard.garbage[0]
    assert "(500 characters)" in heard.garbage[0] and len(heard.garbage[0]) < 300


def test_nothing_heard_in_time() -> None:
    start = time.monotonic()
    heard = listen_broadcast(NODE_ID, 0.5, port=_free_udp_port(), address="127.0.0.1")
    assert heard.own is None and not heard.others and not heard.garbage
    assert 0.45 < time.monotonic() - start < 2


# --- a real HTTP server that answers as a client node ------------------------------------


class ClientNode(http.server.BaseHTTPRequestHandler):
    """Answers POST /api/v1/mining_nodes according to the class attribute ``mode``."""

    mode = "found"
    requests: list[dict[str, object]] = []  # noqa: RUF012 - shared on purpose, read by tests

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body})
        if self.mode == "silence":
            time.sleep(3)
            return
        status, reply = {
            "found": (200, {"errcode": 0, "message": {"gpu": "4 x RTX 3090", "state": "idle"}}),
            "not_found": (200, {"errcode": -1, "message": "list node timeout"}),
            "error": (500, {"error_code": -32603, "error_message": "internal error"}),
        }[self.mode]
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet


@pytest.fixture
def client_node() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ClientNode)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ClientNode.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


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


# --- whole runs of tests_host/test_dbc_network.py ----------------------------------------


def _install(folder: Path, conf: str) -> Path:
    (folder / "conf").mkdir(parents=True)
    (folder / "dat").mkdir()
    (folder / "conf" / "core.conf").write_text(conf)
    (folder / "dat" / "node.dat").write_text(
        f"node_id={NODE_ID}\nnode_private_key=5JabcPrivateKeyNeverShown\n")
    return folder


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), "--no-report", "-rA",
        "-p", "no:randomly", str(ROOT / "tests_host" / "test_dbc_network.py"), *args)


# Ports no real dbc node uses: a dbc node running on the test machine cannot clash with them.
GOOD_CONF = ("net_listen_port=47301\nhttp_ip=127.0.0.1\nhttp_port=47302\n"
             "dbc_monitor_server=115.231.234.34:5005\nminer_monitor_server=10.0.0.9:5006\n")


def test_run_monitor_settings(pytester: pytest.Pytester, tmp_path: Path) -> None:
    # The port check reads every dbc node running on this machine: its own test is below.
    good = _install(tmp_path / "good", GOOD_CONF)
    _run(pytester, f"--dbc-dir={good}", "-k", "monitor").assert_outcomes(passed=2)
    absent = _install(tmp_path / "absent", "net_listen_port=47301\nhttp_port=47302\n")
    result = _run(pytester, f"--dbc-dir={absent}", "-k", "monitor")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*WARN fix:*dbc_monitor_server=ip:port*",
                                 "*WARN *test_monitor_server*dbc_monitor_server*"
                                 "expected: dbc_monitor_server=host:port (DBC's monitor*"])
    bad = _install(tmp_path / "bad", GOOD_CONF.replace("10.0.0.9:5006", "10.0.0.9"))
    result = _run(pytester, f"--dbc-dir={bad}", "-k", "monitor")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*miner_monitor_server=10.0.0.9: '10.0.0.9' is not host:port*"])


def test_run_skips_network_checks_with_the_option_named(pytester: pytest.Pytester,
                                                        tmp_path: Path) -> None:
    result = _run(pytester, f"--dbc-dir={_install(tmp_path / 'n', GOOD_CONF)}")
    result.stdout.fnmatch_lines(["*SKIPPED*--listen-broadcast SECONDS not given*",
                                 "*SKIPPED*--dbc-client URL not given*"])


def test_run_broadcast_and_client(pytester: pytest.Pytester, tmp_path: Path, client_node: str,
                                  sender: Sender) -> None:
    """Both cases in one test: they listen on the real port 55555, one at a time."""
    folder = _install(tmp_path / "n", GOOD_CONF)
    ClientNode.mode = "found"
    halt = sender(55555, [message(OTHER_ID), message(NODE_ID, "renting")])
    result = _run(pytester, f"--dbc-dir={folder}", "--listen-broadcast=5",
                  f"--dbc-client={client_node}", "-m", "network")
    result.assert_outcomes(passed=2)
    halt()
    ClientNode.mode = "not_found"
    sender(55555, [b"hello, not base64", message(OTHER_ID)])
    result = _run(pytester, f"--dbc-dir={folder}", "--listen-broadcast=1",
                  f"--dbc-client={client_node}", "-m", "network")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*observed: undecodable: 127.0.0.1: not base64 of JSON*hello, not base64*"
        f"other nodes' messages ignored: {OTHER_ID}*",
        "*observed: POST http://127.0.0.1:*/api/v1/mining_nodes for*waited at most 20 s*"
        "error -1: list node timeout*",
    ])


def test_run_on_a_snapshot_skips_the_network(pytester: pytest.Pytester, tmp_path: Path) -> None:
    result = _run(pytester, f"--snapshot={ROOT / 'selftests/data/snapshots/intel-2204-4gpu'}",
                  "--listen-broadcast=1", "--dbc-client=http://127.0.0.1:9", "-m", "network")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*a snapshot is replayed: --listen-broadcast SECONDS needs*"])


@pytest.fixture
def fake_dbc(tmp_path: Path) -> Iterator[Callable[[Path, str], None]]:
    """Runs processes named `dbc` from install folders (a copy of this Python, asleep)."""
    procs: list[subprocess.Popen[bytes]] = []
    binary = os.path.realpath(sys.executable)

    def start(folder: Path, role: str) -> None:
        exe = folder / "dbc"
        exe.write_bytes(Path(binary).read_bytes())
        exe.chmod(0o755)
        procs.append(subprocess.Popen(
            [str(exe), "-c", "import time; time.sleep(60)", f"--{role}", "-d"],
            env={"PYTHONHOME": sys.base_prefix}))

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_ports_of_two_running_dbc_nodes(pytester: pytest.Pytester, tmp_path: Path,
                                        fake_dbc: Callable[[Path, str], None]) -> None:
    compute = _install(tmp_path / "compute", GOOD_CONF)
    client = _install(tmp_path / "client", "net_listen_port=47303\nhttp_port=47302\n")
    fake_dbc(compute, "compute")
    fake_dbc(client, "client")
    time.sleep(0.3)
    confs = gather_node_confs(LocalTarget())
    assert {(c.folder, c.role) for c in confs} >= {(str(compute), "compute"),
                                                   (str(client), "client")}
    result = _run(pytester, f"--dbc-dir={compute}", "-k", "ports_distinct")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*observed: port 47302 used by {client}/conf/core.conf "
                                 f"http_port and {compute}/conf/core.conf http_port*"])
    (client / "conf" / "core.conf").write_text("net_listen_port=47303\nhttp_port=47304\n")
    _run(pytester, f"--dbc-dir={compute}", "-k", "ports_distinct").assert_outcomes(passed=1)


@pytest.mark.parametrize("option,message", [
    ("--listen-broadcast=0", "--listen-broadcast 0: give the seconds to listen*"),
    ("--listen-broadcast=-5", "--listen-broadcast -5: give the seconds to listen*"),
    ("--dbc-client=10.0.0.5:5052", "*'10.0.0.5:5052' is not an http:// URL*"),
])
def test_run_bad_network_options(pytester: pytest.Pytester, option: str, message: str) -> None:
    result = _run(pytester, option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])


# --- snapshot mode: the file parts replayed from a snapshot --------------------------------

MONITOR = "test_dbc_network.py::test_monitor_server"
PORTS = "test_dbc_network.py::test_ports_distinct_across_dbc_nodes"
CONF = "/home/dbc/dbc_repo/conf/core.conf"


def test_snapshot_monitor_settings_absent_warn(tmp_path: Path) -> None:
    from selftests.snapshot_harness import copy_snapshot

    results = copy_snapshot("intel-2204-4gpu", tmp_path).run("test_dbc_network.py")
    assert results.warned == {f"{MONITOR}[dbc_monitor_server]", f"{MONITOR}[miner_monitor_server]"}
    assert results.failed == set()
    assert results.skipped == {"test_dbc_network.py::test_status_broadcast",
                               "test_dbc_network.py::test_client_node_knows_this_node"}


def test_snapshot_monitor_setting_malformed_fails(tmp_path: Path) -> None:
    from selftests.snapshot_harness import copy_snapshot

    snap = copy_snapshot("intel-2204-4gpu", tmp_path)
    snap.append(CONF, "dbc_monitor_server=115.231.234.34:5005\nminer_monitor_server=10.0.0.9\n")
    results = snap.run("test_dbc_network.py")
    assert results.failed == {f"{MONITOR}[miner_monitor_server]"}
    message = results.message(f"{MONITOR}[miner_monitor_server]")
    assert "'10.0.0.9' is not host:port" in message and "miner_monitor_server=ip:port" in message


def test_snapshot_client_node_with_a_clashing_port_fails(tmp_path: Path) -> None:
    from selftests.snapshot_harness import copy_snapshot

    snap = copy_snapshot("intel-2204-4gpu", tmp_path)
    snap.write("/proc/3001/comm", "dbc\n")
    snap.write("/proc/3001/cmdline", "/home/dbc/client/dbc\0--client\0-d\0")
    snap.link("/proc/3001/exe", "/home/dbc/client/dbc")
    snap.write("/home/dbc/client/conf/core.conf", "net_listen_port=5003\nhttp_port=5002\n")
    results = snap.run("test_dbc_network.py")
    assert PORTS in results.failed
    assert ("port 5002 used by /home/dbc/client/conf/core.conf http_port and "
            f"{CONF} http_port") in results.message(PORTS)
    snap.write("/home/dbc/client/conf/core.conf", "net_listen_port=5003\nhttp_port=5004\n")
    assert PORTS not in snap.run("test_dbc_network.py").failed
