"""Fixtures of the in-guest tests: probe results, guest facts, the profile, one slot per GPU.

When GPU tests skip and when they fail
--------------------------------------
The GPUs the guest must show are, in this order: ``--expect-gpus N``; else the GPUs the host
passed to the guest (``guest.passed_gpus``: the test VM's hostdevs, or this machine's NVIDIA
GPUs with ``--guest local``). Tests marked ``gpu`` SKIP only when that number is 0 (no GPU in
this run by choice: a CI machine, ``--gpus 0``, ``--expect-gpus 0``). When GPUs are expected,
everything that stops a GPU test (no driver, NVML silent, no torch, no CUDA, a GPU missing)
FAILS it with the reason. When the number is not known (an ssh:// guest without
``--expect-gpus``), the GPU tests run and fail if the guest has no working GPU.

Per-GPU tests are parametrized at collection (which never touches the guest) over GPU slots
0..N-1, N from ``--expect-gpus``, or the NVIDIA GPUs in this machine's sysfs for ``--guest
local`` and ``--guest vm`` (``--gpus`` narrows them). Ids name the model when sysfs tells it
(``gpu0-NVIDIA_H200``). A slot whose GPU the guest does not show fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.gpu_guest import gather_kernel_log
from dbc_accept.guest.probe import ProbeRunner
from dbc_accept.guest.slots import KERNEL_LOG_BEFORE_BURN, Slot, expected_gpu_count, gpu_slots
from dbc_accept.guest.thresholds import Thresholds, thresholds_for
from dbc_accept.messages import fill
from dbc_accept.settings import settings
from dbc_accept.verdict import FactError

# Time limits of the probes (seconds); the stress and VRAM ones add their own length.
PROBE_TIMEOUT = {"gpu_free": 60, "torch_info": 120, "nvml": 60, "matmul": 300, "train": 300,
                 "transfer": 300, "multi_gpu": 420}


SLOTS_KEY: pytest.StashKey[list[Slot] | None] = pytest.StashKey()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "slot" not in metafunc.fixturenames:
        return
    config = metafunc.config
    if SLOTS_KEY not in config.stash:  # sysfs is read once per run, not once per test
        config.stash[SLOTS_KEY] = gpu_slots(config)
    slots = config.stash[SLOTS_KEY]
    if slots is None:
        reason = ("the GPUs of this guest are not known before it is reached: "
                  "pass --expect-gpus N")
        metafunc.parametrize("slot", [pytest.param(None, id="gpus-unknown",
                                                   marks=pytest.mark.skip(reason=reason))])
    elif not slots:
        reason = no_gpu_reason(config)
        metafunc.parametrize("slot", [pytest.param(None, id="no-gpu",
                                                   marks=pytest.mark.skip(reason=reason))])
    else:
        metafunc.parametrize("slot", slots, ids=[s.id for s in slots])


def no_gpu_reason(config: pytest.Config) -> str:
    """Why a run has no GPU, in the words of where it runs (--guest)."""
    if settings(config).expect_gpus == 0:
        return "no GPU in this run (--expect-gpus 0)"
    return fill("no GPU in this run ({no_gpus}; --expect-gpus not given)", "en")


@pytest.fixture(autouse=True)
def _gpu_gate(request: pytest.FixtureRequest) -> None:
    """Skip ``gpu`` tests when this run has no GPU by choice (see the module docstring)."""
    if request.node.get_closest_marker("gpu") is None:
        return
    guest = request.getfixturevalue("guest")
    if expected_gpu_count(request.config, guest) == 0:
        pytest.skip(no_gpu_reason(request.config))


@pytest.fixture(scope="session")
def probes(guest: Any) -> Iterator[ProbeRunner]:
    """Runs probes in the guest; each (probe, arguments) once per session. Its probe worker
    is stopped at the end of the session (Ctrl-C included), before the guest goes."""
    with ProbeRunner(guest) as runner:
        yield runner


@pytest.fixture(scope="session")
def guest_facts(guest: Any, request: pytest.FixtureRequest) -> HostFacts:
    """The guest's facts, each gatherer run once per session."""
    return HostFacts(guest, settings(request.config).node_options())


@pytest.fixture(scope="session")
def thresholds(request: pytest.FixtureRequest) -> Thresholds:
    """The --profile's entry of dbc_accept/data/profiles.json."""
    return thresholds_for(settings(request.config).profile)


def _kernel_log(guest: Any) -> str | FactError:
    try:
        return gather_kernel_log(guest)
    except FactError as exc:  # the Xid check after the burn fails with it, not the burn
        return exc


@pytest.fixture(scope="session")
def probe(probes: ProbeRunner, guest: Any,
          request: pytest.FixtureRequest) -> Callable[..., dict[str, Any]]:
    """``probe(name)``: the probe's JSON with this run's arguments (cached). The stress
    probe's first run reads the kernel log just before it (the Xid check's baseline)."""
    stress = settings(request.config).stress_seconds
    args: dict[str, tuple[list[str], float]] = {
        "stress": (["--seconds", f"{stress:g}"], stress + 180),
        "vram": (["--seconds", "60"], 60 * 3 + 180),
    }

    def run(name: str) -> dict[str, Any]:
        argv, timeout = args.get(name, ([], float(PROBE_TIMEOUT.get(name, 120))))
        if name == "stress" and KERNEL_LOG_BEFORE_BURN not in request.config.stash:
            request.config.stash[KERNEL_LOG_BEFORE_BURN] = _kernel_log(guest)
        return probes.get(name, argv, timeout=timeout)

    return run


def _stage(item: pytest.Item) -> int:
    """The GPUs are free: first, before any probe; then the other unit tests (health read on
    an idle GPU), then integration, the burn last."""
    if Path(item.path).name == "test_unit_gpu_free.py":
        return -1
    if item.get_closest_marker("unit") is not None:
        return 0
    return 2 if item.get_closest_marker("slow") is not None else 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if here in Path(item.path).parents]
    ordered = sorted((items[i] for i in slots), key=_stage)  # stable: file order kept within
    for i, item in zip(slots, ordered):
        items[i] = item
