"""The CNN benchmark probe on the CPU: its timing loop, DDP over gloo, how it is run."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dbc_accept.bench import output, reference
from dbc_accept.bench.profiles import RunSpec, profile
from dbc_accept.bench.runner import PROBE, parse_line, run_probe
from dbc_accept.bench.stats import summarize
from dbc_accept.guest import LocalGuest
from selftests.fake_worker import stream_by_run
from selftests.prereq import PY38, unavailable

torch = pytest.importorskip("torch")
nn = torch.nn

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cnn_bench_probe", PROBE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Tiny(nn.Module):
    """A two-layer CNN: enough to exercise every path of a step."""

    def __init__(self, sleep_s: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.fc = nn.Linear(4, 1000)
        self.sleep_s = sleep_s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def spec(**changes: Any) -> dict[str, Any]:
    base = RunSpec("tiny", "train", "fp32", "single", 4, image=32, warmup_min=2, warmup_max=4,
                   steps_min=5, steps_max=8, measure_s=0.0)
    return {**base.as_probe(), **changes, "id": "tiny-run"}


def cpu_env(probe: ModuleType) -> dict[str, Any]:
    return probe.environment(torch, "cpu")  # type: ignore[no-any-return]


# --- the probe's timing loop, on the CPU ---------------------------------------------------

def test_training_steps_the_optimizer(probe: ModuleType) -> None:
    model = Tiny()
    before = model.fc.weight.detach().clone()
    result = probe.run_one(spec(), cpu_env(probe), "cpu", build=lambda name: model)
    assert result["status"] == "ok", result
    assert not torch.equal(before, model.fc.weight.detach())
    assert 5 <= len(result["times_s"]) <= 8
    assert all(t > 0 for t in result["times_s"])
    assert result["warmup_steps"] >= 3 and result["dtype"] == "float32"
    assert result["setup_s"] >= 0 and result["warmup_s"] > 0 and result["measure_s"] > 0


def test_legacy_mode_never_steps_an_optimizer(probe: ModuleType) -> None:
    model = Tiny()
    before = model.fc.weight.detach().clone()
    run = spec(legacy=True, warmup_min=5, warmup_max=5, steps_min=50, steps_max=50)
    result = probe.run_one(run, cpu_env(probe), "cpu", build=lambda name: model)
    assert result["status"] == "ok"
    assert torch.equal(before, model.fc.weight.detach())
    assert (result["warmup_steps"], len(result["times_s"])) == (5, 50)  # DBC's 5 + 50


def test_every_step_is_timed(probe: ModuleType) -> None:
    run = spec(mode="infer", steps_min=6, steps_max=6)
    result = probe.run_one(run, cpu_env(probe), "cpu", build=lambda name: Tiny(sleep_s=0.02))
    assert len(result["times_s"]) == 6
    summary = summarize(result["times_s"], 4)
    assert summary.median_s >= 0.02  # never shorter than the work (a loaded CI may stretch it)
    assert 6 * 0.02 <= sum(result["times_s"]) <= result["measure_s"]
    assert summary.images_per_s == pytest.approx(4 / summary.median_s)


def test_step_count_follows_the_time_budget(probe: ModuleType) -> None:
    run = spec(mode="infer", steps_min=2, steps_max=50, measure_s=0.1)
    result = probe.run_one(run, cpu_env(probe), "cpu", build=lambda name: Tiny(sleep_s=0.01))
    assert 2 <= len(result["times_s"]) < 50  # the budget, not steps_max, ended it


def test_auxiliary_outputs_take_part_in_the_loss(probe: ModuleType) -> None:
    class WithAux(Tiny):  # as inception_v3 and googlenet train: (logits, aux logits)
        def __init__(self) -> None:
            super().__init__()
            self.aux = nn.Linear(4, 1000)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
            feats = self.conv(x).mean(dim=(2, 3))
            return self.fc(feats), self.aux(feats)

    model = WithAux()
    before = model.aux.weight.detach().clone()
    result = probe.run_one(spec(), cpu_env(probe), "cpu", build=lambda name: model)
    assert result["status"] == "ok"
    assert not torch.equal(before, model.aux.weight.detach())


def test_mixed_precision_on_cpu_uses_bf16(probe: ModuleType) -> None:
    result = probe.run_one(spec(precision="mixed"), cpu_env(probe), "cpu",
                           build=lambda name: Tiny())
    assert result["status"] == "ok" and result["dtype"] == "bfloat16"


def test_out_of_memory_halves_the_batch(probe: ModuleType) -> None:
    class Hungry(Tiny):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] > 2:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return super().forward(x)

    result = probe.run_one(spec(batch=8), cpu_env(probe), "cpu", build=lambda name: Hungry())
    assert result["status"] == "ok"
    assert (result["batch"], result["batch_requested"]) == (2, 8)


def test_a_failing_model_is_an_error_result(probe: ModuleType) -> None:
    def broken(name: str) -> nn.Module:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    result = probe.run_one(spec(), cpu_env(probe), "cpu", build=broken)
    assert result["status"] == "error"
    assert "illegal memory access" in result["reason"]


def test_a_missing_model_is_skipped(probe: ModuleType) -> None:
    result = probe.run_one(spec(model="convnext_tiny"), cpu_env(probe), "cpu",
                           build=probe.build_torchvision)
    assert result["status"] == "skipped"
    assert "torchvision" in result["reason"]


class Told:
    """DDP ranks' agreement as a test sets it: 'settled' only from call ``settle_at``; the
    step count of the slowest rank."""

    def __init__(self, settle_at: int, most: int) -> None:
        self.calls, self.settle_at, self.most_steps = 0, settle_at, most

    def all(self, flag: bool) -> bool:
        self.calls += 1
        return self.calls >= self.settle_at

    def most(self, n: int) -> int:
        return max(n, self.most_steps)


def test_ranks_warm_up_and_measure_as_many_steps_as_agreed(probe: ModuleType) -> None:
    # This rank settles at once; another has not: it keeps warming up until all have, and
    # times as many steps as the rank that wants most (else one waits in a collective).
    run = spec(mode="infer", warmup_min=2, warmup_max=12, steps_min=5, steps_max=8)
    told = Told(settle_at=7, most=11)
    result = probe.run_one(run, cpu_env(probe), "cpu", build=lambda name: Tiny(), agree=told)
    assert result["status"] == "ok", result
    assert result["warmup_steps"] == 8 and len(result["times_s"]) == 11


def test_ranks_never_halve_the_batch_alone(probe: ModuleType) -> None:
    class Hungry(Tiny):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    result = probe.run_one(spec(batch=8), cpu_env(probe), "cpu", build=lambda name: Hungry(),
                           agree=Told(1, 0))
    assert result["status"] == "error" and "out of memory" in result["reason"]
    assert "batch" not in result


def tiny_plan(*runs: tuple[str, str], **extra: Any) -> dict[str, Any]:
    specs = []
    for mode, parallel in runs:
        run = RunSpec("tiny_cnn", mode, "fp32", parallel, 4, image=32, warmup_min=2,
                      warmup_max=6, steps_min=5, steps_max=40, measure_s=0.05)
        specs.append(run.as_probe())
    return {"device": "cpu", "cpu_world": 2, "runs": specs, "cudnn_benchmark": True, **extra}


def test_ddp_runs_one_process_per_rank_and_gathers_their_medians(tmp_path: Path) -> None:
    # DDP over gloo on the CPU: the same code path as over NCCL, two real processes.
    plan = tiny_plan(("train", "single"), ("train", "ddp"), ("infer", "ddp"))
    lines: list[dict[str, Any]] = []
    run = run_probe(LocalGuest(workdir=str(tmp_path)), plan, lines.append, timeout=120)
    assert run.done and run.rc == 0, run.stderr_tail
    assert set(run.results) == {"tiny_cnn-train-fp32-1gpu", "tiny_cnn-train-fp32-ddp",
                                "tiny_cnn-infer-fp32-ddp"}
    for rid in ("tiny_cnn-train-fp32-ddp", "tiny_cnn-infer-fp32-ddp"):
        res = next(ln for ln in lines if ln.get("id") == rid)  # the line as printed
        assert res["status"] == "ok", res
        assert res["spec"]["world"] == 2 and len(res["rank_median_s"]) == 2
        assert all(m is not None and m > 0 for m in res["rank_median_s"])
        assert len(res["times_s"]) >= 5 and res["cudnn_benchmark"] is True


def test_autotuning_is_set_per_run(probe: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tiny_plan(("train", "single"), ("infer", "single"))
    plan["runs"][0]["autotune"] = False
    fitted = probe.run_single(torch, plan, cpu_env(probe), "cpu")
    assert fitted == {"tiny_cnn-train-fp32-1gpu": 4, "tiny_cnn-infer-fp32-1gpu": 4}
    lines = [parse_line(t) for t in capsys.readouterr().out.splitlines()]
    assert [(ln["id"], ln["cudnn_benchmark"]) for ln in lines if ln] == [
        ("tiny_cnn-train-fp32-1gpu", False), ("tiny_cnn-infer-fp32-1gpu", True)]
    off = dict(plan, cudnn_benchmark=False)  # the plan's "no" wins over a run's "yes"
    probe.configure(torch, off, off["runs"][1])
    assert torch.backends.cudnn.benchmark is False
    probe.configure(torch, plan)
    assert torch.backends.cudnn.benchmark is True


def test_ddp_batch_follows_what_fitted_one_gpu(probe: ModuleType,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    plan = tiny_plan(("train", "ddp"), cpu_world=1)
    probe.run_ddp(torch, plan, cpu_env(probe), {"tiny_cnn-train-fp32-1gpu": 2})
    line = parse_line(capsys.readouterr().out.splitlines()[0])
    assert line is not None and line["status"] == "skipped"
    assert line["spec"]["batch"] == 2 and "DDP needs 2 or more" in line["reason"]


def test_probe_without_torchvision_says_so(tmp_path: Path) -> None:
    lines: list[dict[str, Any]] = []
    plan = profile("quick").plan({"resnet50-train-mixed-1gpu"}, device="cpu")
    run = run_probe(LocalGuest(workdir=str(tmp_path)), plan, lines.append, timeout=120)
    assert run.done and run.rc == 0
    assert [ln["kind"] for ln in lines] == ["env", "result", "done"]
    assert run.env.torchvision is None
    assert "torchvision is not installed" in run.env.torchvision_error
    assert run.results["resnet50-train-mixed-1gpu"].status == "skipped"


def test_parse_line_ignores_other_output() -> None:
    assert parse_line('DBCBENCH {"kind": "done"}') == {"kind": "done"}
    assert parse_line("NCCL INFO ring 0") is None
    assert parse_line("DBCBENCH {not json") is None


def test_probe_starts_on_python_38_and_says_torch_is_missing(tmp_path: Path) -> None:
    if not PY38.is_file():
        unavailable(f"no Python 3.8 at {PY38} to check the probe with")
    import json
    import subprocess

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(profile("quick").plan()))
    out = subprocess.run([str(PY38), str(PROBE), str(plan)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    lines = [parse_line(t) for t in out.stdout.splitlines()]
    assert lines[0] == {"kind": "env", "error": f"torch is not installed for {PY38}: "
                        "No module named 'torch'"}
    assert [ln["kind"] for ln in lines if ln] == ["env", "done"]


FAKE_TORCHVISION = '''
import torch
from torch import nn

def resnet18(weights=None):
    assert weights is None  # never a download
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=8), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 1000))
'''


def test_whole_probe_on_cpu_with_a_stand_in_torchvision(tmp_path: Path) -> None:
    pkg = tmp_path / "site" / "torchvision"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = '0.0+stand-in'\nfrom . import models\n")
    (pkg / "models.py").write_text(FAKE_TORCHVISION)
    plan = profile("quick").plan({"resnet18-train-mixed-1gpu", "resnet18-infer-mixed-1gpu",
                                  "resnet50-train-mixed-1gpu"}, device="cpu")
    for run in plan["runs"]:
        run.update(batch=4, image=64, measure_s=0.2, steps_max=20)
    lines: list[dict[str, Any]] = []
    guest = LocalGuest(workdir=str(tmp_path / "guest"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(tmp_path / "site"))
        run = run_probe(guest, plan, lines.append, timeout=120)
    assert run.done, run.stderr_tail
    assert run.env.torchvision == "0.0+stand-in"
    train = run.results["resnet18-train-mixed-1gpu"]
    assert train.status == "ok" and train.dtype == "bfloat16" and train.batch == 4
    assert run.results["resnet18-infer-mixed-1gpu"].status == "ok"
    missing = run.results["resnet50-train-mixed-1gpu"]
    assert missing.status == "skipped" and "has no model resnet50" in missing.reason
    row = output.row(train, run.env, *output.judge(train, run.env, reference.load(), 0.85))
    assert row.verdict == "no reference" and row.gpu == "cpu"


class RemoteGuest:
    """A guest reached over a link whose ``stream`` hands the lines over when it ends."""

    name = "ssh://dbc@guest"
    workdir = "/tmp/w"

    def __init__(self, stdout: str) -> None:
        self.stdout = stdout
        self.calls: list[list[str]] = []
        self.puts: list[str] = []

    def put(self, local: str, remote: str) -> None:
        self.puts.append(remote)

    def run(self, argv: list[str], timeout: float = 30.0) -> Any:
        from dbc_accept.target import CommandResult

        self.calls.append(list(argv))
        out = self.stdout if argv[0] == "python3" else ""
        return CommandResult(tuple(argv), 0, out, "")

    def stream(self, argv: list[str], timeout: float, on_line: Any) -> Any:
        return stream_by_run(self.run, argv, timeout, on_line)


def test_remote_guest_without_and_with_streaming() -> None:
    text = 'DBCBENCH {"kind": "env"}\nwarning: x\nDBCBENCH {"kind": "done"}\n'
    guest = RemoteGuest(text)
    seen: list[dict[str, Any]] = []
    run = run_probe(guest, {"runs": []}, seen.append, timeout=10)
    assert run.done and [s["kind"] for s in seen] == ["env", "done"]
    assert guest.puts == ["/tmp/w/probes/cnn_bench.py", "/tmp/w/probes/cnn_bench_plan.json"]
    assert guest.calls[-1] == ["python3", *guest.puts]

    streamed: list[str] = []

    class Streaming(RemoteGuest):
        def stream(self, argv: list[str], timeout: float, on_line: Any) -> Any:
            for line in self.stdout.splitlines():
                streamed.append(line)
                on_line(line)
            return self.run(["true"])

    run = run_probe(Streaming(text), {"runs": []}, seen.append, timeout=10)
    assert run.done and len(streamed) == 3
