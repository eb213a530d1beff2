"""Many nodes at once: each remote node read in a few round trips, once, by one process.

- Every ``--hosts`` / ``--ansible-inventory`` node is served through a
  :class:`~dbc_accept.nodecache.NodeReadTarget`; the nodes are read in parallel before
  collection (``--node-connect-timeout`` and ``--node-timeout`` bound each one).
- Under pytest-xdist the controller reads them and hands the answers to every worker with
  its start-up data, so that no worker asks a node again; the tests of one node all go to
  one worker (:class:`NodeScheduling`), so what the set does not hold is asked once.
- The remote commands of each node are counted and reported (terminal and results).
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.messages import t
from dbc_accept.nodecache import NodeReadTarget
from dbc_accept.remedies import remedy_for
from dbc_accept.report.fleet_table import fleet_rows
from dbc_accept.report.results import TestResult
from dbc_accept.settings import settings
from dbc_accept.target import Target, TestinfraTarget
from dbc_accept.verdict import FactError, Finding

WORKER_KEY = "dbc_node_reads"
TRIPS_KEY = "dbc_round_trips"
TRIPS_STASH = pytest.StashKey["dict[str, int]"]()
LOST_STASH = pytest.StashKey["dict[str, tuple[str, str]]"]()  # node -> (test id, why)
MAX_PARALLEL = 32  # nodes read at once


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("dbc-accept")
    g.addoption("--node-connect-timeout", dest="dbc_node_connect_timeout", type=float,
                default=10.0, metavar="SECONDS",
                help="time to connect and log in to a remote node (default: 10)")
    g.addoption("--node-timeout", dest="dbc_node_timeout", type=float, default=120.0,
                metavar="SECONDS",
                help="time one remote command may take before its node counts as lost "
                     "(default: 120)")
    g.addoption("--node-read", dest="dbc_node_read", default="batch", choices=("batch", "each"),
                help="read remote nodes in a few batched commands (default) or one command "
                     "per file, as before (for comparison)")


def remote_target(config: pytest.Config, host: Any, name: str) -> Target:
    """The target of one remote node, as the options ask."""
    found = settings(config)
    inner = TestinfraTarget(host, name, timeout=found.node_timeout,
                            connect_timeout=found.node_connect_timeout)
    if found.node_read == "each":
        return inner
    return NodeReadTarget(inner, found.node_options())


def batched(targets: list[Target]) -> list[NodeReadTarget]:
    return [t for t in targets if isinstance(t, NodeReadTarget)]


def prefetch_all(targets: list[NodeReadTarget]) -> None:
    """Read every node, in parallel (each its two rounds)."""
    todo = [t for t in targets if not t.fetched]
    if not todo:
        return
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(todo))) as pool:
        list(pool.map(lambda t: t.prefetch(), todo))


def pack(targets: list[NodeReadTarget]) -> str:
    """The answers of every node, for a worker's start-up data."""
    doc = {t.name: t.export() for t in targets}
    return base64.b64encode(zlib.compress(json.dumps(doc).encode("utf-8"), 6)).decode("ascii")


def unpack(blob: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(zlib.decompress(base64.b64decode(blob)).decode("utf-8"))
    return doc


def round_trips(target: Target) -> int | None:
    """Remote commands run for this node in this process (None: not a remote node)."""
    inner = target.inner if isinstance(target, NodeReadTarget) else target
    return inner.round_trips if isinstance(inner, TestinfraTarget) else None


def _targets(config: pytest.Config) -> list[Target]:
    from dbc_accept.plugin import nodes

    return [n.target for n in nodes(config)]


def _remote_run(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "hosts", None)
                or getattr(config.option, "ansible_inventory", None))


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[TRIPS_STASH] = {}
    config.stash[LOST_STASH] = {}
    if not _remote_run(config) or settings(config).snapshot:
        return
    targets = batched(_targets(config))
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and WORKER_KEY in workerinput:
        answers = unpack(workerinput[WORKER_KEY])
        for t in targets:
            if t.name in answers:
                t.load(answers[t.name])
        return
    prefetch_all(targets)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistController(config, targets), "dbc-accept-xdist")


class XdistController:
    """The controller side under xdist: answers to the workers, one node per worker."""

    def __init__(self, config: pytest.Config, targets: list[NodeReadTarget]) -> None:
        self.config = config
        self.blob = pack(targets)
        self.names = sorted((t.name for t in targets), key=len, reverse=True)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[WORKER_KEY] = self.blob

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if getattr(config.option, "dist", "load") != "load":
            return None  # the user chose a distribution: keep it
        return make_scheduler(config, log, self.names)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        found = getattr(node, "workeroutput", {}).get(TRIPS_KEY, {})
        totals = self.config.stash[TRIPS_STASH]
        for name, count in found.items():
            totals[name] = totals.get(name, 0) + int(count)


def node_of(nodeid: str, names: list[str]) -> str | None:
    """The node a test id is about (its parameter id starts with the node's name)."""
    _, _, params = nodeid.partition("[")
    return next((n for n in names if params.startswith(n)), None)  # longest names first


def make_scheduler(config: pytest.Config, log: Any, names: list[str]) -> Any:
    """xdist's load-scope scheduling with a node's tests as one scope."""
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class NodeScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return node_of(nodeid, names) or nodeid

    return NodeScheduling(config, log)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    counts: dict[str, int] = {}
    if _remote_run(config) and not settings(config).snapshot:
        for target in _targets(config):
            count = round_trips(target)
            if count is not None:
                counts[target.name] = count
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[TRIPS_KEY] = counts
        return
    totals: dict[str, int] = config.stash.get(TRIPS_STASH, {})
    for name, count in counts.items():
        totals[name] = totals.get(name, 0) + count


def node_round_trips(config: pytest.Config) -> dict[str, int]:
    """Remote commands per node over the whole run (all workers), at session end."""
    found: dict[str, int] = config.stash.get(TRIPS_STASH, {})
    return dict(found)


# --- a node that cannot be reached: one failure, its other tests skipped -----------------


def node_error(target: Target) -> FactError | None:
    """Why this node cannot be read (None: it can, as far as the run knows)."""
    if isinstance(target, NodeReadTarget):
        if target.error is not None:
            return target.error
        target = target.inner
    return target.unreachable if isinstance(target, TestinfraTarget) else None


def _node_param(item: pytest.Item) -> HostFacts | None:
    callspec = getattr(item, "callspec", None)
    node = callspec.params.get("node") if callspec else None
    return node if isinstance(node, HostFacts) else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    node = _node_param(item)
    lost = item.config.stash.get(LOST_STASH, {}).get(node.name) if node else None
    if node is not None and lost is not None:
        pytest.skip(f"{node.name} cannot be read ({lost[1]}); reported once, by {lost[0]}")


UNREACHABLE_FIX = remedy_for("node.reachable", "en")  # as findings keep it


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """The one failure of a node that cannot be read says so, with the fix for that."""
    report = yield
    node = _node_param(item)
    if node is not None:
        report.user_properties.append(("dbc_node", node.name))
    error = node_error(node.target) if node is not None else None
    lost = item.config.stash.get(LOST_STASH, None)
    if node is None or error is None or lost is None or call.when != "call" or not report.failed:
        return report
    lost.setdefault(node.name, (item.nodeid, error.why))
    finding = Finding("node.reachable", "fail", observed=f"{node.name}: {error.why}",
                      expected="the node answers over SSH", fix=UNREACHABLE_FIX, node=node.name)
    report.user_properties = [(k, v) for k, v in report.user_properties
                              if k != "dbc_findings"] + [("dbc_findings", [finding.as_dict()])]
    report.longrepr = (f"{t('FAIL')} {t('on_node')} {node.name}\n  {error}\n  "
                       f"{t('fix')}: {remedy_for('node.reachable')}")
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    """One line per remote node: its remote commands, or why it could not be read."""
    trips = node_round_trips(config)
    if not trips:
        return
    errors = {t.name: e for t in _targets(config) if (e := node_error(t)) is not None}
    tr = terminalreporter
    tr.section("dbc-accept: remote nodes", sep="-")
    for name in sorted(trips):
        why = f"; cannot be read: {errors[name].why}" if name in errors else ""
        tr.write_line(f"{name}: {trips[name]} remote commands{why}")


def fleet_summary(config: pytest.Config, results: list[TestResult]) -> list[dict[str, Any]]:
    """The report's per-node rows (empty when no test checked a node)."""
    from dbc_accept.plugin import nodes

    if not any(r.node for r in results):
        return []
    found = nodes(config)
    errors = {n.name: e.why for n in found if (e := node_error(n.target)) is not None}
    return fleet_rows(results, [n.name for n in found], errors, node_round_trips(config))


def node_infos(config: pytest.Config) -> dict[str, dict[str, Any]]:
    """system_info of every node, by name (a node that cannot be read says why)."""
    from dbc_accept.facts.sysinfo import system_info
    from dbc_accept.plugin import nodes

    infos = {}
    for node in nodes(config):
        error = node_error(node.target)
        try:
            infos[node.name] = system_info(node.name, None if error else node.target)
        except FactError as exc:
            error = exc
        if error is not None:
            infos[node.name] = {"node": node.name, "error": str(error)}
    return infos
