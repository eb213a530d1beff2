"""Reference throughput per GPU model, each figure with its source; compared by code."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_FILE = "bench_reference.json"
# A source's role: its figures decide verdicts, or are only shown next to them ("x anchor").
REFERENCE, COMPARISON = "reference", "comparison"
ROLES = (REFERENCE, COMPARISON)


@dataclass(frozen=True)
class Setting:
    """What a measurement was: the keys a reference figure must match."""

    gpu: str
    model: str
    mode: str
    precision: str
    parallel: str
    batch: int
    world: int = 1
    legacy: bool = False

    def describe(self) -> str:
        tail = "-legacy" if self.legacy else ""
        where = f" on {self.world} GPUs" if self.world > 1 else ""
        return (f"{self.gpu}/{self.model}/{self.mode}-{self.precision}-{self.parallel}{tail}"
                f"-b{self.batch}{where}")


@dataclass(frozen=True)
class Reference:
    """One figure: images/s per GPU for a setting, and where it comes from."""

    images_per_s: float
    source: str
    kind: str  # published | measured
    batch: int | None
    note: str = ""
    per_gpu_of_single: bool = False  # a DDP run judged against a single-GPU figure

    def describe(self) -> str:
        batch = f"batch {self.batch}" if self.batch else "any batch"
        how = ", per GPU against the single-GPU figure" if self.per_gpu_of_single else ""
        note = f"; {self.note}" if self.note else ""
        return f"{self.images_per_s:,.0f} images/s ({batch}{how}; {self.kind}: {self.source}{note})"


def normalize_gpu(name: str) -> str:
    """'NVIDIA A100-SXM4-80GB' -> 'a100 sxm4 80gb'; vendor and brand words dropped."""
    words = re.split(r"[\s_\-]+", name.lower())
    return " ".join(w for w in words if w and w not in ("nvidia", "geforce", "tesla"))


class ReferenceTable:
    """The figures of the data file, looked up by setting."""

    def __init__(self, doc: dict[str, Any]) -> None:
        if doc.get("format") != 1:
            raise ValueError(f"reference data has format {doc.get('format')!r}, expected 1")
        self.sources: dict[str, dict[str, str]] = doc["sources"]
        self.aliases = {alias: gpu for gpu, spec in doc["gpus"].items() for alias in spec["match"]}
        self.figures: list[dict[str, Any]] = doc["figures"]
        for name, src in self.sources.items():
            if src.get("role", REFERENCE) not in ROLES:
                raise ValueError(f"reference source {name} has role {src['role']!r}, "
                                 f"expected one of {', '.join(ROLES)}")
        for fig in self.figures:
            if fig["source"] not in self.sources:
                raise ValueError(f"reference figure {fig} names an unknown source")

    def gpu_key(self, name: str) -> str | None:
        """The data file's name for a GPU as the driver names it, or None if unknown."""
        return self.aliases.get(normalize_gpu(name))

    def lookup(self, s: Setting, role: str = REFERENCE) -> Reference | None:
        """The best figure of ``role`` for ``s``: same batch before any-batch; DDP falls
        back to single."""
        gpu = self.gpu_key(s.gpu)
        if gpu is None:
            return None
        figures = [f for f in self.figures
                   if self.sources[f["source"]].get("role", REFERENCE) == role]
        for parallel in (s.parallel, "single") if s.parallel == "ddp" else (s.parallel,):
            found = [f for f in figures if self._matches(f, gpu, s, parallel)]
            found.sort(key=lambda f: f["batch"] is None)  # the same batch first
            if found:
                return self._reference(found[0], per_gpu=parallel != s.parallel)
        return None

    @staticmethod
    def _matches(f: dict[str, Any], gpu: str, s: Setting, parallel: str) -> bool:
        return (f["gpu"] == gpu and f["model"] == s.model and f["mode"] == s.mode
                and f["precision"] == s.precision and f["parallel"] == parallel
                and bool(f.get("legacy", False)) == s.legacy
                and f["batch"] in (None, s.batch) and f.get("gpus", s.world) == s.world)

    def _reference(self, f: dict[str, Any], per_gpu: bool) -> Reference:
        src = self.sources[f["source"]]
        return Reference(images_per_s=float(f["images_per_s"]), source=src["text"],
                         kind=src["kind"], batch=f["batch"], note=f.get("note", ""),
                         per_gpu_of_single=per_gpu)


def load(text: str | None = None) -> ReferenceTable:
    """The packaged table (or one parsed from ``text``)."""
    if text is None:
        text = (Path(__file__).parent.parent / "data" / DATA_FILE).read_text(encoding="utf-8")
    return ReferenceTable(json.loads(text))


@dataclass(frozen=True)
class Comparison:
    """A measured figure against its reference (``reference`` None: no verdict) and, for
    information only, against a comparison figure (``anchor``)."""

    setting: Setting
    measured: float  # images/s per GPU for DDP, else of the whole run
    reference: Reference | None
    min_ratio: float
    anchor: Reference | None = None
    no_verdict: str = ""  # why a run with a reference figure gets no verdict (launch-bound)

    @property
    def ratio(self) -> float | None:
        return self._share(self.reference)

    @property
    def anchor_ratio(self) -> float | None:
        return self._share(self.anchor)

    def _share(self, ref: Reference | None) -> float | None:
        return None if ref is None else self.measured / ref.images_per_s

    @property
    def ok(self) -> bool | None:
        ratio = self.ratio
        return None if ratio is None else ratio >= self.min_ratio


# Below this batch per GPU a CNN step is launch-bound: the CPU that launches its kernels (and,
# in DBC's method, copies the input) sets its time, not the GPU.
LAUNCH_BOUND_BELOW_BATCH = 32


def launch_bound(s: Setting) -> str:
    """Why ``s`` measures the host's CPU rather than the GPU; '' when it does not."""
    if not s.legacy and s.batch >= LAUNCH_BOUND_BELOW_BATCH:
        return ""
    how = "launching its kernels and copying its input from the host" if s.legacy \
        else "launching its kernels"
    return (f"launch-bound: at batch {s.batch} per GPU the step time is the CPU's time "
            f"{how}, not the GPU's; a figure measured on another machine (another CPU) "
            f"cannot judge this GPU (a healthy H200 on a slower host ran DBC's ResNet-50 "
            f"training at 0.70 x such a figure)")


def compare(table: ReferenceTable, s: Setting, images_per_s: float,
            min_ratio: float) -> Comparison:
    """Judge a run's images/s (all GPUs) against the reference for its setting; a
    launch-bound run is compared, never judged (its figure is shown as the anchor)."""
    ref = table.lookup(s)
    measured = images_per_s
    anchor = table.lookup(s, COMPARISON)
    if s.parallel == "ddp":  # DDP figures, of its own or single-GPU ones, are per GPU
        measured = images_per_s / max(1, s.world)
        if ref is not None and ref.per_gpu_of_single:
            # Scaling depends on the interconnect and the DDP method: the single-GPU figure
            # is shown for comparison (scaling efficiency), a verdict needs a DDP figure.
            ref, anchor = None, ref
    why = launch_bound(s)
    if why and ref is not None:
        ref, anchor = None, ref
    return Comparison(s, measured, ref, min_ratio, anchor=anchor, no_verdict=why)
