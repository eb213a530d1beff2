"""Benchmark profiles: which models run, in which modes, with what batch and budget."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Every model DBC's in-VM benchmark runs (torchvision 0.10 names).
DBC_MODELS = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2",
    "densenet121", "densenet161", "densenet169", "densenet201",
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
)
MODERN_MODELS = (
    "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "regnet_y_8gf",
    "convnext_tiny", "inception_v3", "googlenet", "shufflenet_v2_x1_0", "squeezenet1_1",
    "mnasnet1_0",
)
# Why these models, batches and autotuning choices, with the figures measured on H200s:
# docs/benchmarks-and-report.md ("Where the time goes", "How it measures").
# The modern models of `default`: those cheapest to warm up; RegNet and ConvNeXt are
# GPU-bound, GoogLeNet stands for the Inception family at 224 px.
DEFAULT_MODERN = ("regnet_y_8gf", "convnext_tiny", "googlenet")
FULL_EXTRA = (
    "alexnet", "mobilenet_v3_small", "efficientnet_b4", "regnet_x_8gf", "convnext_small",
    "resnext101_64x4d",
)
# `quick`: models that warm up fast, a ResNet run tuning its kernels for the next one.
QUICK_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "vgg16")
# DDP runs of the default profile: models whose gradients are small next to their compute,
# so a healthy interconnect keeps each GPU near its single-GPU speed.
DDP_MODELS = ("resnet50", "resnet152", "convnext_tiny", "regnet_y_8gf")
IMAGE_SIZE = {"inception_v3": 299}
# Training batches above the usual 128 for models whose step the CPU launches about as
# slowly as a fast GPU runs it at batch 128 (many thin layers): there the figure follows the
# CPU, not the GPU. ResNet-50 stays at 128, the setting of the published and anchor figures.
LAUNCH_BOUND_BATCH = {
    **{("train", m): 256 for m in (
        "resnet18", "resnet34", "resnet101", "resnet152", "densenet121", "densenet161",
        "densenet169", "densenet201", "efficientnet_b0")},
    **{("train", m): 512 for m in (
        "googlenet", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
        "shufflenet_v2_x1_0", "squeezenet1_1", "mnasnet1_0")},
    **{("infer", m): 512 for m in ("shufflenet_v2_x1_0", "efficientnet_b0")},
}
# cuDNN autotuning (cudnn.benchmark) times candidate kernels for every new convolution
# shape. DenseNet has a new shape at every layer (its input grows by the growth rate), so
# autotuning DenseNet-121/161/201 costs as much as the rest of the warm-up for no steadier
# figure; DenseNet-169 keeps it (its heuristic choice ran slower).
NO_AUTOTUNE = ("densenet121", "densenet161", "densenet201")
MODES = ("train", "infer")
# With cudnn.benchmark torch has cuDNN build every candidate kernel of each new convolution
# shape (the limit bounds only how many are timed): 72 of the 79 s of `default`'s warm-up on
# an H200 (2026-12-02). The mixed-precision runs below take cuDNN's heuristic choice instead:
# all 48 runs of `default` without autotuning (same H200, same day) came within 1% of the
# autotuned figures except RegNetY-8GF training (-7.2%), ResNeXt-101 training (-1.7%),
# GoogLeNet inference (-1.1%) and ResNet-18 inference (-1.1%; it reuses the kernels of
# ResNet-18 training), which keep autotuning. `default`'s warm-up without any autotuning
# was 22 s of 106 s.
KEEP_AUTOTUNE_MIXED = (("regnet_y_8gf", "train"), ("resnext101_32x8d", "train"),
                       ("googlenet", "infer"), ("resnet18", "train"))
HEURISTIC_MIXED: frozenset[tuple[str, str]] = frozenset(
    (model, mode) for model in DBC_MODELS + DEFAULT_MODERN for mode in MODES
    if (model, mode) not in KEEP_AUTOTUNE_MIXED)
BATCH = {"train": 128, "infer": 256}
PARALLEL_ID = {"single": "1gpu", "ddp": "ddp", "dp": "dp"}


@dataclass(frozen=True)
class RunSpec:
    """One measurement: a model in one mode, precision and parallel setting."""

    model: str
    mode: str  # train | infer
    precision: str  # fp32 | mixed (bf16 where the GPU has it, else fp16)
    parallel: str  # single | ddp (one process per GPU) | dp (nn.DataParallel, legacy)
    batch: int  # per GPU
    image: int = 224
    channels_last: bool = True
    legacy: bool = False  # DBC's method: host input each step, no optimizer step
    warmup_min: int = 2
    warmup_max: int = 15
    steps_min: int = 15  # five parts of three steps for the spread (stats.window_spread)
    steps_max: int = 100
    measure_s: float = 1.2
    autotune: bool = True  # cuDNN autotuning, where the profile allows it

    @property
    def id(self) -> str:
        tail = "-legacy" if self.legacy else ""
        return f"{self.model}-{self.mode}-{self.precision}-{PARALLEL_ID[self.parallel]}{tail}"

    def as_probe(self) -> dict[str, Any]:
        """The spec as the probe reads it."""
        return {"id": self.id, **asdict(self)}


@dataclass(frozen=True)
class Profile:
    """A named plan of runs and the cuDNN autotuning it allows."""

    name: str
    runs: tuple[RunSpec, ...]
    cudnn_benchmark: bool = True
    # cuDNN times at most this many candidate kernels per convolution (None: torch default);
    # autotuning, not measuring, is where most of a short run's time goes.
    cudnn_benchmark_limit: int | None = 3

    def plan(self, ids: set[str] | None = None, device: str = "cuda") -> dict[str, Any]:
        """The probe's input, restricted to ``ids`` when given (tests deselected by -k)."""
        runs = [r.as_probe() for r in self.runs if ids is None or r.id in ids]
        return {"profile": self.name, "device": device, "runs": runs,
                "cudnn_benchmark": self.cudnn_benchmark,
                "cudnn_benchmark_limit": self.cudnn_benchmark_limit}


def autotuned(model: str, mode: str, precision: str) -> bool:
    """Whether the run of ``model`` in ``mode`` and ``precision`` lets cuDNN autotune."""
    if model in NO_AUTOTUNE:
        return False
    return not (precision == "mixed" and (model, mode) in HEURISTIC_MIXED)


def _runs(models: tuple[str, ...], precisions: tuple[str, ...], parallel: str,
          **budget: Any) -> list[RunSpec]:
    runs = []
    for model in models:
        for mode in MODES:
            for precision in precisions:
                batch = LAUNCH_BOUND_BATCH.get((mode, model), BATCH[mode])
                runs.append(RunSpec(model, mode, precision, parallel, batch,
                                    image=IMAGE_SIZE.get(model, 224),
                                    autotune=autotuned(model, mode, precision), **budget))
    return runs


def _legacy() -> list[RunSpec]:
    """DBC's settings: fp32, batch 6 per GPU, nn.DataParallel, 5 warm-up + 50 steps."""
    return [RunSpec(m, mode, "fp32", "dp", 6, channels_last=False, legacy=True,
                    warmup_min=5, warmup_max=5, steps_min=50, steps_max=50, measure_s=0.0)
            for m in DBC_MODELS for mode in MODES]


def profile(name: str) -> Profile:
    """The profile called ``name`` (one of PROFILES)."""
    default_models = DBC_MODELS + DEFAULT_MODERN
    if name == "quick":
        return Profile(name, tuple(_runs(QUICK_MODELS, ("mixed",), "single", measure_s=1.0)))
    if name == "default":
        return Profile(name, tuple(_runs(default_models, ("mixed",), "single")
                                   + _runs(DDP_MODELS, ("mixed",), "ddp")))
    if name == "full":
        budget = {"measure_s": 3.0, "steps_max": 300, "warmup_max": 30}
        models = DBC_MODELS + MODERN_MODELS + FULL_EXTRA
        return Profile(name, tuple(_runs(models, ("mixed", "fp32"), "single", **budget)
                                   + _runs(models, ("mixed",), "ddp", **budget)),
                       cudnn_benchmark_limit=None)
    if name == "dbc-legacy":
        return Profile(name, tuple(_legacy()), cudnn_benchmark_limit=None)
    raise ValueError(f"unknown benchmark profile {name!r}; choose one of {', '.join(PROFILES)}")


PROFILES = ("quick", "default", "full", "dbc-legacy")

