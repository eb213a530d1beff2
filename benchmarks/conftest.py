"""The CNN benchmark's parametrization (one test per run of the profile) and its probe run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dbc_accept.bench import reference
from dbc_accept.bench.profiles import RunSpec, profile
from dbc_accept.bench.session import CnnBench
from dbc_accept.report import attach
from dbc_accept.settings import settings


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bench_run" in metafunc.fixturenames:
        runs = profile(settings(metafunc.config).bench_profile).runs
        metafunc.parametrize("bench_run", runs, ids=[r.id for r in runs])


def _writer(config: pytest.Config) -> Callable[[str], None]:
    """Write a progress line to the terminal, past pytest's output capture."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")

    def write(text: str) -> None:
        if tr is None:
            return
        if capman is None:
            tr.write_line(text)
            return
        with capman.global_and_fixture_disabled():
            tr.write_line(text)

    return write


@pytest.fixture(scope="session")
def cnn_bench(request: pytest.FixtureRequest, guest: Any) -> CnnBench:
    """Every selected run of the profile, measured in one probe process."""
    config = request.config
    ratio = settings(config).bench_min_ratio
    ids = {item.callspec.params["bench_run"].id for item in request.session.items
           if hasattr(item, "callspec") and isinstance(
               item.callspec.params.get("bench_run"), RunSpec)}
    bench = CnnBench(str(getattr(guest, "name", "guest")), reference.load(), ratio)
    bench.start(guest, profile(settings(config).bench_profile), ids, _writer(config))
    smi = guest.run(["nvidia-smi", "-q"], timeout=60)
    if smi.ok:  # clocks, power and throttle reasons right after the load, for the report
        attach(config, "nvidia-smi -q (guest, after the CNN benchmark)", smi.stdout)
    return bench
