"""The CNN probe's lines as dataclasses, parsed once where they arrive.

The probe (dbc_accept/probes/cnn_bench.py) prints one JSON object per line: an ``env`` line
(the guest's Python, torch, torchvision, CUDA and GPUs), a ``result`` line per run and a
``done`` line. :func:`parse_env` and :func:`parse_result` turn the first two into
:class:`ProbeEnv` and :class:`RunResult`; nothing else reads the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GpuSeen:
    """One GPU as torch sees it in the guest."""

    name: str
    index: int | None = None
    memory_bytes: int | None = None


@dataclass(frozen=True)
class ProbeEnv:
    """The probe's ``env`` line; ``doc`` keeps it whole (system_info.json shows it)."""

    doc: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""  # torch could not be imported
    python: str | None = None
    torch: str | None = None
    torchvision: str | None = None  # None: not installed (torchvision_error says why)
    torchvision_error: str = ""
    cuda: str | None = None
    cuda_available: bool = False
    mixed_dtype: str | None = None
    gpus: tuple[GpuSeen, ...] = ()

    @property
    def reported(self) -> bool:
        """Whether the probe printed its env line at all."""
        return bool(self.doc)

    @property
    def gpu_name(self) -> str:
        """The first GPU's name, ``cpu`` without one (the reference table's key)."""
        return self.gpus[0].name if self.gpus else "cpu"


@dataclass(frozen=True)
class RunSetting:
    """The run's spec as the probe echoes it."""

    model: str
    mode: str
    precision: str
    parallel: str
    batch: int
    world: int = 1
    legacy: bool = False


@dataclass(frozen=True)
class RunResult:
    """A ``result`` line: how one run ended and, when it ran, every step's time.

    ``problem`` says why a line whose status is ``ok`` could not be read (its figures are
    then absent); the run fails with it.
    """

    id: str
    status: str  # ok | skipped | error
    reason: str = ""
    setting: RunSetting | None = None
    batch: int | None = None  # the batch that ran (a smaller card: half the requested one)
    dtype: str = ""
    times_s: tuple[float, ...] = ()
    rank_median_s: tuple[float, ...] = ()  # DDP: each rank's median step
    setup_s: float | None = None
    warmup_s: float | None = None
    warmup_steps: int | None = None
    first_step_s: float | None = None
    measure_s: float | None = None
    problem: str = ""


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def parse_env(doc: Mapping[str, Any]) -> ProbeEnv:
    """The ``env`` line (a GPU without a name shows as ``?``)."""
    gpus = tuple(
        GpuSeen(str(g.get("name", "?")), g.get("index"), g.get("memory_bytes"))
        for g in doc.get("gpus") or [] if isinstance(g, Mapping))
    return ProbeEnv(
        doc=doc, error=str(doc.get("error") or ""), python=_text(doc.get("python")),
        torch=_text(doc.get("torch")), torchvision=_text(doc.get("torchvision")),
        torchvision_error=str(doc.get("torchvision_error") or ""), cuda=_text(doc.get("cuda")),
        cuda_available=bool(doc.get("cuda_available")),
        mixed_dtype=_text(doc.get("mixed_dtype")), gpus=gpus)


def parse_result(doc: Mapping[str, Any]) -> RunResult:
    """A ``result`` line; an ``ok`` line that cannot be read carries its ``problem``."""
    head = RunResult(id=str(doc["id"]), status=str(doc.get("status", "")),
                     reason=str(doc.get("reason", "")))
    if head.status != "ok":
        return head
    try:
        return _figures(head, doc)
    except (KeyError, TypeError, ValueError) as exc:
        return RunResult(head.id, head.status, head.reason, problem=str(exc))


def _figures(head: RunResult, doc: Mapping[str, Any]) -> RunResult:
    spec = doc["spec"]
    setting = RunSetting(
        model=str(spec["model"]), mode=str(spec["mode"]), precision=str(spec["precision"]),
        parallel=str(spec["parallel"]), batch=int(spec["batch"]),
        world=int(spec.get("world", 1)), legacy=bool(spec.get("legacy")))
    batch = doc.get("batch")
    return RunResult(
        id=head.id, status=head.status, reason=head.reason, setting=setting,
        batch=None if batch is None else int(batch), dtype=str(doc.get("dtype", "")),
        times_s=tuple(float(t) for t in doc["times_s"]),
        rank_median_s=tuple(float(m) for m in doc.get("rank_median_s") or [] if m is not None),
        setup_s=_seconds(doc.get("setup_s")), warmup_s=_seconds(doc.get("warmup_s")),
        warmup_steps=doc.get("warmup_steps"), first_step_s=_seconds(doc.get("first_step_s")),
        measure_s=_seconds(doc.get("measure_s")))
