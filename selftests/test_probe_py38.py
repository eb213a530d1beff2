"""The probes run on Python 3.8 (what DBC images carry) and answer with JSON without torch."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from dbc_accept.guest.probe import PROBES_DIR
from selftests.prereq import PY38, unavailable

if not PY38.is_file():
    unavailable(f"{PY38} is not installed here", module=True)
# The in-guest test probes (the benchmark's take a plan file and are tested with it).
GUEST_PROBES = ("sysinfo", "nvml", "torch_info", "matmul", "train", "transfer", "vram",
                "stress", "multi_gpu", "gpu_free")


def test_every_probe_compiles_on_python38(tmp_path: Path) -> None:
    files = [str(p) for p in sorted(PROBES_DIR.glob("*.py"))]
    out = subprocess.run([str(PY38), "-m", "py_compile", *files], capture_output=True,
                         text=True, check=False, env={**os.environ, "PYTHONPYCACHEPREFIX":
                                                      str(tmp_path)})
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("name", GUEST_PROBES)
def test_probe_answers_json_on_python38(name: str) -> None:
    """Without torch (and pynvml) each probe prints one JSON document saying so, or its data."""
    out = subprocess.run([str(PY38), str(PROBES_DIR / f"{name}.py")], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    if name == "sysinfo":
        assert doc["python"].startswith("3.8")
    elif name == "nvml":  # ctypes fallback: no driver here
        assert "libnvidia-ml" in doc["error"] or "NVML" in doc["error"]
    elif name == "gpu_free":  # NVML only, never torch: nvidia-smi fallback, absent here
        assert "nvidia-smi" in doc["error"], doc
    else:
        assert doc["error"].startswith("torch not installed"), doc


def test_worker_answers_on_python38() -> None:
    """The probe worker starts on 3.8 without torch and answers each request on its line."""
    requests = "".join(json.dumps({"id": i, "probe": name}) + "\n"
                       for i, name in enumerate(("sysinfo", "torch_info", "nope")))
    out = subprocess.run([str(PY38), str(PROBES_DIR / "worker.py")], input=requests,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    ready, *answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert ready["ready"] is True and ready["torch"] is None
    assert ready["python"].startswith("3.8")
    assert [a["id"] for a in answers] == [0, 1, 2]
    assert answers[0]["doc"]["python"].startswith("3.8")
    assert answers[1]["doc"]["error"].startswith("torch not installed")
    assert "No module named 'nope'" in answers[2]["error"]
