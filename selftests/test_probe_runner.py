"""The probe runner: shipping, running, parsing, errors and caching, on LocalGuest and fakes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from dbc_accept.guest import LocalGuest
from dbc_accept.guest.probe import ProbeError, ProbeRunner, parse_output, probe_names, run_probe
from dbc_accept.target import NOT_FOUND_RC, TIMEOUT_RC, CommandResult


@pytest.fixture(autouse=True)
def _process_per_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about a probe in a process of its own (the worker's are elsewhere)."""
    monkeypatch.setenv("DBC_PROBE_WORKER", "0")


class FakeGuest:
    """A guest whose every command answers with ``result``; it records what it was asked."""

    name = "fake"
    workdir = "/w"
    passed_gpus = None

    def __init__(self, rc: int = 0, stdout: str = "{}", stderr: str = "") -> None:
        self.answer = (rc, stdout, stderr)
        self.runs: list[tuple[str, ...]] = []
        self.puts: list[str] = []

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        self.runs.append(tuple(argv))
        rc, out, err = self.answer if argv[0] != "mkdir" else (0, "", "")
        return CommandResult(tuple(argv), rc, out, err)

    def put(self, local_path: str, remote_path: str) -> None:
        self.puts.append(remote_path)

    def read_text(self, path: str) -> str:
        raise FileNotFoundError(path)

    def read_link(self, path: str) -> str:
        raise FileNotFoundError(path)

    def list_dir(self, path: str) -> list[str]:
        raise FileNotFoundError(path)


def test_sysinfo_runs_in_a_local_guest(tmp_path: Path) -> None:
    guest = LocalGuest(workdir=str(tmp_path))
    doc = run_probe(guest, "sysinfo")
    assert doc["python_tuple"][:2] >= [3, 8]
    assert (tmp_path / "probes" / "sysinfo.py").is_file()
    assert (tmp_path / "probes" / "dbcprobe.py").is_file()


def test_known_probes() -> None:
    assert {"sysinfo", "torch_info", "nvml", "matmul", "train", "transfer", "vram", "stress",
            "multi_gpu", "gpu_free"} <= set(probe_names())
    assert "dbcprobe" not in probe_names()


def test_ships_once_and_caches_per_arguments() -> None:
    guest = FakeGuest(stdout='{"ok": 1}\n')
    runner = ProbeRunner(guest)
    assert runner.get("sysinfo") == {"ok": 1}
    assert runner.get("sysinfo") == {"ok": 1}
    runner.get("sysinfo", ["--x"])
    assert [r for r in guest.runs if r[0] == "python3"] == [
        ("python3", "/w/probes/sysinfo.py"), ("python3", "/w/probes/sysinfo.py", "--x")]
    assert sorted(guest.puts) == ["/w/probes/dbcprobe.py", "/w/probes/sysinfo.py"]


@pytest.mark.parametrize(("rc", "stdout", "stderr", "why"), [
    (NOT_FOUND_RC, "", "", "python3 not found on the test VM"),
    (TIMEOUT_RC, "", "", "timed out after 5 s"),
    (1, "", "Traceback\nSyntaxError: invalid syntax", "exited 1: SyntaxError"),
    (0, "garbage", "", "printed no JSON document"),
    (0, '{"error": "torch not installed (No module named torch)"}', "", "torch not installed"),
])
def test_failures_are_fact_errors_with_the_reason(rc: int, stdout: str, stderr: str,
                                                  why: str) -> None:
    runner = ProbeRunner(FakeGuest(rc, stdout, stderr))
    with pytest.raises(ProbeError, match="could not run probe sysinfo on the test VM: " + why):
        runner.get("sysinfo", timeout=5)
    with pytest.raises(ProbeError):  # replayed from the cache, not run again
        runner.get("sysinfo", timeout=5)
    assert len([r for r in runner.guest.runs if r[0] == "python3"]) == 1  # type: ignore[attr-defined]


def test_unknown_probe() -> None:
    with pytest.raises(ProbeError, match="no such probe"):
        ProbeRunner(FakeGuest()).run("nope")


def test_output_with_noise_before_the_document() -> None:
    assert parse_output("x", 'NCCL INFO something\n{"a": [1]}\n') == {"a": [1]}
    with pytest.raises(ProbeError):
        parse_output("x", "[1, 2]")


def test_fake_gpu_guest_answers_through_one_worker() -> None:
    from selftests.fake_gpu_guest import FakeGpuGuest

    guest = FakeGpuGuest()
    with ProbeRunner(guest, worker=True) as runner:  # type: ignore[arg-type]
        assert runner.get("gpu_free")["gpus"][0]["processes"] == []
        for name in ("torch_info", "matmul", "train", "multi_gpu", "stress"):
            runner.get(name)
    assert guest.ran == ["gpu_free", "torch_info", "matmul", "train", "multi_gpu", "stress"]
    # one worker, and the probes that need a process of their own never went to it
    assert [w.requests for w in guest.workers] == [["torch_info", "matmul", "train", "stress"]]


def test_local_stream_hands_lines_over_and_stops_at_its_time_limit(tmp_path: Path) -> None:
    import time

    guest = LocalGuest(workdir=str(tmp_path))
    seen: list[str] = []
    start = time.monotonic()
    res = guest.stream(["sh", "-c", "echo one; echo two >&2; sleep 300 & echo $!; wait"], 2,
                       seen.append)
    assert time.monotonic() - start < 10
    assert res.rc == TIMEOUT_RC and seen[0] == "one" and res.stdout.startswith("one\n")
    assert "two" in res.stderr and "timed out after 2 s" in res.stderr
    for _ in range(50):  # what it started went with it (a zombie until reaped)
        stat = Path(f"/proc/{seen[1]}/stat")
        if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"pid {seen[1]}, started by the timed-out command, still runs")
    done = guest.stream(["sh", "-c", "echo a; exit 3"], 10, seen.append)
    assert (done.rc, done.stdout, seen[-1]) == (3, "a", "a")
    assert guest.stream(["no-such-command-xyz"], 5, seen.append).rc == NOT_FOUND_RC
