"""The probes' logic where it means something without a GPU: torch on the CPU, statistics."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest

from dbc_accept.facts.gpu_guest import MATMUL_MAX_TOLERANCE, MATMUL_TOLERANCE
from dbc_accept.guest.probe import PROBES_DIR, local_probe_path

torch = pytest.importorskip("torch")


def load(name: str) -> ModuleType:
    """Import a probe file as a module (its ``dbcprobe`` import needs the folder on the path)."""
    if str(PROBES_DIR) not in sys.path:
        sys.path.insert(0, str(PROBES_DIR))
    spec = importlib.util.spec_from_file_location(f"probe_{name}", PROBES_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, local_probe_path(name), *args], capture_output=True,
                         text=True, timeout=300, check=True)
    doc: dict[str, Any] = json.loads(out.stdout)
    assert "error" not in doc, f"probe {name} reported: {doc['error']}\n{out.stderr[-2000:]}"
    return doc


def test_training_learns_the_task_on_the_cpu() -> None:
    doc = run("train", "--device", "cpu", "--steps", "120")
    cpu = doc["cpu"]
    assert len(cpu["losses"]) == 120
    assert cpu["accuracy"] >= 0.95  # the threshold the GPU test uses
    assert cpu["losses"][-1] < cpu["losses"][0] / 10


def test_same_seed_same_curve() -> None:
    train = load("train")
    a = train.train(torch, torch.device("cpu"), 20, 32, 7, 0.02, 8)
    b = train.train(torch, torch.device("cpu"), 20, 32, 7, 0.02, 8)
    assert a["losses"] == b["losses"]


def test_matmul_errors_within_tolerance_on_the_cpu() -> None:
    doc = run("matmul", "--device", "cpu", "--n", "256")
    for precision, result in doc["cpu"].items():
        assert result["error"] <= MATMUL_TOLERANCE[precision] / 2, precision
        assert result["max_error"] <= MATMUL_MAX_TOLERANCE[precision] / 2, precision


def test_matmul_catches_a_wrong_product() -> None:
    matmul = load("matmul")
    a, b, ref = matmul.reference(torch, 256, 1)
    wrong = (a @ b).clone()
    wrong[3, 7] += 5.0
    assert matmul.rel_error(torch, wrong, ref) > MATMUL_TOLERANCE["fp32"]
    assert matmul.max_error(torch, wrong, ref) > MATMUL_MAX_TOLERANCE["bf16"]
    wrong[0, 0] = float("nan")
    assert matmul.rel_error(torch, wrong, ref) == float("inf")


def test_vram_patterns_pass_on_good_memory() -> None:
    doc = run("vram", "--device", "cpu", "--seconds", "30")
    for name, pattern in doc["cpu"].items():
        assert pattern["errors"] == 0 and pattern["passes"] >= 1, name
    assert doc["cpu"]["walking"]["passes"] == 64


def test_vram_patterns_find_a_flipped_bit() -> None:
    vram = load("vram")
    chunks = [torch.empty(1 << 13, dtype=torch.int64) for _ in range(3)]

    def flip(found: list[Any]) -> None:
        found[1][1000] ^= 0x10

    out = vram.run_patterns(torch, chunks, torch.device("cpu"), 30, corrupt=flip)
    assert out["random"]["errors"] == 1
    assert out["walking"]["errors"] == 0


@pytest.mark.parametrize("pattern", ["walking", "address", "random"])
@pytest.mark.parametrize("word", [7, 1 << 17, (1 << 18) - 1])  # first row, later row, tail
def test_each_vram_pattern_finds_a_flipped_bit(pattern: str, word: int) -> None:
    vram = load("vram")
    chunks = [torch.empty(1 << 18, dtype=torch.int64) for _ in range(2)]

    def flip(found: list[Any]) -> None:  # between the first pass's writes and its verify
        found[1][word] ^= 1 << 37

    errors = torch.zeros((), dtype=torch.int64)
    corrupted = vram._CorruptAfterWrite(chunks, flip)
    deadline = vram.dbcprobe.deadline_after(0)
    if pattern == "walking":
        vram.walking(torch, corrupted, deadline, errors)
    elif pattern == "address":
        vram.address(torch, corrupted, deadline, errors)
    else:
        vram.random_fill(torch, corrupted, 1, deadline, errors)
    assert int(errors) == 1


class _TorchWithoutAminmax:
    """torch as versions before 1.11 have it: no ``aminmax``."""

    def __getattr__(self, name: str) -> Any:
        if name == "aminmax":
            raise AttributeError(name)
        return getattr(torch, name)


@pytest.mark.parametrize("old_torch", [False, True])
def test_vram_value_check_finds_the_wrong_words(old_torch: bool) -> None:
    """One word above or below the pattern, or every word wrong, is found with aminmax and
    with the word-by-word comparison of older torch alike."""
    vram = load("vram")
    tm = _TorchWithoutAminmax() if old_torch else torch
    value = vram._as_int64(0xFFFFFFFEFFFFFFFE)
    buf = torch.full((1 << 12,), value, dtype=torch.int64)
    assert int(vram.wrong_value(tm, buf, value)) == 0
    for word, flip in ((0, 1), (4095, 1 << 63), (77, 1 << 32)):
        buf[word] ^= flip
        assert int(vram.wrong_value(tm, buf, value)) == 1, (word, flip)
        buf[word] ^= flip
    assert int(vram.wrong_value(tm, buf.add(1), value)) == 1


def test_vram_pass_completed_after_the_time_limit_counts() -> None:
    """Time is up before the patterns start: each still writes and verifies once, and
    counts that pass (the test is complete)."""
    vram = load("vram")
    chunks = [torch.empty(1 << 13, dtype=torch.int64) for _ in range(3)]
    out = vram.run_patterns(torch, chunks, torch.device("cpu"), 0)
    assert all(p["passes"] >= 1 and p["errors"] == 0 for p in out.values()), out


def test_vram_tiled_patterns_find_flips_in_the_body_and_the_tail() -> None:
    vram = load("vram")
    buf = torch.empty(2 * vram.RANDOM_PERIOD + 100, dtype=torch.int64)
    gen = torch.Generator()
    table = vram.random_tables(torch, gen, 5, 2, torch.device("cpu"))[1]
    vram.write_tiled(torch, buf, table)
    assert torch.equal(buf[vram.RANDOM_PERIOD:2 * vram.RANDOM_PERIOD], table)
    assert table.min() < -(1 << 62) and table.max() > 1 << 62  # all 64 bits random
    errors = torch.zeros((), dtype=torch.int64)
    vram.count_tiled(torch, buf, table, errors)
    assert int(errors) == 0
    buf[7] ^= 0x01  # in the repeated body
    buf[buf.numel() - 3] ^= 1 << 40  # in the cut-short tail
    vram.count_tiled(torch, buf, vram.random_tables(torch, gen, 5, 2, torch.device("cpu"))[1],
                     errors)
    assert int(errors) == 2


def test_vram_address_passes_catch_every_alias() -> None:
    """Two words of a chunk never hold the same value in both address passes, and a write
    that lands a power of two away (a stuck address line) is caught in each pass."""
    vram = load("vram")
    p1, p2 = vram.ADDRESS_PERIODS
    assert p1 != p2 and all(p % 2 and all(p % d for d in range(3, 300, 2)) for p in (p1, p2))
    assert p1 * p2 > vram.MAX_CHUNK // 8
    cpu = torch.device("cpu")
    for invert, period in ((False, p1), (True, p2)):
        buf = torch.empty(1 << 18, dtype=torch.int64)
        table = vram.address_tables(torch, 4, period, invert, cpu)[3]
        vram.write_tiled(torch, buf, table)
        buf[5 + (1 << 14)] = buf[5]  # the write of word 5 also lands 2**14 words on
        errors = torch.zeros((), dtype=torch.int64)
        vram.count_tiled(torch, buf, table, errors)
        assert int(errors) == 1


def test_vram_plan_covers_ninety_percent() -> None:
    vram = load("vram")
    for free in (8 << 30, 24 << 30, 140 << 30):
        chunk, count = vram.plan(free)
        assert 0.90 <= chunk * count / free <= 0.95


def test_stats_and_bus_bandwidth() -> None:
    dbcprobe, multi = load("dbcprobe"), load("multi_gpu")
    s = dbcprobe.stats([3.0, 1.0, 2.0, 4.0])
    assert (s["median"], s["min"], s["max"]) == (2.5, 1.0, 4.0)
    assert s["spread"] == pytest.approx(3.0 / 2.5)
    alg, bus = multi.busbw(1e9, 0.01, 4)
    assert alg == pytest.approx(100.0) and bus == pytest.approx(150.0)  # x 2(n-1)/n


def test_smi_sample_parser() -> None:
    dbcprobe = load("dbcprobe")
    rows = dbcprobe.parse_smi_sample("0, 45, 612.31, 1980, 3201, 5, 16, 0x0000000000000004\n")
    assert rows[0]["temp_c"] == 45 and rows[0]["reasons"] == 4 and rows[0]["pcie_gen"] == 5


def test_ddp_slices_equal_one_batch_on_the_cpu() -> None:
    """Averaged gradients of equal slices equal the full batch's: the DDP test's premise."""
    dbcprobe, multi = load("dbcprobe"), load("multi_gpu")
    cpu = torch.device("cpu")
    single = dbcprobe.init_model(torch, 3)
    multi.train_steps(torch, single, 1, 8, 3, 0.02, cpu)
    grads = []
    for rank in range(2):
        model = dbcprobe.init_model(torch, 3)
        x, y = dbcprobe.make_task(torch, 3, 8)
        part = slice(rank * 4, rank * 4 + 4)
        loss = torch.nn.CrossEntropyLoss()(model(x[part]), y[part])
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    model = dbcprobe.init_model(torch, 3)
    x, y = dbcprobe.make_task(torch, 3, 8)
    torch.nn.CrossEntropyLoss()(model(x), y).backward()
    for p, g0, g1 in zip(model.parameters(), *grads):
        assert torch.allclose(p.grad, (g0 + g1) / 2, atol=1e-6)


def test_stress_comparison_counts_faults_not_rounding() -> None:
    stress = load("stress")
    first = torch.tensor([100.0, -50.0, 3.0, 0.5], dtype=torch.bfloat16)
    threshold = (first.float().abs() * 0.05 + 0.05).to(torch.bfloat16)
    out = first.clone()
    out[0] = 100.5  # one bf16 ulp off: rounding, not a fault
    out[1] = 50.0  # a sign flip
    out[3] = float("nan")
    bad, inexact = torch.zeros((), dtype=torch.int64), torch.zeros((), dtype=torch.int64)
    stress.compare(torch, out, first, threshold, torch.empty_like(first), bad, inexact)
    assert int(bad) == 2 and int(inexact) == 3


def test_ddp_over_processes_matches_one_process() -> None:
    """The multi-GPU probe end to end with gloo on the CPU: spawn, all-reduce, DDP, compare."""
    doc = run("multi_gpu", "--device", "cpu", "--world", "2", "--steps", "8", "--reps", "2")
    assert doc["count"] == 2 and len(doc["allreduce"]) == 2
    assert all(r["exact"] for ranks in doc["allreduce"] for r in ranks)
    assert doc["params_max_abs_diff"] / doc["params_max_abs"] < 1e-5
    assert doc["ddp_losses"] == pytest.approx(doc["single_losses"], rel=1e-5)


def test_stress_burn_loop_on_the_cpu() -> None:
    doc = run("stress", "--device", "cpu", "--n", "64", "--seconds", "1", "--period", "0.2")
    (entry,) = doc["gpus"]
    assert entry["iterations"] >= 20 and entry["mismatched_elements"] == 0
    assert entry["first_finite"] and "telemetry" in entry
    assert doc["precisions"] == ["fp32", "tf32", "fp16", "bf16"] == sorted(
        entry["precisions"], key=doc["precisions"].index)
    for precision, phase in entry["precisions"].items():
        assert phase["iterations"] >= 20 and phase["tflops"] > 0, precision
        assert phase["inexact_elements"] == 0 and "telemetry" in phase, precision
    again = run("stress", "--device", "cpu", "--n", "64", "--seconds", "0.2")["gpus"][0]
    for precision, phase in again["precisions"].items():  # one seed: the same product
        assert phase["checksum"] == entry["precisions"][precision]["checksum"], precision


def test_stress_checksum_sees_one_bit() -> None:
    stress = load("stress")
    for dtype in (torch.float32, torch.bfloat16):
        t = torch.randn(40, 30).to(dtype)
        flipped = t.clone()
        flipped.view(torch.int16 if dtype == torch.bfloat16 else torch.int32)[7, 3] ^= 1
        swapped = t.clone()
        swapped[[0, 1]] = t[[1, 0]]  # the same values elsewhere
        sums = {stress.checksum(torch, x, rows=8) for x in (t, flipped, swapped)}
        assert len(sums) == 3 and stress.checksum(torch, t, rows=8) == stress.checksum(
            torch, t.clone(), rows=3)
