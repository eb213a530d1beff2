"""The pytest plugin: options, targets, per-node parametrization, outcomes and the summary.

Sub-plugins (the test VM, the guest, the report) register themselves through
``pytest_plugins`` below so that one ``conftest.py`` line enables everything.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any, Callable, TypeVar

import pytest

from dbc_accept import gpuids
from dbc_accept.facts import HostFacts
from dbc_accept.hosts import HostsError, testinfra_hosts
from dbc_accept.messages import t
from dbc_accept.options import add_options
from dbc_accept.settings import settings
from dbc_accept.snapshot import REFUSED_EXIT, SnapshotError, SnapshotRefused, SnapshotTarget
from dbc_accept.target import LocalTarget, Target
from dbc_accept.verdict import CheckFailed, FactError, Finding, ItemRecord, begin_item, end_item

pytest_plugins = [
    "dbc_accept.guest.workers",  # in-guest tests refuse xdist's -n (one test VM per run)
    "dbc_accept.guest.fixtures",  # the `guest` fixture: vm, ssh:// or local
    "dbc_accept.prereqs",  # a check whose prerequisite is missing skips behind its owner
    "dbc_accept.report.plugin",  # pytest-html extras, the result folder
    "dbc_accept.rootdir",  # the suite's configuration when `--opt DIR` hid it
    "dbc_accept.fleet",  # remote nodes read in a few round trips, once per run
    "dbc_accept.terminal",  # each finding once, fixes grouped, the verdict line last
]

NODES_KEY = pytest.StashKey["list[HostFacts]"]()
RECORD_KEY = pytest.StashKey[ItemRecord]()
FINDINGS_KEY = pytest.StashKey["list[tuple[str, Finding]]"]()

F = TypeVar("F", bound=Callable[..., Any])
ItemsFn = Callable[[HostFacts], "Iterable[tuple[str, Any]]"]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def each(items: ItemsFn, empty: str) -> Callable[[F], F]:
    """Parametrize a host test per item of a node: ``items(facts) -> [(id, value), ...]``.

    The test takes the parameters ``node`` (HostFacts) and ``entry`` (the value; not ``item``,
    which reads as a pytest item). ``empty`` is the skip reason shown when a node has none.
    """

    def mark(fn: F) -> F:
        fn.dbc_each = (items, empty)  # type: ignore[attr-defined]
        return fn

    return mark


def _targets(config: pytest.Config) -> list[Target]:
    snapshot = settings(config).snapshot
    if snapshot:
        try:
            return [SnapshotTarget(snapshot)]
        except SnapshotRefused as exc:  # an unsafe snapshot: one line, its own exit status
            pytest.exit(f"--snapshot {snapshot}: {exc}", returncode=REFUSED_EXIT)
        except SnapshotError as exc:
            raise pytest.UsageError(f"--snapshot {snapshot}: {exc}") from None
    hosts = _testinfra_hosts(config)
    if hosts:
        from dbc_accept.fleet import remote_target  # the sub-plugin, loaded by then

        return [remote_target(config, host, name) for name, host in hosts]
    return [LocalTarget()]


def _testinfra_hosts(config: pytest.Config) -> list[tuple[str, Any]]:
    """(name, testinfra host) for each node of ``--hosts`` / ``--ansible-inventory``."""
    opt = config.option

    def warn(text: str) -> None:
        config.issue_config_time_warning(pytest.PytestConfigWarning(text), stacklevel=2)

    try:
        return testinfra_hosts(
            getattr(opt, "hosts", None), getattr(opt, "ansible_inventory", None), warn=warn,
            connection=getattr(opt, "connection", None),
            ssh_config=getattr(opt, "ssh_config", None),
            ssh_identity_file=getattr(opt, "ssh_identity_file", None),
            sudo=getattr(opt, "sudo", False), sudo_user=getattr(opt, "sudo_user", None),
            force_ansible=getattr(opt, "force_ansible", False),
            timeout=int(max(1.0, getattr(opt, "dbc_node_connect_timeout", 10.0))))
    except HostsError as exc:
        raise pytest.UsageError(str(exc)) from None


def nodes(config: pytest.Config) -> list[HostFacts]:
    """The nodes of this run, made on first use (so runs without host tests pay nothing)."""
    if NODES_KEY not in config.stash:
        opts = settings(config).node_options()
        config.stash[NODES_KEY] = [HostFacts(t, opts) for t in _targets(config)]
    return config.stash[NODES_KEY]


def pytest_configure(config: pytest.Config) -> None:
    found = settings(config)  # a bad option value is a usage error here
    config.stash[FINDINGS_KEY] = []
    gpuids.set_gpu_ids(found.gpu_ids)
    config.pluginmanager.register(_FindingsCollector(config), "dbc-accept-findings")
    if found.snapshot:
        nodes(config)  # a snapshot of the wrong format is a usage error, reported now
    elif getattr(config.option, "hosts", None) or getattr(config.option, "ansible_inventory", None):
        nodes(config)  # a bad --hosts is a usage error now, not a collection error later


def pytest_unconfigure(config: pytest.Config) -> None:
    gpuids.reset()  # the next run in this process reads its own --gpu-ids


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "node" not in metafunc.fixturenames:
        return
    spec = getattr(metafunc.function, "dbc_each", None)
    all_nodes = nodes(metafunc.config)
    if spec is None:
        metafunc.parametrize("node", all_nodes, ids=[n.name for n in all_nodes])
        return
    items_fn, empty = spec
    params = []
    for node in all_nodes:
        try:
            found = list(items_fn(node))
        except Exception as exc:  # collection must go on; the test reports why
            err = exc if isinstance(exc, FactError) else FactError(
                getattr(items_fn, "__name__", "items"), f"{type(exc).__name__}: {exc}",
                verb="list")
            params.append(pytest.param(node, err, id=f"{node.name}-unreadable"))
            continue
        if not found:
            params.append(pytest.param(node, None, id=f"{node.name}-none",
                                       marks=pytest.mark.skip(reason=f"{node.name}: {empty}")))
        params.extend(pytest.param(node, value, id=f"{node.name}-{ident}")
                      for ident, value in found)
    metafunc.parametrize("node,entry", params)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    record = ItemRecord()
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec else {}
    if isinstance(params.get("node"), HostFacts):
        record.node = params["node"].name
    item.stash[RECORD_KEY] = record
    token = begin_item(record)
    try:
        if isinstance(params.get("entry"), FactError):
            raise params["entry"]
        return (yield)
    finally:
        end_item(token)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when != "call":
        return report
    record = item.stash.get(RECORD_KEY, None)
    if record is not None:
        report.user_properties.append(("dbc_findings", [f.as_dict() for f in record.findings]))
        if record.observed:
            report.user_properties.append(("dbc_observed", record.observed))
    if call.excinfo is not None and isinstance(call.excinfo.value, (FactError, CheckFailed)):
        # The message already says what, expected and fix; a traceback adds only noise.
        exc = call.excinfo.value
        prefix = ""
        if record and record.node and isinstance(exc, FactError):
            prefix = f"{t('FAIL')} {t('on_node')} {record.node}\n  "
        report.longrepr = f"{prefix}{exc}"
    return report


def pytest_report_teststatus(report: pytest.TestReport) -> tuple[str, str, str] | None:
    if report.when == "call" and report.passed and _findings_of(report):
        return "passed", "W", "WARN"
    return None


def _findings_of(report: pytest.TestReport) -> list[dict[str, Any]]:
    for key, value in report.user_properties:
        if key == "dbc_findings":
            return list(value) if isinstance(value, list) else []
    return []


class _FindingsCollector:
    """Keeps the run's findings in the stash (on xdist's controller: of all workers)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for f in _findings_of(report):
            # A FAIL the test caught itself (pytest.raises) is not the node's problem.
            if f.get("level") == "fail" and not report.failed:
                continue
            self.config.stash[FINDINGS_KEY].append((report.nodeid, Finding(**f)))


def session_findings(config: pytest.Config) -> list[tuple[str, Finding]]:
    """Every finding of the run so far."""
    found: list[tuple[str, Finding]] = config.stash.get(FINDINGS_KEY, [])
    return list(found)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    from dbc_accept.terminal import write_fixes

    write_fixes(terminalreporter, session_findings(config))
