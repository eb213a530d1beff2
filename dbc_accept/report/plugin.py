"""Report hooks: pytest-html extras, the result folder, the terminal pointer to it.

The folder ``<--report-dir>/<UTC time>-<node>/`` holds report.html (self-contained),
junit.xml, results.json, system_info.json, the benchmark's CSV, JSON and plot, and the
run's attachments. It is written by the controller only (not xdist workers), and only for
runs of acceptance tests (tests_host/, tests_vm/, benchmarks/), never for selftests.
Every file passes through one scrub (:mod:`dbc_accept.report.redact`).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dbc_accept.bench.output import BenchRow
from dbc_accept.report import folder as rf
from dbc_accept.report.attachments import attach, item_attachments, new_session_attachments
from dbc_accept.report.redact import Redactor, redactor
from dbc_accept.report.results import TestResult, props, update
from dbc_accept.secrecy import mask_argv
from dbc_accept.settings import settings

GPU_MARKERS = ("gpu", "benchmark", "vm")
GUEST_TEXTS = (("nvidia-smi -q (guest, at the first GPU test failure)", ["nvidia-smi", "-q"]),
               ("kernel log tail (guest, at the first GPU test failure)", ["dmesg"]))
KERNEL_TAIL_LINES = 200


@dataclass
class ReportState:
    """What the controller gathers for the folder and the HTML report."""

    folder: Path
    redactor: Redactor
    started: float = field(default_factory=time.time)
    info: dict[str, Any] = field(default_factory=dict)
    results: dict[str, TestResult] = field(default_factory=dict)
    attachments: dict[str, str] = field(default_factory=dict)
    user_html: str | None = None
    user_junit: str | None = None
    png: bytes | None = None
    discarded: bool = False  # a usage error: the folder was removed
    min_ratio: float = 0.85  # --bench-min-ratio: the plot's pass line

    @property
    def bench_rows(self) -> list[BenchRow]:
        return [r.bench for r in self.results.values() if r.bench]


STATE_KEY = pytest.StashKey[ReportState]()
GUEST_TEXTS_KEY = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)  # before pytest-html and junitxml read their paths
def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or settings(config).no_report:
        return
    if not rf.acceptance_run(config):
        return
    state = ReportState(rf.make_folder(config), redactor(config))
    # A usage error found later (a bad option value) ends the run before sessionfinish:
    # the folder must not stay behind empty.
    config.add_cleanup(lambda: _drop_if_empty(state.folder))
    opt = config.option
    if hasattr(opt, "htmlpath"):  # pytest-html is installed (it may be disabled with -p no:)
        state.user_html = opt.htmlpath or None
        opt.htmlpath = opt.htmlpath or str(state.folder / "report.html")
        opt.self_contained_html = True  # one file an owner can mail
    state.user_junit = opt.xmlpath or None
    opt.xmlpath = opt.xmlpath or str(state.folder / "junit.xml")
    state.min_ratio = settings(config).bench_min_ratio
    config.stash[STATE_KEY] = state
    config.pluginmanager.register(ReportWriter(config, state), "dbc-accept-report")


def _drop_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()  # only an empty folder: a written report stays


def _system_info(session: pytest.Session, state: ReportState) -> None:
    from dbc_accept.facts.sysinfo import environment_rows, fold_controller, system_info
    from dbc_accept.plugin import nodes
    from dbc_accept.verdict import FactError

    found = nodes(session.config)
    try:
        target = found[0].target if found else None
        state.info = system_info(rf.node_label(session.config), target)
    except FactError as exc:
        state.info = system_info(rf.node_label(session.config), None)
        state.info["error"] = str(exc)
    if len(found) > 1:  # a fleet: each node's own
        from dbc_accept.fleet import node_infos

        state.info["nodes"] = node_infos(session.config)
    try:
        from pytest_metadata.plugin import metadata_key  # type: ignore[import-untyped]
    except ImportError:
        return
    meta = session.config.stash[metadata_key]
    state.info["controller"] = fold_controller(meta, state.info)
    meta.update(environment_rows(state.info))
    meta["Report folder"] = str(state.folder)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Ship the test's and the run's attachments with the report (through xdist too)."""
    report = yield
    if report.failed and report.when == "call":
        _gather_guest_texts(item)
    mine = item_attachments(item)
    if mine:
        report.user_properties.append(("dbc_attachments", mine))
    new = new_session_attachments(item.config)
    if new:
        report.user_properties.append(("dbc_session_attachments", new))
    return report


def _gather_guest_texts(item: pytest.Item) -> None:
    """``nvidia-smi -q`` and the kernel log of the guest, once, at the first GPU failure."""
    config = item.config
    guest = getattr(item, "funcargs", {}).get("guest")
    if guest is None or config.stash.get(GUEST_TEXTS_KEY, False):
        return
    if not any(item.get_closest_marker(m) for m in GPU_MARKERS):
        return
    from dbc_accept.guest.ssh import GuestError  # paramiko itself is imported on use there

    config.stash[GUEST_TEXTS_KEY] = True
    lost = ""
    for name, argv in GUEST_TEXTS:
        if lost:
            attach(config, name, f"(not gathered: {lost})")
            continue
        try:
            res = guest.run(argv, timeout=60)
        except (GuestError, OSError, EOFError) as exc:
            # the guest died (destroyed, crashed, link lost): the test's failure says so; a
            # hook that raised here would turn it into an INTERNALERROR
            lost = f"the guest did not answer: {type(exc).__name__}: {exc}"
            attach(config, name, f"(not gathered: {lost})")
            continue
        if res.ok:  # where available: no nvidia-smi, no dmesg rights -> nothing to show
            text = res.stdout
            if argv[0] == "dmesg":
                text = "\n".join(text.splitlines()[-KERNEL_TAIL_LINES:])
            attach(config, name, text)


def _add_extras(report: pytest.TestReport, result: TestResult, r: Redactor) -> None:
    try:
        from pytest_html import extras
    except ImportError:
        return
    from dbc_accept.report.html import test_extras

    report.extras = list(getattr(report, "extras", [])) + [  # type: ignore[attr-defined]
        extras.html(block) for block in test_extras(result, r)]


def _png(state: ReportState) -> bytes | None:
    if state.png is None and state.bench_rows:
        try:
            from dbc_accept.report.plot import bench_png

            state.png = bench_png(state.bench_rows, state.min_ratio)
        except ImportError as exc:  # the table and CSV still say everything
            state.info["plot"] = (f"no plot: {exc} (pip install matplotlib, or install "
                                  "dbc-accept with its extra [plot])")
    return state.png


def write_folder(state: ReportState, config: pytest.Config, exitstatus: int) -> None:
    """Every file of the result folder, each through the scrub."""
    from dbc_accept.bench.output import rows_to_csv, time_split

    f, r = state.folder, state.redactor
    html_path = Path(str(getattr(config.option, "htmlpath", "") or f / "report.html"))
    rf.rescrub(html_path, r, html=True)
    rf.rescrub(Path(str(config.option.xmlpath)), r)
    for user, name in ((state.user_html, "report.html"), (state.user_junit, "junit.xml")):
        if user and Path(user).resolve() != (f / name).resolve() and Path(user).is_file():
            rf.write_text(f / name, Path(user).read_text(encoding="utf-8"), r, html=True)
    tests = [t.as_dict() for t in state.results.values()]
    counts: dict[str, int] = {}
    for t in tests:
        counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
    run = {"started": _iso(state.started), "finished": _iso(time.time()),
           "exitstatus": exitstatus,
           "args": mask_argv(config.invocation_params.args, r.secrets()),
           "counts": counts}
    rf.write_json(f / "results.json", {"run": run, "tests": tests}, r)
    rf.write_json(f / "system_info.json", state.info, r)
    _write_fleet(state, config)
    rows = state.bench_rows
    if rows:
        rf.write_text(f / "bench.csv", rows_to_csv(rows), r)
        rf.write_json(f / "bench.json", {"rows": [row.as_dict() for row in rows],
                                         "time_split_s": time_split(rows)}, r)
        png = _png(state)
        if png:
            (f / "bench.png").write_bytes(png)  # an image: nothing to scrub
    texts = dict(state.attachments)
    for res in state.results.values():
        texts.update((f"{res.id} {name}", text) for name, text in res.attachments)
    if texts:
        (f / "attachments").mkdir(exist_ok=True)
        for name, text in texts.items():
            rf.write_text(f / "attachments" / rf.attachment_name(name), text, r)


def _write_fleet(state: ReportState, config: pytest.Config) -> None:
    from dbc_accept.fleet import fleet_summary
    from dbc_accept.report.fleet_table import fleet_csv

    rows = fleet_summary(config, list(state.results.values()))
    if rows:
        rf.write_text(state.folder / "fleet.csv", fleet_csv(rows), state.redactor)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class ReportWriter:
    """The controller's side: collects every report, writes the folder, points to it."""

    def __init__(self, config: pytest.Config, state: ReportState) -> None:
        self.config = config
        self.state = state
        # Per test, the phase report that pytest-html 4.1 shows as the test's row (the call,
        # or a setup that did not pass); 4.2 and later gather extras from every phase.
        self._shown: dict[str, pytest.TestReport] = {}

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        _system_info(session, self.state)

    # tryfirst: the extras must be on a report before pytest-html reads the test's reports,
    # which it does in its own logreport hook for the teardown phase.
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        state = self.state
        result = state.results.setdefault(report.nodeid, TestResult(report.nodeid))
        update(result, report)
        p = props(report)
        state.attachments.update((str(n), str(t))
                                 for n, t in p.get("dbc_session_attachments", []))
        if p.get("dbc_guest_env"):
            state.info["guest"] = p["dbc_guest_env"]
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self._shown[report.nodeid] = report
        elif report.when == "teardown":  # the result is complete only now
            _add_extras(self._shown.pop(report.nodeid, report), result, state.redactor)

    @pytest.hookimpl(optionalhook=True)  # pytest-html may be disabled (-p no:html)
    def pytest_html_results_table_row(self, report: pytest.TestReport,
                                      cells: list[str]) -> None:
        result = self.state.results.get(report.nodeid)
        if report.when == "call" and result is not None and result.outcome == "warned":
            cells[0] = '<td class="col-result">Passed (WARN)</td>'

    @pytest.hookimpl(optionalhook=True)  # pytest-html may be disabled (-p no:html)
    def pytest_html_results_summary(self, prefix: list[str], summary: list[str],
                                    postfix: list[str], session: pytest.Session) -> None:
        from dbc_accept.fleet import fleet_summary
        from dbc_accept.report.fleet_table import fleet_html
        from dbc_accept.report.html import summary_html
        from dbc_accept.report.story_html import front

        state = self.state
        prefix.insert(0, front(self.config, state))
        rows = fleet_summary(self.config, list(state.results.values()))
        if rows:
            prefix.append(fleet_html(rows))
        prefix.append(summary_html(str(state.folder), state.info, state.bench_rows,
                                   _png(state), state.attachments, state.redactor))

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report: Any) -> None:
        self.html_report = report  # titled with the verdict when the run is over

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_html(self, report: pytest.TestReport,
                                       data: list[str]) -> None:
        from dbc_accept.report.story_html import drop_told_log

        drop_told_log(report, data)

    # The innermost wrapper: after every plain hook (pytest-html and junitxml write their
    # files there, trylast or not), before the terminal summary.
    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session,
                             exitstatus: int) -> Generator[None, None, None]:
        html_report = getattr(self, "html_report", None)
        if html_report is not None:
            from dbc_accept.report.story_html import report_title

            html_report.title = report_title(self.config)
        try:
            return (yield)
        finally:
            if int(exitstatus) == pytest.ExitCode.USAGE_ERROR:  # nothing ran: no folder
                shutil.rmtree(self.state.folder, ignore_errors=True)
                self.state.discarded = True
            else:
                write_folder(self.state, self.config, int(exitstatus))

    @pytest.hookimpl(trylast=True)  # after dbc-accept's "what to fix" section
    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int,
                                config: pytest.Config) -> None:
        if self.state.discarded:
            return
        _terminal_summary(terminalreporter, config, self.state)


def _terminal_summary(tr: Any, config: pytest.Config, state: ReportState) -> None:
    tr.section("dbc-accept report", sep="=")
    rows = state.bench_rows
    if rows:
        from dbc_accept.bench.output import time_split

        split = time_split(rows)
        tr.write_line(f"cnn benchmark: {len(rows)} runs; set-up {split['setup_s']:.0f} s, "
                      f"warm-up {split['warmup_s']:.0f} s, measured {split['measure_s']:.0f} s")
    html_path = getattr(config.option, "htmlpath", None)
    tr.write_line(f"report:  {html_path}" if html_path else
                  "report:  no report.html (pytest-html is not active: pip install pytest-html)")
    tr.write_line(f"results: {state.folder}/ (results.json, junit.xml, system_info.json"
                  f"{', bench.csv, bench.json, bench.png' if rows else ''})")
