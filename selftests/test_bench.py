"""The CNN benchmark harness on the host: statistics, references, profiles, output."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from dbc_accept.bench import output, reference
from dbc_accept.bench.lines import parse_env
from dbc_accept.bench.profiles import DBC_MODELS, MODERN_MODELS, PROFILES, RunSpec, profile
from dbc_accept.bench.reference import Setting, compare, normalize_gpu
from dbc_accept.bench.runner import ProbeRun
from dbc_accept.bench.session import CnnBench
from dbc_accept.bench.stats import summarize, window_spread
from dbc_accept.verdict import CheckFailed

pytestmark = pytest.mark.unit


# --- statistics ----------------------------------------------------------------------------

def test_median_and_spread() -> None:
    s = summarize([0.1, 0.1, 0.2, 0.1, 0.1], images_per_step=10)
    assert s.median_s == 0.1 and s.images_per_s == pytest.approx(100.0)
    assert s.cv == pytest.approx(0.04 / 0.12)
    assert summarize([0.5], 1).cv == 0.0
    with pytest.raises(ValueError, match="no timed steps"):
        summarize([], 1)
    with pytest.raises(ValueError, match="not positive"):
        summarize([0.1, 0.0], 1)


def test_spread_is_run_stability_not_step_jitter() -> None:
    # launch jitter: every fourth step late by half, the windows' medians stay put
    jitter = [0.06 if i % 4 == 3 else 0.04 for i in range(40)]
    s = summarize(jitter, 128)
    assert s.cv > 0.15 and s.spread == pytest.approx(0.0)
    # a GPU that slows down during the run (clocks sag): the late windows' medians rise
    sagging = [0.040 * (1 + 0.02 * i) for i in range(40)]
    assert summarize(sagging, 128).spread > 0.1
    # a jump half-way: medians 0.1, 0.1, 0.15, 0.2, 0.2
    assert window_spread([0.1] * 9 + [0.2] * 9) == pytest.approx(0.05 ** 0.5 / 0.75)
    assert window_spread([0.1, 0.2, 0.3, 0.4, 0.5]) == 0.0  # fewer than two windows of 3
    assert window_spread([0.1] * 3 + [0.2] * 3) == pytest.approx(1 / 3)
    # a late step in a window of three leaves its median alone
    assert window_spread([0.1, 0.3, 0.1] * 5) == pytest.approx(0.0)
    assert all(r.steps_min >= 15 for r in profile("default").runs)  # five windows of three


# --- references ----------------------------------------------------------------------------

def test_reference_figures_each_have_a_source() -> None:
    table = reference.load()
    assert all(f["source"] in table.sources for f in table.figures)
    h200 = table.lookup(Setting("NVIDIA H200", "resnet50", "train", "mixed", "single", 128))
    assert h200 is not None and h200.images_per_s == 4327 and h200.kind == "measured"
    assert h200.source.startswith("dbc-accept default profile (cudnn.benchmark, limit 3")
    assert "lower of two runs" in h200.source
    assert "4,361, the same settings with 3.0 s measured 4,327" in h200.note
    rtx = Setting("NVIDIA GeForce RTX 3090", "resnet50", "train", "fp32", "single", 64)
    assert table.lookup(rtx) is None  # Lambda's figure is a comparison, not a reference
    lam = table.lookup(rtx, reference.COMPARISON)
    assert lam is not None and lam.images_per_s == 513 and lam.kind == "published"
    assert "Lambda" in lam.source


def test_every_default_and_quick_run_has_an_h200_figure_of_its_method() -> None:
    table = reference.load()
    for name in ("default", "quick"):
        for run in profile(name).runs:
            if run.parallel != "single":
                continue
            s = Setting("NVIDIA H200", run.model, run.mode, run.precision, run.parallel,
                        run.batch)
            ref = table.lookup(s)
            assert ref is not None and ref.source.startswith("dbc-accept default profile"), s


def test_anchor_figures_are_shown_never_judged() -> None:
    table = reference.load()
    one = Setting("NVIDIA H200", "resnext50_32x4d", "train", "mixed", "single", 128)
    cmp = compare(table, one, 3472.0, 0.85)
    assert cmp.reference is not None and cmp.reference.images_per_s == 3472 and cmp.ok
    assert cmp.anchor is not None and cmp.anchor.images_per_s == 3437
    assert cmp.anchor_ratio == pytest.approx(3472 / 3437) and "ANCHORS.md" in cmp.anchor.source
    # a setting the anchor was not measured at (DenseNet-121 trains at 256): no comparison
    dense = compare(table, Setting("NVIDIA H200", "densenet121", "train", "mixed", "single",
                                   256), 2836.0, 0.85)
    assert dense.ok and dense.anchor is None
    # alexnet has only an anchor figure: no verdict, the comparison still shown
    alex = compare(table, Setting("NVIDIA H200", "alexnet", "train", "mixed", "single", 128),
                   29000.0, 0.85)
    assert alex.reference is None and alex.ok is None and alex.anchor_ratio is not None
    ddp = compare(table, Setting("NVIDIA H200", "resnet50", "train", "mixed", "ddp", 128,
                                 world=2), 2 * 4288.0, 0.85)
    # DDP without a DDP figure of its own: the single-GPU figure is shown (scaling), no verdict
    assert ddp.ratio is None and ddp.ok is None
    assert ddp.anchor is not None and ddp.anchor.per_gpu_of_single
    assert ddp.anchor_ratio == pytest.approx(4288 / 4327)


def test_no_published_figure_is_a_verdict() -> None:
    """Figures measured another way (published) are shown next to a run, never judge it:
    each one's own setting, at every batch and GPU count, finds no published reference."""
    table = reference.load()
    published = [f for f in table.figures if table.sources[f["source"]]["kind"] == "published"]
    assert published  # the check sees the published figures
    for f in published:
        for batch in {f["batch"] or 64, 128, 256}:
            for parallel, world in (("single", 1), ("ddp", 2)):
                s = Setting(table.gpu_key(f["gpu"]) or f["gpu"], f["model"], f["mode"],
                            f["precision"], parallel, batch, world=world,
                            legacy=bool(f.get("legacy")))
                cmp = compare(table, s, float(f["images_per_s"]), 0.85)
                assert cmp.reference is None or cmp.reference.kind != "published", (f, s)


def test_source_roles_are_checked() -> None:
    doc = {"format": 1, "gpus": {}, "figures": [],
           "sources": {"x": {"text": "t", "kind": "measured", "role": "verdict"}}}
    with pytest.raises(ValueError, match="role 'verdict', expected one of reference, compar"):
        reference.ReferenceTable(doc)


def test_gpu_names_as_drivers_spell_them() -> None:
    table = reference.load()
    assert normalize_gpu("NVIDIA A100-SXM4-80GB") == "a100 sxm4 80gb"
    assert table.gpu_key("NVIDIA A100-SXM4-80GB") == "NVIDIA A100 80GB SXM4"
    assert table.gpu_key("NVIDIA H100 80GB HBM3") == "NVIDIA H100 SXM5"
    assert table.gpu_key("NVIDIA H200 NVL") is None  # a different card, not an H200 SXM


def test_unknown_gpu_or_setting_has_no_verdict() -> None:
    table = reference.load()
    cmp = compare(table, Setting("Tesla T4", "resnet50", "train", "mixed", "single", 128),
                  300.0, 0.85)
    assert cmp.reference is None and cmp.ok is None and cmp.ratio is None
    other_batch = Setting("NVIDIA H200", "resnet50", "train", "mixed", "single", 64)
    assert table.lookup(other_batch) is None


def test_ratio_decides_and_ddp_scaling_is_shown_per_gpu() -> None:
    table = reference.load()
    one = Setting("NVIDIA H200", "resnet50", "train", "mixed", "single", 128)
    assert compare(table, one, 4327 * 0.86, 0.85).ok is True
    assert compare(table, one, 4327 * 0.84, 0.85).ok is False
    ddp = Setting("NVIDIA H200", "resnet50", "train", "mixed", "ddp", 128, world=2)
    cmp = compare(table, ddp, 2 * 4327 * 0.9, 0.85)
    assert cmp.reference is None and cmp.ok is None  # no DDP figure: reported, not judged
    assert cmp.anchor is not None and cmp.anchor_ratio == pytest.approx(0.9)
    legacy = Setting("NVIDIA H200", "resnet50", "train", "fp32", "dp", 6, legacy=True)
    assert table.lookup(legacy) is not None
    assert table.lookup(Setting(**{**legacy.__dict__, "world": 4})) is None


def test_references_are_never_evaluated() -> None:
    text = Path(reference.__file__).read_text()
    assert "eval(" not in text and "exec(" not in text


# --- profiles ------------------------------------------------------------------------------

def test_default_profile_covers_dbc_and_modern_models() -> None:
    runs = [r for r in profile("default").runs if r.parallel == "single"]
    models = {r.model for r in runs}
    assert len(models) >= 24 and set(DBC_MODELS) <= models
    for family in ("regnet_y_8gf", "convnext_tiny", "googlenet", "resnext50_32x4d",
                   "wide_resnet50_2"):
        assert family in models
    assert {(r.model, r.mode) for r in runs} == {(m, mode) for m in models
                                                 for mode in ("train", "infer")}
    assert {r.precision for r in runs} == {"mixed"} and all(r.channels_last for r in runs)
    ddp = {r.model for r in profile("default").runs if r.parallel == "ddp"}
    assert ddp <= models  # their kernels are tuned by the single-GPU runs of the profile


def test_launch_bound_models_train_at_a_larger_batch() -> None:
    runs = {r.id: r for r in profile("default").runs}
    assert runs["resnet50-train-mixed-1gpu"].batch == 128  # the anchor figures' setting
    assert runs["resnet152-train-mixed-1gpu"].batch == 256
    assert runs["googlenet-train-mixed-1gpu"].batch == 512
    assert runs["resnet152-train-mixed-ddp"].batch == 256
    assert {r.id for r in runs.values() if r.autotune} == {
        "resnet18-train-mixed-1gpu", "resnext101_32x8d-train-mixed-1gpu",
        "regnet_y_8gf-train-mixed-1gpu", "googlenet-infer-mixed-1gpu",
        "regnet_y_8gf-train-mixed-ddp"}
    full = [r for r in profile("full").runs if r.precision == "fp32"]
    assert {r.model for r in full if not r.autotune} == {  # measured in mixed precision only
        "densenet121", "densenet161", "densenet201"}


def test_full_profile_has_every_family() -> None:
    runs = [r for r in profile("full").runs if r.parallel == "single"]
    models = {r.model for r in runs}
    assert set(DBC_MODELS) | set(MODERN_MODELS) <= models
    assert {"mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "inception_v3",
            "shufflenet_v2_x1_0", "squeezenet1_1", "mnasnet1_0"} <= models
    assert next(r for r in runs if r.model == "inception_v3").image == 299


def test_legacy_profile_is_dbcs_method() -> None:
    runs = profile("dbc-legacy").runs
    assert {r.model for r in runs} == set(DBC_MODELS) and len(DBC_MODELS) == 21
    assert all((r.precision, r.parallel, r.batch, r.warmup_max, r.steps_min, r.steps_max,
                r.legacy) == ("fp32", "dp", 6, 5, 50, 50, True) for r in runs)


def test_profiles_have_unique_ids_and_filter() -> None:
    for name in PROFILES:
        ids = [r.id for r in profile(name).runs]
        assert len(ids) == len(set(ids)), name
    assert len({r.model for r in profile("quick").runs}) <= 6
    plan = profile("default").plan({"resnet50-train-mixed-1gpu"})
    assert [r["id"] for r in plan["runs"]] == ["resnet50-train-mixed-1gpu"]
    with pytest.raises(ValueError, match="unknown benchmark profile"):
        profile("fastest")


# --- output formats and verdicts -----------------------------------------------------------

H200_ENV = {"kind": "env", "cuda_available": True, "torchvision": "0.26.0",
            "gpus": [{"name": "NVIDIA H200"}]}


def result_line(run_id: str, step_s: float, **extra: Any) -> dict[str, Any]:
    model, mode, precision, _ = run_id.split("-")
    batch = 128 if mode == "train" else 256
    return {"kind": "result", "id": run_id, "status": "ok", "batch": batch, "dtype": "bfloat16",
            "spec": {"model": model, "mode": mode, "precision": precision,
                     "parallel": "single", "batch": batch, "world": 1},
            "times_s": [step_s] * 20, "setup_s": 0.2, "warmup_s": 1.5, "warmup_steps": 5,
            "first_step_s": 1.0, "measure_s": 0.6, **extra}


def bench_with(*lines: dict[str, Any]) -> CnnBench:
    bench = CnnBench("local", reference.load(), 0.85)
    bench.probe = ProbeRun(env=parse_env(H200_ENV), done=True)
    for line in lines:
        bench.probe.add(line)
    return bench


def test_row_csv_and_progress_line() -> None:
    bench = bench_with(result_line("resnet50-train-mixed-1gpu", 128 / 4200))
    run = RunSpec("resnet50", "train", "mixed", "single", 128)
    judged = bench.judged(run)
    r = judged.row
    assert r.images_per_s == pytest.approx(4200, rel=1e-3)
    assert r.reference_images_per_s == 4327 and r.verdict == "pass"
    assert r.anchor_images_per_s == 4288
    assert r.anchor_ratio == pytest.approx(4200 / 4288, abs=1e-4)
    assert r.spread == 0.0 and r.cv == 0.0
    rows = list(csv.DictReader(io.StringIO(output.rows_to_csv([r]))))
    assert tuple(rows[0]) == output.FIELDS and rows[0]["model"] == "resnet50"
    line = output.progress_line(r)
    assert "resnet50-train-mixed-1gpu" in line and "4,200 img/s" in line and "[pass]" in line
    assert "0.97 x ref 4,327 [pass]  0.98 x anchor 4,288" in line
    assert "spread  0.0%  step cv  0.0%" in line
    assert output.time_split([r, r]) == {"setup_s": 0.4, "warmup_s": 3.0, "measure_s": 1.2}


def test_slow_model_fails_naming_the_figure_and_source() -> None:
    bench = bench_with(result_line("resnet50-train-mixed-1gpu", 128 / 3000))
    judged = bench.judged(RunSpec("resnet50", "train", "mixed", "single", 128))
    assert judged.comparison.ok is False
    assert "4,327 images/s" in judged.comparison.reference.describe()  # type: ignore[union-attr]


def ddp_line(run_id: str, step_s: float) -> dict[str, Any]:
    line = result_line(run_id, step_s, rank_median_s=[step_s, step_s])
    line["spec"] = {**line["spec"], "parallel": "ddp", "world": 2}
    return line


def test_ddp_scaling_is_against_this_runs_single_gpu_figure() -> None:
    single = result_line("resnet50-train-mixed-1gpu", 128 / 4000)
    bench = bench_with(single, ddp_line("resnet50-train-mixed-ddp", 128 / 3000))
    judged = bench.judged(RunSpec("resnet50", "train", "mixed", "ddp", 128))
    assert judged.scaling is not None
    assert judged.scaling.efficiency == pytest.approx(0.75)
    assert judged.scaling.against == "this run's resnet50-train-mixed-1gpu"
    assert judged.row.scaling == pytest.approx(0.75) and "scaling 0.75" in \
        output.progress_line(judged.row)
    # without the single-GPU run in this run (-k ddp): the single-GPU reference
    alone = bench_with(ddp_line("resnet50-train-mixed-ddp", 128 / 4327))
    sc = alone.judged(RunSpec("resnet50", "train", "mixed", "ddp", 128)).scaling
    assert sc is not None and sc.efficiency == pytest.approx(1.0, abs=1e-3)
    assert sc.against.startswith("the single-GPU reference, 4,327 images/s")
    one = bench_with(single).judged(RunSpec("resnet50", "train", "mixed", "single", 128))
    assert one.scaling is None and one.row.scaling is None


def test_ddp_throughput_is_the_slowest_ranks() -> None:
    """Rank 1 three times slower than rank 0 (whose step times the line carries)."""
    single = result_line("resnet50-train-mixed-1gpu", 128 / 4000)
    slow = ddp_line("resnet50-train-mixed-ddp", 128 / 4000)
    slow["rank_median_s"] = [128 / 4000, 3 * 128 / 4000]
    judged = bench_with(single, slow).judged(RunSpec("resnet50", "train", "mixed", "ddp", 128))
    assert judged.row.images_per_s_per_gpu == pytest.approx(4000 / 3, rel=1e-3)
    assert judged.scaling is not None and judged.scaling.efficiency == pytest.approx(1 / 3)
    assert judged.row.verdict == "scaling low"
    even = bench_with(single, ddp_line("resnet50-train-mixed-ddp", 128 / 4000))
    assert even.judged(RunSpec("resnet50", "train", "mixed", "ddp", 128)).row.verdict == \
        "scaling ok"


def test_launch_bound_runs_are_reported_without_a_verdict() -> None:
    """DBC's ResNet-50 training at batch 6 at 0.70 x the H200 figure (a slower host CPU):
    the figure and the ratio are shown, the reason given, and nothing fails."""
    table = reference.load()
    legacy = Setting("NVIDIA H200", "resnet50", "train", "fp32", "dp", 6, legacy=True)
    figure = table.lookup(legacy)
    assert figure is not None
    cmp = compare(table, legacy, 0.70 * figure.images_per_s, 0.85)
    assert cmp.ok is None and cmp.reference is None
    assert cmp.anchor_ratio == pytest.approx(0.70) and "launch-bound" in cmp.no_verdict
    assert all(reference.launch_bound(Setting("g", r.model, r.mode, r.precision, r.parallel,
                                              r.batch, legacy=r.legacy))
               for r in profile("dbc-legacy").runs)
    for name in ("quick", "default", "full"):  # their batches keep the GPU busy
        assert not any(reference.launch_bound(Setting("g", r.model, r.mode, r.precision,
                                                      r.parallel, r.batch))
                       for r in profile(name).runs), name
    line = result_line("resnet50-train-fp32-dp", 6 / (0.70 * figure.images_per_s))
    line["spec"] = {**line["spec"], "parallel": "dp", "batch": 6, "legacy": True}
    line["batch"], line["id"] = 6, "resnet50-train-fp32-dp-legacy"
    judged = bench_with(line).judged(RunSpec("resnet50", "train", "fp32", "dp", 6, legacy=True))
    assert judged.row.verdict == "launch-bound" and judged.row.anchor_ratio == \
        pytest.approx(0.70, abs=1e-3)


def test_missing_and_failed_runs_fail() -> None:
    bench = bench_with(result_line("resnet50-train-mixed-1gpu", 0.03, status="error",
                                   reason="RuntimeError: CUDA error: ECC"))
    with pytest.raises(CheckFailed, match="CUDA error: ECC"):
        bench.judged(RunSpec("resnet50", "train", "mixed", "single", 128))
    bench.probe.done = False
    bench.probe.stderr_tail = "Xid 79: GPU has fallen off the bus"
    with pytest.raises(CheckFailed, match=r"no result for vgg16-train-mixed-1gpu.*fallen off"):
        bench.judged(RunSpec("vgg16", "train", "mixed", "single", 128))


def test_no_gpu_and_skipped_runs_skip_with_the_reason() -> None:
    bench = bench_with()
    bench.probe.env = parse_env({"kind": "env", "cuda_available": False, "torchvision": "0.26"})
    with pytest.raises(pytest.skip.Exception, match="no CUDA GPU on "):
        bench.judged(RunSpec("resnet50", "train", "mixed", "single", 128))
    bench = bench_with({"kind": "result", "id": "resnet50-train-mixed-ddp", "status": "skipped",
                        "reason": "torch sees 1 GPU here: DDP needs 2 or more", "spec": {}})
    with pytest.raises(pytest.skip.Exception, match="DDP needs 2 or more"):
        bench.judged(RunSpec("resnet50", "train", "mixed", "ddp", 128))
