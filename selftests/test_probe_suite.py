"""tests_vm as a user runs it on a machine without a GPU: which tests skip, which fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pytest_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests_vm", "--guest", "local", "--no-report",
         "-p", "no:randomly", "-q", "-rsf", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_no_gpu_in_the_run_skips_the_gpu_tests() -> None:
    out = pytest_run("-m", "unit or integration", "--profile", "runpod")
    assert out.returncode == 0, out.stdout[-3000:]
    assert "no GPU in this run" in out.stdout or "no GPU is present in this run" in out.stdout
    assert "test_guest_python" not in out.stdout.split("short test summary")[-1]


def test_expected_gpus_that_are_absent_fail_with_the_reason() -> None:
    # -rA: pytest's own short summary of the failures, which the run leaves out by default
    # (each finding is printed once, under its fix)
    out = pytest_run("-m", "unit and gpu", "--profile", "runpod", "--expect-gpus", "1",
                     "-k", "count or model or nvml or cuda or vram_total", "-rA")
    assert out.returncode == 1, out.stdout[-3000:]
    tail = out.stdout.split("short test summary")[-1]
    assert "FAILED tests_vm/test_unit_gpu.py::test_gpu_count" in tail
    assert "FAILED tests_vm/test_unit_gpu.py::test_vram_total[gpu0]" in tail
    assert "could not read nvidia-smi" in out.stdout or "nvidia-smi" in tail
    assert " error" not in tail.lower().split("failed")[0]  # failures, not internal errors
    assert "SKIPPED" not in tail


def test_unknown_profile_is_a_usage_error() -> None:
    out = pytest_run("--profile", "nope")
    assert out.returncode == 4
    said = out.stderr + out.stdout
    assert "--profile: invalid choice: 'nope' (choose from " in said  # quotes vary by Python
    assert all(name in said.split("choose from ")[1] for name in ("dbc", "runpod", "vastai"))
