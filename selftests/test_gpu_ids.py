"""--gpu-ids: a stand-in device counts as the GPU, and everything else runs on it unchanged.

The node in miniature has no NVIDIA GPU: a two-function slot (an e1000e at function 0, an
ICH9 audio function at function 1, one IOMMU group) stands in for a GPU's VGA and audio
functions. These tests make that stand-in out of the Intel snapshot's first GPU and check
that group viability, binding, persistence, the choice of hostdevs, the domain XML and the
teardown check treat it as they treat a GPU.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbc_accept import gpuids
from dbc_accept.facts.pci import (
    gather_pci_devices,
    gpu_iommu_groups,
    nvidia_functions,
    nvidia_gpus,
)
from dbc_accept.snapshot import SnapshotTarget
from dbc_accept.vm.domain_xml import build_domain_xml, hostdev_addresses
from dbc_accept.vm.safety import gpus_returned
from dbc_accept.vm.spec import VmSpec, choose_gpus
from selftests.snapshot_harness import Snapshot, copy_snapshot

STAND_IN = "8086:10d3"  # e1000e: the "GPU" function
SIBLING = "8086:293e"  # ICH9 HD audio: its audio function
NIC, AUDIO = "0000:17:00.0", "0000:17:00.1"
DEV = "/sys/bus/pci/devices"
GPU_FILE = ("test_gpu_vfio.py",)


@pytest.fixture(autouse=True)
def _default_rule(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(gpuids.ENV, raising=False)
    gpuids.reset()
    yield
    gpuids.reset()


def stand_in(tmp_path: Path) -> Snapshot:
    """The Intel snapshot with its first GPU replaced by the e1000e + audio stand-in."""
    snap = copy_snapshot("intel-2204-4gpu", tmp_path)
    for bdf, (vendor, device), cls in ((NIC, STAND_IN.split(":"), "0x020000"),
                                       (AUDIO, SIBLING.split(":"), "0x040300")):
        base = f"{DEV}/{bdf}"
        snap.write(f"{base}/vendor", f"0x{vendor}\n").write(f"{base}/device", f"0x{device}\n")
        snap.write(f"{base}/class", f"{cls}\n")
    ids = "vfio-pci.ids=10de:2204,10de:1aef"
    snap.replace("/proc/cmdline", ids, f"{ids},{STAND_IN},{SIBLING}")
    snap.replace("/etc/default/grub", ids, f"{ids},{STAND_IN},{SIBLING}")
    return snap


def test_parse_forms_and_errors() -> None:
    assert gpuids.parse_gpu_ids("8086:10D3, 0x8086:293e,8086:10d3") == (STAND_IN, SIBLING)
    assert gpuids.parse_gpu_ids("") is None
    assert gpuids.parse_gpu_ids("nvidia") is None
    for bad in ("8086", "8086:10d3:1", "zzzz:0001", "8086:10d3,"):
        with pytest.raises(ValueError, match="VENDOR:DEVICE"):
            gpuids.parse_gpu_ids(bad)


def test_default_rule_is_nvidia_display_and_card_functions(tmp_path: Path) -> None:
    functions = gather_pci_devices(SnapshotTarget(stand_in(tmp_path).root))
    assert [g.bdf for g in nvidia_gpus(functions)] == [
        "0000:3b:00.0", "0000:86:00.0", "0000:af:00.0"]
    assert NIC not in {f.bdf for f in nvidia_functions(functions)}
    assert "gpu ids" not in gpuids.describe()


def test_stand_in_is_the_only_gpu_with_its_sibling(tmp_path: Path) -> None:
    functions = gather_pci_devices(SnapshotTarget(stand_in(tmp_path).root))
    gpuids.set_gpu_ids(gpuids.parse_gpu_ids(STAND_IN))
    assert [g.bdf for g in nvidia_gpus(functions)] == [NIC]
    assert [f.bdf for f in nvidia_functions(functions)] == [NIC, AUDIO]
    assert {g: [f.bdf for f in m] for g, m in gpu_iommu_groups(functions).items()} == {
        "21": [NIC, AUDIO]}


def test_environment_variable_sets_the_rule(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv(gpuids.ENV, STAND_IN)
    functions = gather_pci_devices(SnapshotTarget(stand_in(tmp_path).root))
    assert [g.bdf for g in nvidia_gpus(functions)] == [NIC]
    monkeypatch.setenv(gpuids.ENV, "nonsense")
    with pytest.raises(ValueError, match=gpuids.ENV):
        gpuids.gpu_ids()


def test_host_checks_pass_on_a_bound_stand_in(tmp_path: Path) -> None:
    results = stand_in(tmp_path).run(*GPU_FILE, extra_args=["--gpu-ids", STAND_IN])
    assert results.not_passed == set(), results.summary()
    assert set(results) == {
        "test_gpu_vfio.py::test_nvidia_gpu_present",
        f"test_gpu_vfio.py::test_function_on_vfio[{NIC}]",
        f"test_gpu_vfio.py::test_function_on_vfio[{AUDIO}]",
        f"test_gpu_vfio.py::test_vfio_binding_persisted[{NIC}]",
        f"test_gpu_vfio.py::test_vfio_binding_persisted[{AUDIO}]",
        "test_gpu_vfio.py::test_iommu_group_isolated[group21]"}


def test_host_checks_fail_on_an_unbound_sibling(tmp_path: Path) -> None:
    snap = stand_in(tmp_path)
    snap.link(f"/sys/devices/pci0000:16/0000:16:00.0/{AUDIO}/driver",
              "../../../../bus/pci/drivers/snd_hda_intel")
    snap.replace("/proc/cmdline", f",{SIBLING}", "")
    snap.replace("/etc/default/grub", f",{SIBLING}", "")
    results = snap.run(*GPU_FILE, extra_args=["--gpu-ids", STAND_IN])
    assert results.failed == {f"test_gpu_vfio.py::test_function_on_vfio[{AUDIO}]",
                              "test_gpu_vfio.py::test_iommu_group_isolated[group21]"}
    assert results.warned == {f"test_gpu_vfio.py::test_vfio_binding_persisted[{AUDIO}]"}
    assert "snd_hda_intel" in results.message(f"test_gpu_vfio.py::test_function_on_vfio[{AUDIO}]")


def test_bad_option_is_one_usage_line(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="ended with"):
        stand_in(tmp_path).run(*GPU_FILE, extra_args=["--gpu-ids", "e1000e"])


def test_hostdevs_xml_and_teardown_check_on_the_stand_in(tmp_path: Path) -> None:
    snap = stand_in(tmp_path)
    target = SnapshotTarget(snap.root)
    functions = gather_pci_devices(target)
    gpuids.set_gpu_ids((STAND_IN,))
    chosen = choose_gpus(functions, "all")
    assert chosen == [NIC, AUDIO]
    assert choose_gpus(functions, NIC) == [NIC, AUDIO]
    with pytest.raises(ValueError, match="is not a GPU"):
        choose_gpus(functions, AUDIO)
    spec = VmSpec(uri="qemu:///system", image="/data/ubuntu.qcow2", gpus=tuple(chosen),
                  memory_mib=1024, vcpus=1, virt_type="qemu", run_id="r1")
    xml = build_domain_xml(spec, "dbc-accept-r1", "/tmp/o.qcow2")
    assert hostdev_addresses(xml) == [NIC, AUDIO]
    assert all(h.get("managed") == "yes"
               for h in ET.fromstring(xml).iterfind("devices/hostdev"))
    assert gpus_returned(target, chosen, "teardown") == []
    snap.link(f"/sys/devices/pci0000:16/0000:16:00.0/{NIC}/driver",
              "../../../../bus/pci/drivers/e1000e")
    assert gpus_returned(target, chosen, "teardown") == [
        (f"GPU function {NIC} is bound to e1000e after teardown, not vfio-pci", True)]
