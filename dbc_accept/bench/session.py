"""One probe run per session for the CNN tests: plan, progress lines, per-test verdicts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from dbc_accept.bench import output
from dbc_accept.bench.lines import ProbeEnv, RunResult
from dbc_accept.bench.output import MIN_SCALING, BenchRow
from dbc_accept.bench.profiles import Profile, RunSpec
from dbc_accept.bench.reference import Comparison, ReferenceTable
from dbc_accept.bench.runner import Line, ProbeRun, run_probe
from dbc_accept.bench.stats import Summary, summarize
from dbc_accept.messages import fill
from dbc_accept.verdict import fail

SECONDS_PER_RUN = 90.0  # the probe's time limit: generous, a hang is all it must catch
# Run stability (CV of the medians of the measurement's sub-windows, stats.window_spread)
# above which a run is warned about. The CV of single steps is reported but not judged:
# launch-bound training (DenseNet, MobileNet, ShuffleNet...) has a high step CV on a healthy
# GPU from the CPU's launch jitter, while its median stays put (the figures:
# docs/benchmarks-and-report.md, "Spread").
MAX_SPREAD = 0.05


@dataclass(frozen=True)
class Judged:
    """A successful run, its statistics and its comparison with the reference."""

    line: RunResult
    summary: Summary
    comparison: Comparison
    row: BenchRow
    scaling: Scaling | None = None


@dataclass(frozen=True)
class Scaling:
    """A DDP run's images/s per GPU against a single-GPU figure of the same setting."""

    efficiency: float
    per_gpu: float
    single: float
    against: str  # which single-GPU figure


@dataclass
class CnnBench:
    """The session's probe run and how to judge each of its runs."""

    guest_name: str
    table: ReferenceTable
    min_ratio: float
    probe: ProbeRun = field(default_factory=ProbeRun)
    rows: dict[str, BenchRow] = field(default_factory=dict)

    def start(self, guest: Any, profile: Profile, ids: set[str],
              write: Callable[[str], None]) -> None:
        """Run the selected runs of ``profile`` in ``guest``, writing one line per run."""
        plan = profile.plan(ids)
        write(f"cnn benchmark: profile {profile.name}, {len(plan['runs'])} runs "
              f"in one probe on {self.guest_name}")

        self.probe = ProbeRun()

        def on_line(line: Line) -> None:
            parsed = self.probe.add(line)  # the env line first: the rows need the GPU's name
            text = self._progress(parsed)
            if text:
                write(text)

        timeout = 120.0 + SECONDS_PER_RUN * len(plan["runs"])
        self.probe = run_probe(guest, plan, on_line, timeout)
        split = output.time_split(list(self.rows.values()))
        write(f"cnn benchmark: {self.probe.wall_s:.0f} s in all; set-up {split['setup_s']:.0f} s,"
              f" warm-up {split['warmup_s']:.0f} s, measured {split['measure_s']:.0f} s")
        why = self.probe.ended_early()
        if why:
            write(f"cnn benchmark: {why}")

    def _progress(self, line: ProbeEnv | RunResult | None) -> str | None:
        if isinstance(line, ProbeEnv):
            return describe_env(line)
        if line is None:
            return None
        if line.status != "ok":
            return f"{line.id:<40} {line.status}: {line.reason}"
        try:
            judged = self._judge(line)
        except (ValueError, KeyError) as exc:
            return f"{line.id:<40} unreadable result: {exc}"
        return output.progress_line(judged.row)

    def _judge(self, line: RunResult) -> Judged:
        summary, cmp = output.judge(line, self.probe.env, self.table, self.min_ratio)
        row = output.row(line, self.probe.env, summary, cmp)
        scaling = self._scaling(line, cmp)
        row = replace(row, scaling=None if scaling is None else round(scaling.efficiency, 4))
        if scaling is not None and cmp.ok is None:  # a DDP run is judged on its scaling
            row = replace(row, verdict="scaling ok" if scaling.efficiency >= MIN_SCALING
                          else "scaling low")
        self.rows[line.id] = row
        return Judged(line, summary, cmp, row, scaling)

    def _scaling(self, line: RunResult, cmp: Comparison) -> Scaling | None:
        """Per-GPU DDP throughput against this run's single-GPU figure of the same model,
        mode and batch, else against the single-GPU reference; None for other runs."""
        if line.setting is None or line.setting.parallel != "ddp":
            return None
        single_id = line.id.replace("-ddp", "-1gpu")
        single = self.probe.results.get(single_id)
        if (single and single.status == "ok" and single.times_s
                and single.batch is not None and single.batch == line.batch):
            figure = summarize(list(single.times_s), single.batch).images_per_s
            return Scaling(cmp.measured / figure, cmp.measured, figure,
                           f"this run's {single_id}")
        ref = cmp.anchor if cmp.reference is None else None
        if ref is not None and ref.per_gpu_of_single:
            return Scaling(cmp.measured / ref.images_per_s, cmp.measured, ref.images_per_s,
                           f"the single-GPU reference, {ref.describe()}")
        return None

    def judged(self, spec: RunSpec) -> Judged:
        """The verdict material of ``spec``: skips or fails when there is none."""
        __tracebackhide__ = True
        env = self.probe.env
        if env.error:
            fail("bench.software", observed=env.error, expected=fill("torch {in_guest}", "en"))
        if env.reported and not env.cuda_available:
            pytest.skip(f"no CUDA GPU on {self.guest_name} "
                        "(torch.cuda.is_available() is False)")
        if env.reported and env.torchvision is None:
            fail("bench.software", observed=env.torchvision_error or "no torchvision",
                 expected=fill("torchvision {in_guest}", "en"))
        line = self.probe.results.get(spec.id)
        if line is None:
            why = self.probe.ended_early() or "the probe reported nothing for it"
            fail("bench.missing", observed=f"no result for {spec.id}: {why}",
                 expected="one result line per run")
        if line.status == "skipped":
            pytest.skip(f"{spec.id}: {line.reason or 'skipped by the probe'}")
        if line.status != "ok":
            fail("bench.run", observed=f"{spec.id}: {line.reason or 'no reason given'}",
                 expected=f"{spec.model} runs ({spec.mode}, {spec.precision}, batch {spec.batch})")
        if line.problem:
            fail("bench.run", observed=f"could not parse the result of {spec.id}: {line.problem}",
                 expected="a result line with every step's time")
        try:
            return self._judge(line)
        except (ValueError, KeyError) as exc:
            fail("bench.run", observed=f"could not parse the result of {spec.id}: {exc}",
                 expected="a result line with every step's time")


def describe_env(env: ProbeEnv) -> str:
    """One line about the guest's GPUs and software."""
    if env.error:
        return f"guest: {env.error}"
    names = sorted({g.name for g in env.gpus})
    what = f"{len(env.gpus)} x {', '.join(names)}" if env.gpus else "no CUDA GPU"
    return (f"guest: {what}; python {env.python}, torch {env.torch}, "
            f"torchvision {env.torchvision}, CUDA {env.cuda}, "
            f"mixed precision {env.mixed_dtype}")
