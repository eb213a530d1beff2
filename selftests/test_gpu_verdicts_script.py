"""scripts/gpu-verdicts.sh without a GPU: its records, digests, burn table, loads and budget."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_verdicts", SCRIPTS / "gpu_verdicts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rec(nodeid: str, outcome: str, ended: float, message: str = "", when: str = "call",
        **observed: Any) -> dict[str, Any]:
    return {"nodeid": nodeid, "when": when, "outcome": outcome, "duration_s": 0.5,
            "ended_s": ended, "message": message, "observed": observed}


def test_digest_orders_failures_and_counts_setup_errors() -> None:
    gv = load()
    records = [
        rec("tests_vm/test_unit_gpu_free.py::test_gpu_idle[gpu0]", "failed", 2.5, "busy 99%"),
        rec("tests_vm/test_unit_gpu.py::test_gpu_count", "passed", 3.0),
        rec("tests_vm/test_unit_gpu.py::test_vram_total[gpu1]", "failed", 3.5, "missing",
            when="setup"),
        rec("tests_vm/test_unit_gpu.py::test_display[gpu0]", "skipped", 4.0, "no outputs",
            when="setup"),
    ]
    d = gv.digest(records)
    assert d["counts"] == {"failed": 1, "passed": 1, "error": 1, "skipped": 1}
    assert [f["test"] for f in d["failures"]] == ["test_gpu_idle[gpu0]", "test_vram_total[gpu1]"]
    assert d["first_failure_s"] == 2.5 and d["failures"][0]["said"] == "busy 99%"
    assert d["new_checks_s"] == 0.5


def test_burn_table_from_the_clean_run_and_probe_runs() -> None:
    gv = load()
    tele = {"sm_mhz": {"median": 1980.0}, "power_w": {"median": 690.0}, "reasons_seen": 1}
    clean = gv.clean_burn([
        rec("tests_vm/test_integration_stress.py::test_burn_rate[gpu0-NVIDIA_H200-bf16]",
            "passed", 50.0, burn_bf16_tflops=420.0, burn_bf16_telemetry=tele),
        rec("tests_vm/test_integration_stress.py::test_stress[gpu0-NVIDIA_H200]", "passed", 51),
    ])
    assert clean["gpus"] == {"0": {"bf16": {"tflops": 420.0, "sm_mhz": 1980.0,
                                            "power_w": 690.0, "reasons": 1}}}
    runs = [clean, {"gpus": {"0": {"bf16": {"tflops": 424.0}, "fp32": {"tflops": 48.0}}}},
            {"gpus": {"0": {"bf16": {"tflops": 422.0}}}}]
    table = gv.burn_table(runs, {"bf16": 424, "fp32": 48})
    bf16 = table["0"]["bf16"]
    assert bf16["runs"] == [420.0, 424.0, 422.0] and bf16["mean"] == 422.0
    assert bf16["spread"] == pytest.approx(4 / 422, abs=1e-5)
    assert bf16["ratio"] == pytest.approx(422 / 424, abs=1e-4)
    assert table["0"]["fp32"]["runs"] == [48.0]


def test_plan_in_cpu_mode_and_only() -> None:
    gv = load()
    args = gv.argparse.Namespace(device="cpu", stress_seconds=6.0, burn_runs=3, only="",
                                 profile="runpod")
    stages = gv.plan(args)
    names = [s[0] for s in stages]
    assert names == ["clean", "load-hold", "load-full", "load-partial", "expect-gpus",
                     "burn2", "burn3"]
    loaded = dict((s[0], s[2]) for s in stages)["load-full"]
    assert loaded[loaded.index("-k") + 1] == "gpu_free or stress or burn"
    expect = dict((s[0], s[2]) for s in stages)["expect-gpus"]
    assert expect[-2:] == ["--expect-gpus", "1"] and expect.count("--expect-gpus") == 1
    args.only = "expect-gpus,burn3"
    assert [s[0] for s in gv.plan(args)] == ["expect-gpus", "burn3"]


def test_plugin_records_outcome_time_and_message(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x='''
        import pytest
        from dbc_accept.verdict import check

        def test_ok():
            pass

        def test_bad():
            check(False, "guest.gpu_in_use", observed="pid 7 python3", expected="none")

        def test_skip():
            pytest.skip("no GPU here")
    ''')
    log = pytester.path / "log.jsonl"
    env = dict(os.environ, GPU_VERDICTS_LOG=str(log),
               PYTHONPATH=os.pathsep.join([str(ROOT), str(SCRIPTS)]))
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "dbc_accept.plugin", "-p",
                          "gpu_verdicts_plugin", "-q", "-p", "no:cacheprovider", "--no-report",
                          "test_x.py"], cwd=pytester.path, env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    records = {r["nodeid"].split("::")[1]: r for r in
               (json.loads(x) for x in log.read_text().splitlines())}
    assert set(records) == {"test_ok", "test_bad", "test_skip"}, out.stdout[-2000:]
    assert records["test_bad"]["outcome"] == "failed"
    assert records["test_bad"]["message"] == ("[guest.gpu_in_use] observed: pid 7 python3; "
                                              "expected: none")
    assert records["test_skip"]["message"].endswith("no GPU here")
    assert records["test_ok"]["message"] == "" and records["test_ok"]["ended_s"] >= 0


@pytest.mark.needs_torch
def test_cpu_loads_start_and_stop() -> None:
    pytest.importorskip("torch")
    gv = load()
    for mode in ("hold", "partial"):
        bg = gv.Background(mode, "cpu", timeout=120)
        try:
            assert bg.ready.startswith("ready"), bg.ready
            assert bg.proc.poll() is None
        finally:
            bg.stop()
        assert bg.proc.poll() is not None


def test_budget_guard_leaves_out_what_would_overrun(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    gv = load()
    clock = [0.0]
    monkeypatch.setattr(gv, "time", type("T", (), {"monotonic": staticmethod(lambda: clock[0])}))

    def stage(name: str, *_: Any) -> dict[str, Any]:
        clock[0] += {"clean": 70.0}.get(name, 17.0)
        return {"stage": name, "records": []}

    def burn(*_: Any) -> dict[str, Any]:
        clock[0] += 10.0
        return {"gpus": {}}

    monkeypatch.setattr(gv, "pytest_stage", stage)
    monkeypatch.setattr(gv, "burn_run", burn)
    args = gv.argparse.Namespace(device="cpu", stress_seconds=6.0, burn_runs=3, only="",
                                 profile="runpod",
                                 budget=150.0, estimate_scale=1.0)
    doc = gv.run_all(args, tmp_path)
    # 70 + 3 x 17 + 17 (expect-gpus) = 138; 12 s left: burn2 (10) fits, burn3 would not
    assert [s["stage"] for s in doc["stages"]] == ["clean", "load-hold", "load-full",
                                                   "load-partial", "expect-gpus"]
    assert len(doc["burn_runs"]) == 1 and doc["wall_s"] == 148.0
    assert doc["skipped"] == ["burn3: 2 s of the budget left, it takes about 10 s"]


@pytest.mark.needs_torch
def test_cpu_check_end_to_end(tmp_path: Path) -> None:
    """Two stages on the CPU through the shell script; summary files written."""
    pytest.importorskip("torch")
    out = subprocess.run(
        ["bash", str(SCRIPTS / "gpu-verdicts.sh"), "--cpu-check", "--out", str(tmp_path),
         "--only", "expect-gpus,burn2", "--stress-seconds", "0.2"],
        env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True,
        timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads((tmp_path / "summary.json").read_text())
    (stage,) = doc["stages"]
    assert stage["stage"] == "expect-gpus" and stage["failures"]
    assert any(f["test"] == "test_gpu_count" for f in stage["failures"])
    assert len(doc["burn_runs"]) == 1 and "error" not in doc["burn_runs"][0]
    assert set(doc["burn"]["0"]) == {"bf16", "fp16", "tf32", "fp32"}
    text = (tmp_path / "summary.txt").read_text()
    assert "[expect-gpus]" in text and "FAILED test_gpu_count" in text and "[burn]" in text


def test_a_stage_past_its_time_is_killed_with_what_it_started(tmp_path: Path) -> None:
    gv = load()
    pid_file = tmp_path / "child.pid"
    code = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', "
            "'import time; time.sleep(60)']); open(sys.argv[1], 'w').write(str(p.pid)); "
            "print('started', flush=True); time.sleep(60)")
    t0 = time.monotonic()
    rc, out = gv.run_group([sys.executable, "-c", code, str(pid_file)], dict(os.environ), 3.0)
    assert rc == "timeout" and "started" in out and time.monotonic() - t0 < 30
    status = Path(f"/proc/{pid_file.read_text()}/status")
    deadline = time.monotonic() + 10
    while status.exists() and "zombie" not in status.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not status.exists() or "zombie" in status.read_text()
