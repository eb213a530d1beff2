"""The report's story: its first screen, the node's facts, the benchmark table and plot."""
from __future__ import annotations

from dataclasses import replace

import pytest

from dbc_accept.bench.output import BenchRow
from dbc_accept.facts import HostFacts
from dbc_accept.report.front import fixes_html, front_html
from dbc_accept.report.html import BENCH_COLUMNS, bench_table
from dbc_accept.report.nodefacts import guest_facts, host_facts
from dbc_accept.report.redact import Redactor
from dbc_accept.snapshot import SnapshotTarget
from dbc_accept.story import group_findings
from dbc_accept.verdict import Finding
from selftests.snapshot_harness import BASE_SNAPSHOTS

ROW = BenchRow(id="resnet50-train-mixed-1gpu", gpu="NVIDIA H200", images_per_s=2596.2,
               reference_images_per_s=4327, ratio=0.6, verdict="fail", spread=0.012,
               cv=0.003, batch=128, world=1, dtype="bfloat16", anchor_ratio=0.61,
               anchor_label="anchor", scaling=None, reference_source="measured (三)")


def test_host_facts_name_each_gpu_by_pci_address_with_its_driver() -> None:
    node = HostFacts(SnapshotTarget(str(BASE_SNAPSHOTS / "intel-2204-4gpu")))
    facts = host_facts(node)
    assert str(facts["OS"]).startswith("Ubuntu 22.04")
    assert "GiB" in str(facts["RAM"]) and int(str(facts["IOMMU groups"])) > 0
    gpus = facts["GPUs"]
    assert isinstance(gpus, list) and gpus
    assert all(g["driver"] == "vfio-pci" and g["iommu_group"] != "none" for g in gpus)
    assert all(g["pci"].startswith("0000:") for g in gpus)


def test_guest_facts_from_the_probe_and_observed_values() -> None:
    from dbc_accept.report.results import TestResult

    result = TestResult("tests_vm/test_unit_gpu.py::test_nvml_answers")
    result.values = {"driver": "550.54.15"}

    env = {"python": "3.10.12", "torch": "2.3.0", "cuda": "12.1",
           "gpus": [{"index": 0, "name": "NVIDIA H200", "memory_bytes": 150 * 1024 ** 3}]}
    facts = guest_facts(env, [result])
    assert facts["GPUs"] == ["0: NVIDIA H200, 150 GiB"] and facts["Driver"] == "550.54.15"
    assert facts["CUDA"] == "12.1" and facts["torch"] == "2.3.0"
    assert guest_facts(None, []) == {}


def test_bench_table_has_words_and_units() -> None:
    html = bench_table([ROW])
    for raw in ("images_per_s", "anchor_label", "reference_images_per_s"):
        assert f"<th>{raw}</th>" not in html
    assert "<th>Throughput (images/s)</th>" in html and "<th>Spread over the run (%)</th>" in html
    assert "<td>2,596</td>" in html and "<td>0.60</td>" in html and "<td>1.2</td>" in html
    assert all("(" in label or label in ("Run", "Verdict", "GPUs", "Precision",
                                         "Reference source") for _, label, _ in BENCH_COLUMNS)


def test_plot_is_a_png_of_ratios() -> None:
    pytest.importorskip("matplotlib")
    from dbc_accept.report.plot import _bar, bench_png

    assert _bar(ROW)[0] == pytest.approx(0.6)
    assert _bar(replace(ROW, ratio=None, scaling=0.7))[2].endswith("(scaling)")
    assert bench_png([ROW, replace(ROW, id="x (三)", ratio=None)])[:4] == b"\x89PNG"
    assert _bar(replace(ROW, id="run (十二)"))[2] == "run step 12"


def test_front_page_fixes_grouped_with_readable_steps() -> None:
    fix = "`sudo sysctl -p` (install guide step 3 (三) 3)"
    found = [(f"tests_host/t.py::t{i}[n1]", Finding("net.ip_forward", "fail", "0", "1", fix, "n1"))
             for i in range(3)]
    groups = group_findings(found)
    r = Redactor([])
    html = fixes_html(groups, r)
    assert html.count("sudo sysctl -p") == 1 and "t.py::t0, t.py::t1, t.py::t2" in html
    page = front_html({"node": "n1", "node_id": "abc", "date": "d", "profile": "dbc",
                       "counts": "c"}, "NOT READY", groups, {}, {}, {"Python": "3.11"}, r)
    assert "Verdict: NOT READY" in page and "Noto Sans CJK SC" in page
    assert "<details><summary>The machine that ran the tests" in page

