"""The snapshot harness itself: ids without the node, outcomes, mutations that must hit."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbc_accept.facts.kernel import DMESG_ARGV
from selftests.snapshot_harness import copy_snapshot


def test_ids_outcomes_and_messages(tmp_path: Path) -> None:
    snap = copy_snapshot("amd-2004-1gpu", tmp_path)
    snap.write("/sys/module/kvm/parameters/ignore_msrs", "N\n")
    snap.replace("/proc/cmdline", " kvm.ignore_msrs=1", "")
    snap.drop_command(DMESG_ARGV)
    results = snap.run("test_virtualization.py", "test_framebuffer.py")
    assert results["test_virtualization.py::test_cpu_virtualization_flags"] == ("passed", "")
    outcome, message = results["test_virtualization.py::test_kvm_ignore_msrs"]
    assert outcome == "warned" and message.startswith("WARN [cpu.ignore_msrs]")
    assert results.failed == {"test_framebuffer.py::test_no_bar_reserve_errors"}
    assert "could not read the kernel log (dmesg)" in results.message(
        "test_framebuffer.py::test_no_bar_reserve_errors")
    assert "test_framebuffer.py::test_no_framebuffer_on_gpu[0000:c1:00.0]" in results


def test_skips_are_reported_with_their_reason(tmp_path: Path) -> None:
    snap = copy_snapshot("amd-2004-1gpu", tmp_path)
    for bdf in ("0000:c1:00.0", "0000:c1:00.1"):
        snap.delete(f"/sys/bus/pci/devices/{bdf}")
    results = snap.run("test_framebuffer.py")
    assert results.skipped == {"test_framebuffer.py::test_no_framebuffer_on_gpu[none]"}
    assert "no NVIDIA GPU" in results.message(
        "test_framebuffer.py::test_no_framebuffer_on_gpu[none]")


def test_mutations_that_miss_fail_loudly(tmp_path: Path) -> None:
    snap = copy_snapshot("intel-2204-4gpu", tmp_path)
    with pytest.raises(AssertionError, match="not in"):
        snap.replace("/proc/cmdline", "no such text", "x")
    with pytest.raises(AssertionError, match="is not in"):
        snap.delete("/etc/no-such-file")
    snap.link("/sys/bus/pci/devices/0000:17:00.1/driver", "../../../../bus/pci/drivers/x")
    assert snap.path("/sys/devices/pci0000:16/0000:16:00.0/0000:17:00.1/driver").is_symlink()
