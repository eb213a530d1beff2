"""Remote nodes read in a few round trips: the same verdicts, and failures that stay local.

The nodes are this machine behind sshd servers on 127.0.0.1 (``selftests/fleet_nodes.py``)
whose PATH holds the machine's own python3, without the libvirt module, as on a node set up
by the install guide: libvirt is read through virsh there. Each sshd logs every remote
command it starts, so the round trips are counted on the node's side.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbc_accept.facts import NodeOptions
from dbc_accept.facts.registry import all_gatherers
from dbc_accept.fleet import node_of
from dbc_accept.nodecache import NodeReadTarget, declared
from dbc_accept.report.fleet_table import COLUMNS, fleet_csv, fleet_rows
from dbc_accept.report.results import TestResult
from dbc_accept.target import LocalTarget, Target
from selftests.fleet_nodes import Fleet, fleet, free_port
from selftests.test_remote_target import _by_test, _host_run

pytest_plugins = ["pytester"]

MAX_ROUND_TRIPS = 5


@pytest.fixture(scope="module")
def nodes() -> Iterator[Fleet]:
    with fleet() as made:
        made.loopback()
        made.loopback()
        yield made


def _remote(nodes: Fleet, *which: int) -> tuple[str, ...]:
    hosts = ",".join(nodes.nodes[i].spec for i in which)
    return (f"--hosts={hosts}", f"--ssh-identity-file={nodes.nodes[which[0]].key}",
            f"--ssh-config={nodes.ssh_config}")


# --- the batched reader, on this machine ------------------------------------------------


def _gathered(target: Target, gatherer: object) -> object:
    try:
        return gatherer(target)  # type: ignore[operator]
    except Exception as exc:  # compared as what was raised
        return f"{type(exc).__name__}: {exc}"


def test_every_gatherer_reads_the_same_from_the_batch_without_asking_again() -> None:
    # This machine is live: a mount or process of another job can change between the two
    # reads, so a difference must persist over three fresh pairs of reads to count.
    differ: set[str] = {g.__name__ for g in all_gatherers()}
    for _attempt in range(3):
        batch = NodeReadTarget(LocalTarget(), NodeOptions())
        batch.prefetch()
        assert batch.error is None
        local = LocalTarget()
        differ = {g.__name__ for g in all_gatherers()
                  if g.__name__ in differ and _gathered(batch, g) != _gathered(local, g)}
        assert batch.misses == []  # every read of every gatherer came from the two answers
        if not differ:
            break
    assert not differ


def test_batch_keeps_how_each_read_failed(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x\r\ny")
    (tmp_path / "folder").mkdir()
    os.symlink("nowhere", tmp_path / "dangling")
    paths = [str(tmp_path / n) for n in ("file", "folder", "missing", "file/below", "dangling")]
    batch = NodeReadTarget(LocalTarget(), NodeOptions())
    batch._ask({"files": paths, "links": paths, "lists": paths})
    batch.fetched = True
    local = LocalTarget()
    for op in ("read_text", "read_link", "list_dir"):
        for path in paths:
            assert _gathered_op(batch, op, path) == _gathered_op(local, op, path), (op, path)
    assert batch.misses == []


def _gathered_op(target: Target, op: str, path: str) -> object:
    try:
        return getattr(target, op)(path)
    except OSError as exc:
        return (type(exc).__name__, exc.errno)


def test_declared_set_follows_the_options() -> None:
    request = declared(NodeOptions(libvirt_uri="qemu:///system", vm_image="/srv/t.qcow2"))
    argvs = [" ".join(argv) for argv, _ in request["cmds"]]
    assert any(a.endswith(" qemu:///system") and a.startswith("python3 -c") for a in argvs)
    assert any(a.endswith("-- /srv/t.qcow2") for a in argvs)
    assert "/srv" in request["lists"]


def test_a_test_id_names_its_node() -> None:
    names = sorted(["paramiko://n1:22", "paramiko://n1:2222"], key=len, reverse=True)
    assert node_of("t.py::test_x[paramiko://n1:2222-0000:01:00.0]", names) == names[0]
    assert node_of("t.py::test_x[paramiko://n1:22]", names) == "paramiko://n1:22"
    assert node_of("t.py::test_vm", names) is None


# --- over SSH -----------------------------------------------------------------------------


def _compare(pytester: pytest.Pytester, nodes: Fleet, *extra: str) -> dict[str, tuple[str, str]]:
    """Test id -> (here, over SSH) for the ids whose outcome differs."""
    _, local = _host_run(pytester)
    _, far = _host_run(pytester, *_remote(nodes, 0), *extra)
    here, there = _by_test(local, "local"), _by_test(far, nodes.nodes[0].name)
    assert len(here) > 60 and set(here) == set(there)
    return {k: (here[k], there[k]) for k in here if here[k] != there[k]}


def test_remote_equals_local_on_every_test_id(pytester: pytest.Pytester, nodes: Fleet) -> None:
    before = nodes.nodes[0].sessions()
    differ = _compare(pytester, nodes)
    trips = nodes.nodes[0].sessions() - before
    if differ:  # libvirt's domains, the process list: other runs on this machine change them
        differ = _compare(pytester, nodes)
    assert not differ
    assert trips == 2  # the declared set, then the dbc folders: nothing read outside them


def test_batch_equals_one_command_per_file(pytester: pytest.Pytester, nodes: Fleet) -> None:
    _, each = _host_run(pytester, *_remote(nodes, 0), "--node-read=each")
    _, batch = _host_run(pytester, *_remote(nodes, 0))
    if each != batch:
        _, each = _host_run(pytester, *_remote(nodes, 0), "--node-read=each")
    assert each == batch and len(batch) > 60


def test_xdist_reads_each_node_once(pytester: pytest.Pytester, nodes: Fleet) -> None:
    before = [n.sessions() for n in nodes.nodes]
    reports = pytester.path / "reports"
    result, found = _host_run(pytester, "-n", "2", *_remote(nodes, 0, 1),
                              report=(f"--report-dir={reports}",))
    trips = [n.sessions() - b for n, b in zip(nodes.nodes, before)]
    assert all(0 < t <= MAX_ROUND_TRIPS for t in trips), trips
    first, second = (_by_test(found, n.name) for n in nodes.nodes)
    assert first == second and len(first) > 60
    names = [n.name for n in nodes.nodes]
    for name, count in zip(names, trips):  # what the run counted is what the node saw
        result.stdout.fnmatch_lines([f"{name}: {count} remote commands"])
    _check_fleet_report(next(reports.glob("*/")), names, first)


def _check_fleet_report(folder: Path, names: list[str], outcomes: dict[str, str]) -> None:
    with (folder / "fleet.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["node"] for r in rows] == names
    fails = list(outcomes.values()).count("failure")
    for row in rows:
        assert row["verdict"] in (("FAIL",) if fails else ("PASS", "WARN"))
        assert int(row["fails"]) == fails and (row["first_fix"] or not fails)
        assert 0 < int(row["remote_commands"]) <= MAX_ROUND_TRIPS
    results = json.loads((folder / "results.json").read_text())
    assert {t["node"] for t in results["tests"]} == set(names)
    info = json.loads((folder / "system_info.json").read_text())
    assert sorted(info["nodes"]) == sorted(names)
    assert all("kernel" in i for i in info["nodes"].values())
    assert "<h2>Nodes</h2>" in (folder / "report.html").read_text(encoding="utf-8")


def test_fleet_rows_verdicts() -> None:
    results = [TestResult("t[a]", node="a", outcome="warned",
                          findings=[{"fix": "warn fix", "level": "warn"}]),
               TestResult("u[a]", node="a", outcome="failed",
                          findings=[{"fix": "the fix", "level": "fail"}]),
               TestResult("t[b]", node="b", outcome="warned",
                          findings=[{"fix": "warn fix", "level": "warn"}]),
               TestResult("t[c]", node="c", outcome="passed"),
               TestResult("t[d]", node="d", outcome="failed", message="could not read d\n")]
    rows = fleet_rows(results, ["a", "b", "c", "d"], {"d": "cannot connect"}, {"a": 2})
    assert [(r["verdict"], r["fails"], r["first_fix"]) for r in rows] == [
        ("FAIL", 1, "the fix"), ("WARN", 0, "warn fix"), ("PASS", 0, ""),
        ("UNREACHABLE", 1, "could not read d")]
    assert fleet_csv(rows).splitlines()[0] == ",".join(COLUMNS)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_unreachable_nodes_fail_once_within_their_timeout(pytester: pytest.Pytester,
                                                          nodes: Fleet, workers: str) -> None:
    silent = socket.socket()  # accepts, then says nothing (no SSH banner)
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    refused = f"paramiko://root@127.0.0.1:{free_port()}"
    quiet = f"paramiko://root@127.0.0.1:{silent.getsockname()[1]}"
    args = _remote(nodes, 0)
    hosts = f"{args[0]},{refused},{quiet}"
    started = time.monotonic()
    with silent:
        result, found = _host_run(pytester, hosts, *args[1:], "--node-connect-timeout=3",
                                  "-rfs", "-n", workers)
    assert time.monotonic() - started < 60
    assert len(_by_test(found, nodes.nodes[0].name)) > 60  # the good node was checked
    for spec in (refused, quiet):
        name = spec.replace("root@", "")
        mine = _by_test(found, name)
        assert list(mine.values()).count("failure") == 1, mine
        assert set(mine.values()) == {"failure", "skipped"}
        fixes = [ln for ln in result.stdout.lines if ln.lstrip().startswith("FAIL test")
                 and name in ln]
        assert len(fixes) == 1, fixes  # "what to fix" lists the node once
    result.stdout.fnmatch_lines(["*:* remote commands; cannot be read: cannot connect:*"])
    result.stdout.fnmatch_lines(["*no answer within 3 s to connect*"])


def test_snapshot_of_a_remote_node_in_a_few_commands(tmp_path: Path, nodes: Fleet) -> None:
    from dbc_accept.cli import main

    node = nodes.nodes[1]
    before = node.sessions()
    assert main(["snapshot", str(tmp_path / "snap"), f"--hosts={node.spec}",
                 f"--ssh-identity-file={node.key}", f"--ssh-config={nodes.ssh_config}"]) == 0
    assert 0 < node.sessions() - before <= MAX_ROUND_TRIPS
    assert (tmp_path / "snap" / "fs" / "proc" / "cmdline").read_text() == \
        Path("/proc/cmdline").read_text()


class _SilentBackend:
    NAME = "ssh"

    @staticmethod
    def get_pytest_id() -> str:
        return "ssh://silent"


class _SilentHost:
    """A node that stopped answering: every command hangs."""

    backend = _SilentBackend()

    def __init__(self) -> None:
        self.calls = 0

    def run(self, *args: str) -> None:
        self.calls += 1
        time.sleep(30)


def test_a_node_that_stops_answering_costs_its_timeout_once() -> None:
    from dbc_accept.target import TestinfraTarget
    from dbc_accept.verdict import FactError

    host = _SilentHost()
    target = TestinfraTarget(host, timeout=0.5)
    started = time.monotonic()
    for _ in range(3):
        with pytest.raises(FactError, match=r"stopped answering: no answer within 0.5 s"):
            target.read_text("/proc/cmdline")
    assert time.monotonic() - started < 3 and host.calls == 1


@pytest.mark.parametrize("option", ["--node-timeout=0", "--node-connect-timeout=-1"])
def test_bad_node_timeouts_are_usage_errors(pytester: pytest.Pytester, option: str) -> None:
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--no-report", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*give seconds, more than 0 and at most 3600*"])


TEST_NODE = """<node>
  <domain type="test"><name>tagged</name><memory>1048576</memory><os><type>hvm</type></os>
    <metadata><vm xmlns="urn:dbc-accept:vm:1"/></metadata>
    <devices><hostdev mode="subsystem" type="pci" managed="yes"><source>
      <address domain="0x0000" bus="0x17" slot="0x00" function="0x1"/></source></hostdev>
    </devices></domain>
  <domain type="test"><name>other</name><memory>1048576</memory><os><type>hvm</type></os>
  </domain>
  <network><name>default</name><bridge name="virbr9"/></network>
</node>
"""


def test_virsh_probe_sees_what_the_libvirt_module_sees(tmp_path: Path) -> None:
    """libvirt's test driver, a tagged domain with a GPU function and an untagged one."""
    import shutil

    from dbc_accept.facts.libvirtconn import PROBE, VIRSH_PROBE, parse_probe

    pytest.importorskip("libvirt", reason="the comparison needs libvirt-python")
    if shutil.which("virsh") is None:
        from selftests.prereq import unavailable

        unavailable("needs virsh (apt-get install libvirt-clients)")
    (tmp_path / "node.xml").write_text(TEST_NODE)
    uri = f"test://{tmp_path / 'node.xml'}"
    local = LocalTarget()
    by_module = parse_probe(local.run(["python3", "-c", PROBE, uri]).stdout, uri)
    by_virsh = parse_probe(local.run(["python3", "-c", VIRSH_PROBE, uri]).stdout, uri)
    assert by_virsh == by_module
    assert [(d.name, d.tagged, d.hostdevs) for d in by_virsh.domains] == [
        ("other", False, ()), ("tagged", True, ("0000:17:00.1",))]
