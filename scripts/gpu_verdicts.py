"""The in-guest GPU verdicts measured on this machine (``--guest local``), clean and under
interference planted on purpose: see scripts/gpu-verdicts.sh.

Stages, in order, each skipped (and said so) when it would take the run past ``--budget``:
1. clean: the unit and integration suite with a short burn, ``--durations``;
2. load-hold / load-full / load-partial: a background process that holds most of GPU 0's
   memory, computes on it all the time, or 30% of the time, while the GPUs-free checks and
   the burn run;
3. expect-gpus: ``--expect-gpus`` one more than this machine has;
4. burn2, burn3: the GEMM burn probe alone (the clean run's burn is the first of three):
   TFLOP/s per precision, their spread, and the ratio to the H200 figures on file.
Per stage: which tests failed, when (seconds after the session began), and what they said.
``--cpu-check`` runs the same logic without a GPU (CPU loads, a CPU burn, no GPU expected).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STRESS = ROOT / "dbc_accept" / "probes" / "stress.py"
PRECISIONS = ("bf16", "fp16", "tf32", "fp32")
# Seconds each stage is expected to take on one H200 (the budget guard's estimates).
ESTIMATE = {"clean": 65.0, "burn": 10.0, "load": 17.0, "expect-gpus": 8.0}
LOADS = {"hold": "holds 90% of GPU 0's free memory",
         "full": "computes bf16 products on GPU 0 all the time",
         "partial": "computes bf16 products on GPU 0 30% of the time (30 ms of each 100 ms)"}


def load_main(mode: str, device: str) -> None:
    """A background load on GPU 0 (or the CPU); prints 'ready' once it is in place."""
    import torch

    dev = torch.device("cuda", 0) if device == "cuda" else torch.device("cpu")
    sync = (lambda: torch.cuda.synchronize(dev)) if device == "cuda" else (lambda: None)
    if mode == "hold":
        free = int(torch.cuda.mem_get_info(0)[0]) if device == "cuda" else 10 << 20
        held = torch.empty(int(free * 0.9), dtype=torch.uint8, device=dev)
        held.fill_(1)
        sync()
        print(f"ready: holding {held.numel()} bytes", flush=True)
        while True:
            time.sleep(1)
    n = 8192 if device == "cuda" else 64
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=dev).to(dtype) for _ in range(2))
    out = torch.empty_like(a)
    torch.matmul(a, b, out=out)
    sync()
    print(f"ready: computing ({mode})", flush=True)
    duty, period = (1.0, 0.1) if mode == "full" else (0.3, 0.1)
    while True:
        t0 = time.monotonic()
        while time.monotonic() - t0 < duty * period:
            for _ in range(4):
                torch.matmul(a, b, out=out)
            sync()
        if duty < 1.0:
            time.sleep(period * (1.0 - duty))


class Background:
    """A load process, started and waited for until ready; stopped (by its pid) on exit."""

    def __init__(self, mode: str, device: str, timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--load", mode, "--device", device],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.ready = self._wait(timeout)

    def _wait(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            left = end - time.monotonic()
            readable, _, _ = select.select([self.proc.stdout], [], [], max(0.0, left))
            if not readable:
                break
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("ready"):
                return line.strip()
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def pytest_stage(name: str, args: list[str], out: Path, limit: float,
                 load: str = "", device: str = "cuda") -> dict[str, Any]:
    """Run pytest (under a load when given); its per-test records and timing."""
    log = out / "logs" / f"{name}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    env = dict(os.environ, GPU_VERDICTS_LOG=str(log),
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "scripts"),
                                           os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    argv = [sys.executable, "-m", "pytest", *args, "-p", "gpu_verdicts_plugin"]
    doc: dict[str, Any] = {"stage": name, "argv": argv[3:], "load": LOADS.get(load, "")}
    bg = None
    t0 = time.monotonic()
    try:
        if load:
            bg = Background(load, device)
            doc["load_ready"] = bg.ready or "the load never said it was ready"
            doc["load_start_s"] = round(time.monotonic() - t0, 2)
        t1 = time.monotonic()
        doc["rc"], text = run_group(argv, env, limit)
        doc["pytest_s"] = round(time.monotonic() - t1, 2)
    finally:
        if bg is not None:
            bg.stop()
    doc["wall_s"] = round(time.monotonic() - t0, 2)
    (out / "logs" / f"{name}.txt").write_text("\n".join(text.splitlines()[-300:]) + "\n")
    records = read_records(log)
    doc.update(digest(records), records=records)
    return doc


def run_group(argv: list[str], env: dict[str, str], limit: float) -> tuple[Any, str]:
    """Run ``argv`` in a process group of its own; past ``limit`` seconds the group is
    killed (pytest and the probes it started), and the return code is 'timeout'."""
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=max(1.0, limit))
        return proc.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return "timeout", out.decode(errors="replace")


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def digest(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts, the failures in order (when and what), the slowest tests, every verdict."""
    counts: dict[str, int] = {}
    verdicts: dict[str, str] = {}
    for r in records:
        outcome = r["outcome"] if r["when"] == "call" else (
            "error" if r["outcome"] == "failed" else r["outcome"])
        verdicts[r["nodeid"]] = outcome
    for outcome in verdicts.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    failures = [{"test": r["nodeid"].split("::")[-1], "after_s": r["ended_s"],
                 "took_s": r["duration_s"], "said": r["message"]}
                for r in records if r["outcome"] == "failed"]
    slowest = sorted(records, key=lambda r: -r["duration_s"])[:8]
    return {"counts": counts, "failures": failures,
            "first_failure_s": failures[0]["after_s"] if failures else None,
            "slowest": [[r["nodeid"].split("::")[-1], r["duration_s"]] for r in slowest],
            "new_checks_s": round(sum(r["duration_s"] for r in records
                                      if "gpu_free" in r["nodeid"]), 2),
            "verdicts": verdicts}


def burn_run(seconds: float, extra: list[str], limit: float) -> dict[str, Any]:
    """One run of the burn probe: TFLOP/s and telemetry per GPU and precision."""
    argv = [sys.executable, str(STRESS), "--seconds", f"{seconds:g}", *extra]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=limit,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {limit:.0f} s", "wall_s": limit}
    wall = round(time.monotonic() - t0, 2)
    try:
        doc = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"no JSON (stderr: {proc.stderr.strip()[-300:]})", "wall_s": wall}
    if "error" in doc:
        return {"error": doc["error"], "wall_s": wall}
    gpus = {}
    for g in doc["gpus"]:
        gpus[str(g["index"])] = {
            p: {"tflops": r.get("tflops"), "inexact": r.get("inexact_elements"),
                "mismatched": r.get("mismatched_elements"), "checksum": r.get("checksum"),
                "sm_mhz": ((r.get("telemetry") or {}).get("sm_mhz") or {}).get("median"),
                "power_w": ((r.get("telemetry") or {}).get("power_w") or {}).get("median"),
                "reasons": (r.get("telemetry") or {}).get("reasons_seen")}
            for p, r in (g.get("precisions") or {}).items() if r.get("supported")}
        gpus[str(g["index"])]["name"] = g.get("name")  # type: ignore[assignment]
    return {"wall_s": wall, "gpus": gpus}


def burn_table(runs: list[dict[str, Any]], refs: dict[str, float]) -> dict[str, Any]:
    """Per GPU and precision: the runs' TFLOP/s, mean, spread ((max-min)/mean), vs the ref."""
    table: dict[str, Any] = {}
    for run in runs:
        for index, prec in (run.get("gpus") or {}).items():
            for p in PRECISIONS:
                if isinstance(prec.get(p), dict) and prec[p].get("tflops"):
                    table.setdefault(index, {}).setdefault(p, []).append(prec[p]["tflops"])
    out: dict[str, Any] = {}
    for index, per in table.items():
        for p, xs in per.items():
            mean = sum(xs) / len(xs)
            ref = refs.get(p)
            out.setdefault(index, {})[p] = {
                "runs": [round(x, 2) for x in xs], "mean": round(mean, 2),
                "spread": round((max(xs) - min(xs)) / mean, 5) if mean else None,
                "ref": ref, "ratio": round(mean / ref, 4) if ref else None}
    return out


def h200_refs() -> dict[str, float]:
    models = json.loads((ROOT / "dbc_accept" / "data" / "gpu_models.json").read_text())
    return dict(models["models"]["10de:2335"].get("burn_tflops_ref") or {})


def gpu_count(device: str) -> int:
    if device != "cuda":
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             stdout=subprocess.PIPE, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return len([x for x in out.split() if x.strip().isdigit()])


def plan(args: argparse.Namespace) -> list[tuple[str, str, list[str], str]]:
    """(stage, kind, pytest arguments, load) in the order they run."""
    cpu = args.device != "cuda"
    common = ["--guest", "local", "--profile", args.profile, "--no-report", "-p",
              "no:cacheprovider", "-q", "-rfEs"]
    if cpu:  # no GPU here: every GPU test skips; the flow is what is checked
        common += ["--expect-gpus", "0"]
    stress = ["--stress-seconds", f"{args.stress_seconds:g}"]
    suite = ["tests_vm", "-m", "unit or integration", *common, *stress]
    loaded = [*suite, "-k", "gpu_free or stress or burn"]
    stages = [("clean", "clean", [*suite, "--durations=0"], "")]
    stages += [(f"load-{m}", "load", loaded, m) for m in LOADS]
    more = "1" if cpu else str(gpu_count(args.device) + 1)
    expect = ["tests_vm", "-m", "unit", *[a for a in common if a not in ("--expect-gpus", "0")],
              "--expect-gpus", more]
    stages.append(("expect-gpus", "expect-gpus", expect, ""))
    stages += [(f"burn{i + 2}", "burn", [], "") for i in range(args.burn_runs - 1)]
    if args.only:
        wanted = set(args.only.split(","))
        stages = [s for s in stages if s[0] in wanted]
    return stages


def clean_burn(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The clean run's burn as a burn run: test_burn_rate observes each GPU's figures."""
    gpus: dict[str, Any] = {}
    for r in records:
        match = re.search(r"\[gpu(\d+)", r["nodeid"])
        for p in PRECISIONS:
            rate = r["observed"].get(f"burn_{p}_tflops")
            if match and rate is not None:
                tele = r["observed"].get(f"burn_{p}_telemetry") or {}
                gpus.setdefault(match.group(1), {})[p] = {
                    "tflops": rate, "sm_mhz": (tele.get("sm_mhz") or {}).get("median"),
                    "power_w": (tele.get("power_w") or {}).get("median"),
                    "reasons": tele.get("reasons_seen")}
    return {"source": "clean run", "gpus": gpus} if gpus else {}


def environment() -> dict[str, Any]:
    """The machine in a few facts (no torch import: it would cost seconds)."""
    from importlib import metadata

    env: dict[str, Any] = {"python": sys.version.split()[0]}
    for dist in ("torch", "pytest", "nvidia-ml-py", "pynvml"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = None
    try:
        env["gpus"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,pci.device_id,driver_version,memory.total,"
             "memory.used,power.limit", "--format=csv,noheader"], capture_output=True,
            text=True, timeout=30, check=False).stdout.strip().splitlines()
    except (OSError, subprocess.TimeoutExpired) as exc:
        env["gpus"] = f"nvidia-smi: {exc}"
    env["cpus"] = os.cpu_count()
    return env


def run_all(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    t0 = time.monotonic()
    doc: dict[str, Any] = {"budget_s": args.budget, "device": args.device,
                           "profile": args.profile, "stress_seconds": args.stress_seconds,
                           "environment": environment(), "stages": [], "skipped": [],
                           "burn_runs": []}
    burn_extra = [] if args.device == "cuda" else ["--device", "cpu", "--n", "64"]
    for name, kind, pytest_args, load in plan(args):
        left = args.budget - (time.monotonic() - t0)
        if left < ESTIMATE[kind] * args.estimate_scale:
            doc["skipped"].append(f"{name}: {left:.0f} s of the budget left, it takes about "
                                  f"{ESTIMATE[kind] * args.estimate_scale:.0f} s")
            continue
        print(f"gpu-verdicts: {name} ({time.monotonic() - t0:.0f} s)", flush=True)
        if kind == "burn":
            doc["burn_runs"].append(burn_run(args.stress_seconds, burn_extra, left))
            continue
        stage = pytest_stage(name, pytest_args, out, left, load, args.device)
        doc["stages"].append(stage)
        burn = clean_burn(stage.pop("records")) if name == "clean" else {}
        if burn:
            doc["burn_runs"].append(burn)
    doc["burn"] = burn_table(doc["burn_runs"], h200_refs())
    doc["wall_s"] = round(time.monotonic() - t0, 2)
    return doc


def text_summary(doc: dict[str, Any]) -> str:
    env = doc.get("environment") or {}
    lines = [f"gpu-verdicts: {doc['wall_s']:.0f} s of {doc['budget_s']:.0f} s "
             f"(device {doc['device']}, --profile {doc.get('profile')}, --stress-seconds "
             f"{doc.get('stress_seconds')}); python {env.get('python')}, torch "
             f"{env.get('torch')}; GPUs: {env.get('gpus')}"]
    for st in doc["stages"]:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(st["counts"].items()))
        load = f" under a load that {st['load']} ({st.get('load_ready', '')})" \
            if st["load"] else ""
        lines.append(f"\n[{st['stage']}]{load}: rc {st['rc']}, pytest {st['pytest_s']} s; "
                     f"{counts}; GPUs-free checks {st['new_checks_s']} s")
        for f in st["failures"]:
            lines.append(f"  FAILED {f['test']} at {f['after_s']:.1f} s (took "
                         f"{f['took_s']:.1f} s): {f['said'][:400]}")
        if st["stage"] == "clean":
            lines.append("  slowest: " + ", ".join(f"{t} {s:.1f} s" for t, s in st["slowest"]))
    for index, per in doc["burn"].items():
        lines.append(f"\n[burn] GPU {index}, {len(doc['burn_runs'])} runs (TFLOP/s):")
        for p, r in per.items():
            ratio = f" = {r['ratio']:.3f} x ref {r['ref']}" if r["ratio"] else ""
            lines.append(f"  {p}: mean {r['mean']} runs {r['runs']} spread "
                         f"{100 * (r['spread'] or 0):.2f}%{ratio}")
    errors = [r["error"] for r in doc["burn_runs"] if "error" in r]
    lines += [f"  burn error: {e}" for e in errors]
    lines += [f"skipped {s}" for s in doc["skipped"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu-verdicts-out")
    p.add_argument("--budget", type=float, default=150.0, help="seconds for everything")
    p.add_argument("--stress-seconds", type=float, default=6.0)
    p.add_argument("--burn-runs", type=int, default=3)
    p.add_argument("--estimate-scale", type=float, default=1.0,
                   help="scale the stage estimates of the budget guard")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--profile", default="runpod",
                   help="the suite's --profile (default runpod: the lent GPU machines have a "
                   "64 GiB disk, below the 100 GiB of DBC's profile, a host fact, not a GPU's)")
    p.add_argument("--cpu-check", action="store_true",
                   help="without a GPU: CPU loads and burn, no GPU expected")
    p.add_argument("--only", default="", help="comma-separated stages (clean, load-hold, "
                   "load-full, load-partial, expect-gpus, burn2, burn3)")
    p.add_argument("--load", choices=tuple(LOADS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.cpu_check:
        args.device = "cpu"
    if args.load:
        load_main(args.load, args.device)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = run_all(args, out)
    (out / "summary.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    text = text_summary(doc)
    (out / "summary.txt").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
