"""The CNN probe's lines parsed once into dataclasses, and the table row's JSON form."""

from __future__ import annotations

import pytest

from dbc_accept.bench import output, reference
from dbc_accept.bench.lines import GpuSeen, parse_env, parse_result
from dbc_accept.bench.output import BenchRow, row_of
from dbc_accept.bench.profiles import RunSpec
from dbc_accept.bench.runner import ProbeRun
from dbc_accept.bench.session import CnnBench
from dbc_accept.verdict import CheckFailed

ENV = {"kind": "env", "python": "3.10.12", "torch": "2.3.0", "torchvision": "0.18.0",
       "cuda": "12.1", "cuda_available": True, "mixed_dtype": "bfloat16", "cudnn": 8902,
       "gpus": [{"index": 0, "name": "NVIDIA H200", "memory_bytes": 150 << 30}]}
OK = {"kind": "result", "id": "resnet50-train-mixed-1gpu", "status": "ok", "batch": 64,
      "dtype": "bfloat16", "times_s": [0.03] * 20, "rank_median_s": [None],
      "spec": {"model": "resnet50", "mode": "train", "precision": "mixed",
               "parallel": "single", "batch": 128}, "setup_s": 1, "warmup_steps": 5}

# The keys of a row in bench.json, results.json and the junit property, in their order.
JSON_ORDER = (
    "id", "gpu", "gpus", "model", "mode", "precision", "dtype", "parallel", "batch", "world",
    "images_per_s", "images_per_s_per_gpu", "median_step_ms", "cv", "spread", "steps",
    "reference_images_per_s", "reference_source", "ratio", "verdict", "anchor_images_per_s",
    "anchor_source", "anchor_ratio", "anchor_label", "setup_s", "warmup_s", "warmup_steps",
    "first_step_s", "measure_s", "scaling")


def test_env_line_typed_and_kept_whole() -> None:
    env = parse_env(ENV)
    assert env.gpus == (GpuSeen("NVIDIA H200", 0, 150 << 30),) and env.gpu_name == "NVIDIA H200"
    assert env.cuda_available and env.torchvision == "0.18.0" and env.reported
    assert env.doc == ENV  # system_info.json shows the line as the probe printed it
    assert parse_env({}).gpu_name == "cpu" and not parse_env({}).reported


def test_result_line_typed() -> None:
    result = parse_result(OK)
    assert result.setting is not None and result.setting.batch == 128
    assert result.batch == 64 and result.times_s == (0.03,) * 20 and result.rank_median_s == ()
    assert result.setup_s == 1.0 and result.warmup_steps == 5 and not result.problem
    skipped = parse_result({"id": "x", "status": "skipped", "reason": "no GPU", "spec": {}})
    assert skipped.setting is None and skipped.reason == "no GPU" and not skipped.problem


def test_an_unreadable_result_fails_saying_what_is_missing() -> None:
    broken = {k: v for k, v in OK.items() if k != "times_s"}
    assert parse_result(broken).problem == "'times_s'"
    bench = CnnBench("local", reference.load(), 0.85)
    bench.probe = ProbeRun(env=parse_env(ENV), done=True)
    bench.probe.add(broken)
    with pytest.raises(CheckFailed, match="could not parse the result of "
                                          "resnet50-train-mixed-1gpu: 'times_s'"):
        bench.judged(RunSpec("resnet50", "train", "mixed", "single", 128))


def test_row_json_form_round_trips_in_field_order() -> None:
    bench = CnnBench("local", reference.load(), 0.85)
    bench.probe = ProbeRun(env=parse_env(ENV), done=True)
    bench.probe.add(OK)
    row = bench.judged(RunSpec("resnet50", "train", "mixed", "single", 128)).row
    doc = row.as_dict()
    assert tuple(doc) == JSON_ORDER and doc["scaling"] is None
    assert set(output.FIELDS) <= set(doc)
    assert row_of(doc) == row and row_of({"id": "a", "unknown": 1}) == BenchRow(id="a")
