"""The benchmark tests end to end through pytester: a fake probe with H200 figures, and the
real probe on this machine, which has no GPU."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from dbc_accept.bench import reference

# In-process pytester runs put sys.modules back as it was before each run, and numpy (under
# matplotlib) cannot be imported twice in one process: the second report would have no plot.
# Imported here, before any run, it stays loaded.
with contextlib.suppress(ImportError):  # without it, the tests that read the plot say so
    import matplotlib.figure  # noqa: F401
from dbc_accept.bench.profiles import profile
from dbc_accept.bench.reference import Setting

ROOT = Path(__file__).resolve().parent.parent
TABLE = reference.load()
# The verdict's figure of each run of the quick profile on an H200.
REF = {(r.model, r.mode): TABLE.lookup(Setting("NVIDIA H200", r.model, r.mode, r.precision,
                                               r.parallel, r.batch))
       for r in profile("quick").runs}

FAKE_PROBE = '''
import json, sys
REF = %s
plan = json.load(open(sys.argv[1]))
def emit(obj):
    print("DBCBENCH " + json.dumps(obj), flush=True)
print("some library chatter")
emit({"kind": "env", "cuda_available": True, "torchvision": "0.26.0", "torch": "2.11.0",
      "cuda": "13.0", "mixed_dtype": "bfloat16", "gpus": [{"name": "NVIDIA H200"}]})
for spec in plan["runs"]:
    if spec["id"] == "vgg16-infer-mixed-1gpu":
        continue  # the probe "lost" this one
    batch = 200 if spec["id"] == "resnet101-infer-mixed-1gpu" else spec["batch"]
    speed = REF["%%s-%%s" %% (spec["model"], spec["mode"])]
    if spec["id"] == "resnet50-train-mixed-1gpu":
        speed *= 0.7
    step = batch / speed
    emit({"kind": "result", "id": spec["id"], "status": "ok", "spec": dict(spec, world=1),
          "batch": batch, "dtype": "bfloat16", "times_s": [step * (1 + 0.001 * (i %% 3))
          for i in range(30)], "setup_s": 0.3, "warmup_s": 1.0, "warmup_steps": 4,
          "first_step_s": 0.7, "measure_s": 30 * step})
emit({"kind": "done", "total_s": 5.0})
'''

CONFTEST = '''
import pytest
import dbc_accept.bench.runner as runner

_real = runner.PROBE

def pytest_configure(config):
    fake = config.getoption("--fake-probe", None)
    if fake:
        runner.PROBE = type(_real)(fake)

def pytest_unconfigure(config):
    runner.PROBE = _real

def pytest_addoption(parser):
    parser.addoption("--fake-probe", default=None)
'''


def setup(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\naddopts = --strict-markers -p dbc_accept.plugin\nmarkers =\n"
                     "    benchmark: b\n    gpu: g\n    unit: u\n")
    pytester.makeconftest(CONFTEST)
    bench = pytester.mkdir("benchmarks")
    for name in ("conftest.py", "test_cnn.py"):
        (bench / name).write_text((ROOT / "benchmarks" / name).read_text())


def fake_probe(pytester: pytest.Pytester) -> Path:
    table = {f"{m}-{mode}": ref.images_per_s for (m, mode), ref in REF.items() if ref}
    path = pytester.path / "fake_probe.py"
    path.write_text(FAKE_PROBE % json.dumps(table))
    return path


def test_fake_h200_run_judges_each_model(pytester: pytest.Pytester) -> None:
    setup(pytester)
    result = pytester.runpytest_inprocess(
        "benchmarks", "-m", "benchmark", "--guest", "local", "--bench-profile", "quick",
        "--fake-probe", str(fake_probe(pytester)), "--no-report", "-rs")
    result.assert_outcomes(passed=7, failed=2, skipped=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*guest: 1 x NVIDIA H200*",
        "*resnet18-train-mixed-1gpu*img/s*spread*b256x1*1.00 x ref 13,082 [[]pass]  (set-up*",
        "*resnet18-infer-mixed-1gpu*img/s*spread*1.00 x ref 39,022 [[]pass]  0.99 x anchor 39,392*",
        "*resnet50-train-mixed-1gpu*img/s*0.70 x ref 4,327 [[]fail]  0.71 x anchor 4,288*",
        "*cnn benchmark: * s in all; set-up * s, warm-up * s, measured * s",
    ])
    assert "expected: >= 0.85 x 4,327 images/s (batch 128; measured: dbc-accept default" \
        " profile (cudnn.benchmark, limit 3" in out
    assert "no result for vgg16-infer-mixed-1gpu" in out
    assert "no reference for NVIDIA H200/resnet101/infer-mixed-single-b200" in out
    assert "bench.spread" not in out  # steady steps: no WARN


@pytest.mark.needs_torch
def test_real_probe_without_a_gpu_skips_saying_so(pytester: pytest.Pytester) -> None:
    pytest.importorskip("torch")
    setup(pytester)
    result = pytester.runpytest_inprocess(
        "benchmarks", "-m", "benchmark", "--guest", "local", "--bench-profile", "quick",
        "-k", "resnet50", "--no-report", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*no CUDA GPU on local*is_available() is False*"])


def test_benchmark_report_table_and_plot(pytester: pytest.Pytester) -> None:
    setup(pytester)
    result = pytester.runpytest_inprocess(
        "benchmarks", "-m", "benchmark", "--guest", "local", "--bench-profile", "quick",
        "--fake-probe", str(fake_probe(pytester)), "--report-dir", "out")
    result.assert_outcomes(passed=7, failed=2, skipped=1)
    [folder] = list((pytester.path / "out").iterdir())
    rows = (folder / "bench.csv").read_text().splitlines()
    assert rows[0].startswith("id,gpu,gpus,model,mode,precision") and len(rows) == 1 + 9
    doc = json.loads((folder / "bench.json").read_text())
    assert {r["verdict"] for r in doc["rows"]} == {"pass", "fail", "no reference"}
    assert set(doc["time_split_s"]) == {"setup_s", "warmup_s", "measure_s"}
    assert (folder / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (folder / "report.html").read_text()
    assert "CNN benchmark" in html and "data:image/png;base64," in html
    assert json.loads((folder / "system_info.json").read_text())["guest"]["torch"] == "2.11.0"
    tests = json.loads((folder / "results.json").read_text())["tests"]
    slow = next(t for t in tests if "resnet50-train" in t["id"])
    assert slow["outcome"] == "failed" and "4,327 images/s" in slow["expected"]
    assert slow["bench"]["anchor_ratio"] == pytest.approx(0.7 * 4327 / 4288, abs=0.01)
    assert slow["bench"]["ratio"] == pytest.approx(0.7, abs=0.01)
    result.stdout.fnmatch_lines(["*cnn benchmark: 9 runs; set-up 3 s, warm-up 9 s, measured *"])


def test_benchmark_refuses_to_share_gpus_between_xdist_workers(pytester: pytest.Pytester) -> None:
    setup(pytester)
    result = pytester.runpytest_subprocess(
        "benchmarks", "-m", "benchmark", "--guest", "local", "--bench-profile", "quick",
        "--fake-probe", str(fake_probe(pytester)), "--no-report", "-n", "2",
        "-k", "resnet18 or resnet50")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # at collection, before any test ran
    result.stderr.fnmatch_lines(["*cannot share the GPUs between 2 xdist workers*"])


def test_bad_min_ratio_is_a_usage_error(pytester: pytest.Pytester) -> None:
    setup(pytester)
    result = pytester.runpytest_inprocess("benchmarks", "--guest", "local",
                                          "--bench-min-ratio", "85", "--no-report")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--bench-min-ratio 85.0: give a share*0.85*"])


DDP_PROBE = '''
import json, sys
REF = %s
plan = json.load(open(sys.argv[1]))
def emit(obj):
    print("DBCBENCH " + json.dumps(obj), flush=True)
emit({"kind": "env", "cuda_available": True, "torchvision": "0.26.0", "torch": "2.11.0",
      "cuda": "13.0", "mixed_dtype": "bfloat16",
      "gpus": [{"name": "NVIDIA H200"}, {"name": "NVIDIA H200"}]})
for spec in plan["runs"]:
    ddp = spec["parallel"] == "ddp"
    speed = REF["%%s-%%s" %% (spec["model"], spec["mode"])]  # per GPU
    if spec["id"] == "resnet152-train-mixed-ddp":
        speed *= 0.6  # a slow link between the GPUs
    step = spec["batch"] / speed
    emit({"kind": "result", "id": spec["id"], "status": "ok",
          "spec": dict(spec, world=2 if ddp else 1), "batch": spec["batch"],
          "dtype": "bfloat16", "times_s": [step] * 30, "setup_s": 0.3, "warmup_s": 1.0,
          "warmup_steps": 4, "first_step_s": 0.7, "measure_s": 30 * step,
          **({"rank_median_s": [step, step]} if ddp else {})})
emit({"kind": "done", "total_s": 5.0})
'''


def test_ddp_scaling_is_warned_about_and_plotted_per_gpu(pytester: pytest.Pytester) -> None:
    setup(pytester)
    runs = [r for r in profile("default").runs if r.model in ("resnet50", "resnet152")]
    speeds = {}
    for r in runs:
        ref = TABLE.lookup(Setting("NVIDIA H200", r.model, r.mode, r.precision, "single",
                                   r.batch))
        assert ref is not None
        speeds[f"{r.model}-{r.mode}"] = ref.images_per_s
    probe = pytester.path / "ddp_probe.py"
    probe.write_text(DDP_PROBE % json.dumps(speeds))
    result = pytester.runpytest_inprocess(
        "benchmarks", "-m", "benchmark", "--guest", "local", "--bench-profile", "default",
        "-k", "(resnet50 or resnet152) and not wide", "--fake-probe", str(probe),
        "--report-dir", "out", "-rs")
    result.stdout.fnmatch_lines([
        "*resnet50-train-mixed-ddp*b128x2*scaling 1.00*",
        "*resnet152-train-mixed-ddp*b256x2*0.60 x single-GPU 2,243  scaling 0.60*",
    ])
    [folder] = list((pytester.path / "out").iterdir())
    tests = {t["id"].split("[")[1].rstrip("]"): t
             for t in json.loads((folder / "results.json").read_text())["tests"]}
    slow = tests["resnet152-train-mixed-ddp"]
    assert slow["outcome"] == "warned" and slow["bench"]["verdict"] == "scaling low"
    assert [f["check"] for f in slow["findings"]] == ["bench.scaling"]
    assert "0.60 x 2,243 (this run's resnet152-train-mixed-1gpu)" in slow["observed"]
    assert "nvidia-smi topo -m" in slow["fix"]
    # DDP runs have no throughput figure of their own: judged on their scaling alone
    assert tests["resnet50-train-mixed-ddp"]["outcome"] == "passed"
    assert tests["resnet50-train-mixed-ddp"]["values"]["scaling"] == 1.0
    assert tests["resnet50-train-mixed-ddp"]["bench"]["verdict"] == "scaling ok"
    assert all(tests[f"{m}-{mode}-mixed-1gpu"]["outcome"] == "passed"
               for m in ("resnet50", "resnet152") for mode in ("train", "infer"))
    assert (folder / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads((folder / "bench.json").read_text())["rows"]
    assert {r["id"]: r["scaling"] for r in rows if r["parallel"] == "ddp"}[
        "resnet152-train-mixed-ddp"] == pytest.approx(0.6)


LEGACY_PROBE = '''
import json, sys
plan = json.load(open(sys.argv[1]))
def emit(obj):
    print("DBCBENCH " + json.dumps(obj), flush=True)
emit({"kind": "env", "cuda_available": True, "torchvision": "0.26.0", "torch": "2.11.0",
      "cuda": "13.0", "mixed_dtype": "bfloat16", "gpus": [{"name": "NVIDIA H200"}]})
for spec in plan["runs"]:
    step = spec["batch"] / (0.70 * %s)  # a slower host CPU launches the kernels
    emit({"kind": "result", "id": spec["id"], "status": "ok", "spec": dict(spec, world=1),
          "batch": spec["batch"], "dtype": "float32", "times_s": [step] * 50, "setup_s": 0.3,
          "warmup_s": 0.2, "warmup_steps": 5, "first_step_s": 0.1, "measure_s": 50 * step})
emit({"kind": "done", "total_s": 2.0})
'''


def test_launch_bound_legacy_run_reports_its_figure_without_a_verdict(
        pytester: pytest.Pytester) -> None:
    setup(pytester)
    ref = TABLE.lookup(Setting("NVIDIA H200", "resnet50", "train", "fp32", "dp", 6, legacy=True))
    assert ref is not None
    probe = pytester.path / "legacy_probe.py"
    probe.write_text(LEGACY_PROBE % ref.images_per_s)
    result = pytester.runpytest_inprocess(
        "benchmarks", "-m", "benchmark", "--guest", "local", "--bench-profile", "dbc-legacy",
        "-k", "resnet50-train", "--fake-probe", str(probe), "--no-report", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([
        "*resnet50-train-fp32-dp-legacy*0.70 x anchor*",
        "*SKIPPED*measured * images/s = 0.70 x *; no verdict: launch-bound: at batch 6*",
    ])
