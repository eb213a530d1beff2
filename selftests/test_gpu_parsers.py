"""Parsers of nvidia-smi, nvidia-xconfig and kernel-log output, on captured real formats."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbc_accept.facts.gpu_guest import (
    HW_REASONS,
    decode_reasons,
    gather_kernel_log,
    link_gbps,
    model_of,
    number,
    parse_inventory,
    parse_query_csv,
    parse_smi_q,
    parse_xconfig_displays,
    parse_xids,
    pci_id,
)
from dbc_accept.target import CommandResult
from dbc_accept.verdict import FactError

DATA = Path(__file__).parent / "data" / "gpu"


def smi_q() -> str:
    return (DATA / "h200-smi-q.txt").read_text(encoding="utf-8")


def test_real_query_csv_of_an_h200() -> None:
    rows = parse_query_csv((DATA / "h200-query-gpu.csv").read_text(encoding="utf-8"))
    assert rows == [{"name": "NVIDIA H200", "pcie.link.gen.max": "5",
                     "pcie.link.width.current": "16", "memory.total": "143771 MiB",
                     "ecc.mode.current": "Enabled"}]
    assert number(rows[0]["memory.total"]) == 143771


def test_inventory_query() -> None:
    (gpu,) = parse_inventory((DATA / "h200-query-inventory.csv").read_text(encoding="utf-8"))
    assert (gpu.index, gpu.name, gpu.device_id) == (0, "NVIDIA H200", "10de:2335")
    assert (gpu.memory_mib, gpu.pcie_gen_max, gpu.pcie_width_max) == (143771, 5, 16)
    assert gpu.bus_id == "00000000:00:06.0" and gpu.driver == "580.159.04"
    assert model_of(gpu.device_id)["name"] == "NVIDIA H200"  # type: ignore[index]


def test_pci_id_from_nvml_and_smi_forms() -> None:
    assert pci_id("0x233510DE") == "10de:2335"
    assert pci_id(hex(590680286)) == "10de:2335"  # NVML pciDeviceId of the same H200


@pytest.mark.parametrize("text", ["", "[N/A]", "[Not Supported]", "N/A"])
def test_not_available_is_none(text: str) -> None:
    assert number(text) is None


def test_query_csv_rejects_ragged_rows() -> None:
    with pytest.raises(ValueError, match="cells"):
        parse_query_csv("a, b\n1\n")


def set_value(text: str, key: str, value: str, count: int = 0) -> str:
    """Set ``key : value`` lines of nvidia-smi -q output, whatever the column alignment."""
    return re.sub(rf"^(\s*{re.escape(key)}\s+: ).*$", rf"\g<1>{value}", text, count=count,
                  flags=re.MULTILINE)


def test_smi_q_of_a_healthy_idle_h200() -> None:
    (h,) = parse_smi_q(smi_q())
    assert (h.bus_id, h.name) == ("00000000:00:06.0", "NVIDIA H200")
    assert (h.ecc_current, h.ecc_pending) == ("Enabled", "Enabled")
    assert (h.uncorrectable_volatile, h.uncorrectable_aggregate) == (0, 0)
    # Written so that a real capture of an idle, healthy H200 passes too.
    assert h.retired_pending in ("N/A", "No") and (h.remap_pending, h.remap_failure) == (
        "No", "No")
    assert set(h.reasons_active) <= {"Idle", "SW Power Cap", "Applications Clocks Setting"}
    assert h.pcie_gen[1] == 5 and h.pcie_gen[0] in range(1, 6)  # idle links train down
    assert h.pcie_width[1] == 16
    # Driver 580 prints "Requested functionality has been deprecated" here.
    assert h.display_mode in ("Disabled", "N/A", "Requested functionality has been deprecated")


def test_smi_q_faults() -> None:
    text = set_value(smi_q(), "DRAM Uncorrectable", "3", count=1)
    head, rows = text.split("Remapped Rows", 1)
    text = head + "Remapped Rows" + set_value(rows, "Pending", "Yes", count=1)
    text = set_value(text, "HW Slowdown", "Active", count=1)
    (h,) = parse_smi_q(text)
    assert (h.uncorrectable_volatile, h.uncorrectable_aggregate) == (3, 0)
    assert h.remap_pending == "Yes"
    assert "HW Slowdown" in h.reasons_active


def test_smi_q_before_driver_535_and_two_gpus() -> None:
    block = smi_q().split("GPU 00000000:00:06.0\n", 1)[1]
    old = block.replace("Clocks Event Reasons\n", "Clocks Throttle Reasons\n").replace(
        "00000000:00:06.0", "00000000:00:07.0")
    text = smi_q() + "GPU 00000000:00:07.0\n" + set_value(
        old, "SW Thermal Slowdown", "Active", count=1)
    first, second = parse_smi_q(text)
    assert second.bus_id == "00000000:00:07.0"
    assert "SW Thermal Slowdown" in second.reasons_active
    assert "SW Thermal Slowdown" not in first.reasons_active


def test_smi_q_old_ecc_layout() -> None:
    text = "GPU 0000:01:00.0\n    ECC Errors\n        Volatile\n            Double Bit\n" \
           "                Device Memory       : 2\n                Total               : 2\n"
    (h,) = parse_smi_q(text)
    assert h.uncorrectable_volatile == 2 and h.uncorrectable_aggregate is None


def test_smi_q_without_gpu_block() -> None:
    with pytest.raises(ValueError):
        parse_smi_q("NVIDIA-SMI has failed because it couldn't communicate with the driver")


def test_decode_reasons() -> None:
    assert decode_reasons(0x1) == ["gpu_idle"]
    assert decode_reasons(0x4 | 0x8) == ["sw_power_cap", "hw_slowdown"]
    assert decode_reasons(0x1000) == ["unknown_0x1000"]
    assert not 0x1 & HW_REASONS and not 0x4 & HW_REASONS  # idle and power cap are benign


def test_xconfig_display_count() -> None:
    text = (DATA / "xconfig-query-gpu-info.txt").read_text(encoding="utf-8")
    assert parse_xconfig_displays(text) == [1]
    assert parse_xconfig_displays(text.replace("Devices: 1", "Devices: 0")) == [0]


def test_xid_lines() -> None:
    log = ("[  12.3] nvidia: loading out-of-tree module\n"
           "[ 812.1] NVRM: Xid (PCI:0000:00:06): 79, pid='<unknown>', name=<unknown>, "
           "GPU has fallen off the bus.\n"
           "[ 900.0] NVRM: Xid (PCI:0000:00:07): 48, pid=1234, DBE (0x1,0x2)\n")
    xids = parse_xids(log)
    assert [(x.pci, x.code) for x in xids] == [("0000:00:06", 79), ("0000:00:07", 48)]
    assert "fallen off the bus" in xids[0].describe()
    assert parse_xids("nothing to see\n") == []


def test_link_bandwidth() -> None:
    assert link_gbps(5, 16) == pytest.approx(63.0, abs=0.1)
    assert 0.8 * link_gbps(5, 16) < 55.4  # what the H200 reached  # type: ignore[operator]
    assert link_gbps(None, 16) is None and link_gbps(9, 16) is None


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("GPU 0x:. \n\tabcNA/[]=,-1609")), max_size=400))
def test_parsers_fail_only_with_value_errors(text: str) -> None:
    """Garbage output becomes "could not parse" (ValueError/KeyError), never a crash."""
    for parser in (parse_smi_q, parse_xconfig_displays, parse_inventory, parse_query_csv):
        with contextlib.suppress(ValueError, KeyError):
            parser(text)
    parse_xids(text)
    number(text)


class Answers:
    """A target whose commands answer from a table: argv[0] -> (rc, stdout, stderr)."""

    name = "answers"

    def __init__(self, table: dict[str, tuple[int, str, str]]) -> None:
        self.table = table

    def run(self, argv: list[str], timeout: float = 30.0) -> CommandResult:
        key = " ".join(argv[:2]) if argv[0] == "sudo" else argv[0]
        rc, out, err = self.table.get(key, (127, "", "not found"))
        return CommandResult(tuple(argv), rc, out, err)


def test_kernel_log_as_a_user_who_may_not_read_it() -> None:
    denied = Answers({"dmesg": (1, "", "dmesg: read kernel buffer failed: Operation not "
                                "permitted"),
                      "sudo -n": (1, "", "sudo: a password is required"),
                      "journalctl": (0, "", "No journal files were opened due to insufficient "
                                     "permissions.")})
    with pytest.raises(FactError, match="could not read the kernel log"):
        gather_kernel_log(denied)  # type: ignore[arg-type]
    allowed = Answers({"dmesg": denied.table["dmesg"], "sudo -n": (0, "[1.0] boot\n", "")})
    assert gather_kernel_log(allowed) == "[1.0] boot\n"  # type: ignore[arg-type]
