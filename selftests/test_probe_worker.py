"""The probe worker on this machine (CPU): many probes in one process, no state carried from
one to the next, and a probe that crashes or hangs fails only itself."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbc_accept.guest import LocalGuest
from dbc_accept.guest.probe import ProbeError, ProbeRunner

pytest.importorskip("torch")

HEAD = '''import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbcprobe
'''
TAIL = '''
if __name__ == "__main__":
    dbcprobe.main(collect)
'''
# Test probes: what the worker's process looks like, and ways of going wrong.
PROBES = {
    "whoami": '''
def collect(_args):
    return {"pid": os.getpid(), "torch_before": "torch" in sys.modules}
''',
    "look": '''
def collect(_args):
    import torch
    return {"benchmark": torch.backends.cudnn.benchmark,
            "deterministic": torch.backends.cudnn.deterministic,
            "dtype": str(torch.get_default_dtype()), "threads": torch.get_num_threads(),
            "random": torch.rand(3).tolist(), "env": os.environ.get("DBC_SPOILED"),
            "cwd": os.getcwd(), "pid": os.getpid()}
''',
    "spoil": '''
def collect(_args):
    import torch
    torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic = not torch.backends.cudnn.deterministic
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1 if torch.get_num_threads() != 1 else 2)
    torch.manual_seed(5)
    os.environ["DBC_SPOILED"] = "yes"
    os.chdir("/")
    return {"pid": os.getpid()}
''',
    "crash": '''
def collect(_args):
    sys.stderr.write("about to leave at once\\n")
    sys.stderr.flush()
    os._exit(7)
''',
    "fail": '''
def collect(_args):
    raise RuntimeError("the probe broke on purpose")
''',
    "hang": '''
import subprocess
def collect(_args):
    child = subprocess.Popen(["sleep", "300"])
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "child.pid"), "w") as f:
        f.write(str(child.pid))
    sys.stderr.write("hanging now\\n")
    sys.stderr.flush()
    time.sleep(300)
''',
}


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone_soon(pid: int) -> bool:
    for _ in range(50):
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[ProbeRunner]:
    src = tmp_path / "src"
    src.mkdir()
    guest = LocalGuest(workdir=str(tmp_path / "guest"))
    with ProbeRunner(guest, worker=True) as probes:
        for name, body in PROBES.items():
            (src / f"{name}.py").write_text(HEAD + body + TAIL)
            probes.ship(name, src / f"{name}.py")
        yield probes


def worker_pid(probes: ProbeRunner) -> int:
    pid = probes.get("whoami")["pid"] if probes._worker is None else probes._worker.pid
    assert isinstance(pid, int)
    return pid


def test_one_worker_answers_many_probes_with_torch_imported_once(runner: ProbeRunner) -> None:
    first = runner.run("whoami")
    assert first["torch_before"] is True  # imported when the worker started, not per probe
    docs = [runner.run("sysinfo"), runner.run("matmul", ["--device", "cpu", "--n", "64"]),
            runner.run("whoami")]
    assert docs[0]["python_tuple"][:2] >= [3, 8]
    assert docs[1]["cpu"]["fp32"]["supported"] is True
    assert docs[2]["pid"] == first["pid"] != os.getpid()
    assert runner.worker_starts == 1 and not runner.worker_refused


def test_a_probe_answers_the_same_in_the_worker_and_alone(runner: ProbeRunner,
                                                          tmp_path: Path) -> None:
    args = ["--device", "cpu", "--steps", "4"]
    runner.run("spoil")  # state a probe before it left behind must not matter
    in_worker = runner.run("train", args)
    with ProbeRunner(LocalGuest(workdir=str(tmp_path / "alone")), worker=False) as alone:
        by_itself = alone.run("train", args)
    assert in_worker["cpu"]["losses"] == by_itself["cpu"]["losses"]


def test_state_does_not_leak_from_one_request_to_the_next(runner: ProbeRunner) -> None:
    before = runner.run("look")
    spoiled = runner.run("spoil")
    after = runner.run("look")
    assert spoiled["pid"] == before["pid"] == after["pid"]  # the same worker all along
    assert after == before
    assert after["env"] is None and after["dtype"] == "torch.float32"


def test_a_crashing_probe_fails_alone_and_the_next_gets_a_new_worker(
        runner: ProbeRunner) -> None:
    old = worker_pid(runner)
    with pytest.raises(ProbeError) as err:
        runner.run("crash")
    text = str(err.value)
    assert "probe crash" in text and "died while running it (exit status 7)" in text
    assert "about to leave at once" in text  # its last stderr lines
    assert gone_soon(old)
    doc = runner.run("whoami")
    assert doc["pid"] != old and runner.worker_starts == 2


def test_a_worker_killed_between_probes_is_replaced_unnoticed(runner: ProbeRunner) -> None:
    pid = worker_pid(runner)
    os.kill(pid, signal.SIGKILL)
    worker = runner._worker
    assert worker is not None
    for _ in range(50):  # its exit status comes once all of its threads have ended
        if not worker.alive():
            break
        time.sleep(0.1)
    assert runner.run("whoami")["pid"] != pid and runner.worker_starts == 2


def test_a_probe_that_raises_fails_alone_and_the_worker_stays(runner: ProbeRunner) -> None:
    pid = worker_pid(runner)
    with pytest.raises(ProbeError, match=r"probe fail .*RuntimeError: the probe broke on purpose"):
        runner.run("fail")
    assert runner.run("whoami")["pid"] == pid and runner.worker_starts == 1


def test_a_hanging_probe_is_stopped_with_what_it_started(runner: ProbeRunner) -> None:
    pid = worker_pid(runner)
    start = time.monotonic()
    with pytest.raises(ProbeError) as err:
        runner.run("hang", timeout=3)
    assert time.monotonic() - start < 15
    text = str(err.value)
    assert "probe hang" in text and "hung: no answer within 3 s" in text
    assert "hanging now" in text and "stopped with its process group" in text
    child = int((Path(runner.remote_dir) / "child.pid").read_text())
    assert gone_soon(pid) and gone_soon(child)
    assert runner.run("whoami")["pid"] not in (pid, child)


def test_no_worker_is_left_after_close(runner: ProbeRunner) -> None:
    pid = worker_pid(runner)
    assert alive(pid)
    runner.close()
    assert not alive(pid)
    assert runner.run("whoami")["pid"] != pid  # a later probe starts a new one
    runner.close()


def test_switched_off_every_probe_runs_alone(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBC_PROBE_WORKER", "0")
    with ProbeRunner(LocalGuest(workdir=str(tmp_path))) as probes:
        probes.run("sysinfo")
        assert probes.worker_starts == 0 and probes._worker is None


def test_own_process_probes_never_run_in_the_worker(runner: ProbeRunner) -> None:
    from dbc_accept.guest.probe import OWN_PROCESS

    assert {"gpu_free", "multi_gpu", "cnn_bench"} <= set(OWN_PROCESS)
    pid = worker_pid(runner)
    doc: dict[str, Any] = runner.run("multi_gpu", ["--device", "cpu", "--world", "1"])
    assert doc["count"] == 1
    assert runner._worker is not None and runner._worker.pid == pid  # still there
    with pytest.raises(ProbeError):  # no NVML here; what matters is who held the GPU
        runner.run("gpu_free", ["--seconds", "0"])
    assert runner._worker is None and not alive(pid)  # stopped before gpu_free looked


def test_a_worker_that_cannot_start_leaves_each_probe_its_own_process(tmp_path: Path) -> None:
    class NoProcesses(LocalGuest):
        def open_process(self, argv: Any) -> Any:
            raise OSError("cannot start processes with pipes here")

    with ProbeRunner(NoProcesses(workdir=str(tmp_path)), worker=True) as probes:
        assert probes.run("sysinfo")["python_tuple"][:2] >= [3, 8]
        assert "cannot start processes with pipes here" in probes.worker_refused


def test_ctrl_c_during_a_probe_stops_the_worker(runner: ProbeRunner,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pid = worker_pid(runner)
    worker = runner._worker
    assert worker is not None

    def interrupted(timeout: float) -> str | None:
        raise KeyboardInterrupt

    monkeypatch.setattr(worker.proc, "read_line", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.run("whoami")
    assert gone_soon(pid)
