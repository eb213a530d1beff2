"""Whole runs of tests_host/test_dbc_network.py through pytester, and its file parts replayed
from a snapshot (the node's network helpers in dbc_network_support.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from dbc_accept.facts.network_node import (
    gather_node_confs,
)
from dbc_accept.target import LocalTarget
from selftests.dbc_network_support import (  # noqa: F401 - sender, client_node: fixtures
    NODE_ID,
    OTHER_ID,
    ROOT,
    ClientNode,
    Sender,
    client_node,
    message,
    sender,
)

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
