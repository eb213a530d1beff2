"""Passthrough inside the node in miniature: the suite's VM stage with the stand-in GPU.

In the configured node (docs/node-in-miniature.md), the suite's VM stage runs with the node's
python3, `--vm-virt-type qemu` and the first stand-in (`--gpu-ids 8086:10d3 --gpus
0000:01:00.0`): libvirt binds nothing new (both functions are on vfio-pci from boot), qemu
opens the vfio group and puts both functions into the nested guest's PCI tree. The nested
guest does not boot to a login under two levels of software emulation (measured: its kernel
sees the device about 260 s in; it had not left the initramfs after 20 minutes), so the boot
timeout is short, the proof is qemu's (the monitor's `info pci`), and the run ends in the
VM fixture's boot timeout, which tears the VM down as any failed run does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from selftests.node_support import (
    NODE_REPO,
    RENTER_STAND_IN,
    STAND_IN,
    STAND_IN_AUDIO,
    STAND_IN_IDS,
    VENV,
    Node,
    booted,
    quoted,
)

pytestmark = [pytest.mark.node, pytest.mark.slow]

RENTER_AUDIO = RENTER_STAND_IN[:-1] + "1"
FUNCTIONS = [STAND_IN, STAND_IN_AUDIO, RENTER_STAND_IN, RENTER_AUDIO]
PROBE = (Path(__file__).with_name("node_probe.py")).read_bytes()
# Long enough to look at the running VM (a probe takes a few seconds), far short of a nested
# login; every second of it is waited out once.
BOOT_TIMEOUT = 60
RUN_LIMIT = 600  # one VM stage in the node: sweep, create, the boot timeout, teardown
PID_FILE = "/root/vm-stage.pid"
PCI_IDS = ["8086:10d3", "8086:293e"]  # the stand-in's two functions (e1000e, ICH9 audio)
RENTER = "renter-vm"


@dataclass
class Stage:
    """One VM stage in the node: its output, and what the node showed during and after."""

    out: str = ""
    rc: int | None = None
    during: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)


def probe(mini: Node) -> dict[str, Any]:
    run = mini.ssh(f"python3 - {quoted(FUNCTIONS)}", timeout=300, stdin=PROBE)
    assert run.returncode == 0, run.stdout
    found: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return found


def vm_stage_argv(gpus: str) -> str:
    """The VM stage in the node, as a shell line; its pid goes to PID_FILE."""
    opts = [f"--gpu-ids={STAND_IN_IDS}", f"--gpus={gpus}", "--vm-virt-type=qemu",
            "--vm-image=/data/ubuntu.qcow2", "--vm-kernel=/data/guest-vmlinuz",
            "--vm-initrd=/data/guest-initrd.img", "--vm-memory=256", "--vm-vcpus=1",
            f"--vm-boot-timeout={BOOT_TIMEOUT}", "--no-report", "-x", "-rA", "--durations=3",
            "-p", "no:cacheprovider"]
    # the checks' path first and the spaced --vm-cmdline last: the order this pytest parses
    return (f"cd {NODE_REPO} && echo $$ > {PID_FILE} && DBC_VM_PASSWORD=unused "
            f"exec {VENV}/bin/python -m pytest tests_vm -m vm {quoted(opts)} "
            '"--vm-cmdline=$(cat /var/lib/dbc-accept/guest-cmdline)"')


def start_stage(mini: Node, gpus: str, log: Path) -> subprocess.Popen[bytes]:
    mini.ssh(f"rm -f {PID_FILE}", timeout=60)
    with log.open("wb") as fh:
        return subprocess.Popen(mini.ssh_argv(vm_stage_argv(gpus)), stdout=fh,
                                stderr=subprocess.STDOUT)


def wait_running(mini: Node, proc: subprocess.Popen[bytes], log: Path,
                 limit: float = 400) -> dict[str, Any]:
    """The probe once the test VM runs with both functions in qemu's PCI tree."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the VM stage ended before its VM ran:\n{log.read_text()}"
        seen = probe(mini)
        if any(all(f"PCI device {i}" in d["info_pci"] for i in PCI_IDS)
               for d in seen["running"].values()):
            return seen
        time.sleep(5)
    raise AssertionError(f"no running test VM within {limit:g} s:\n{log.read_text()}")


def finish(proc: subprocess.Popen[bytes], log: Path, stage: Stage) -> None:
    try:
        stage.rc = proc.wait(timeout=RUN_LIMIT)
    finally:
        if proc.poll() is None:
            proc.kill()
        stage.out = log.read_text(errors="replace")


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    # the node test_node_e2e.py booted, when it ran first; stopped at the end of this module
    with booted("configured", tmp_path_factory.mktemp("node")) as n:
        yield n


@pytest.fixture(scope="module")
def passthrough(mini: Node, tmp_path_factory: pytest.TempPathFactory) -> Stage:
    """The VM stage with the first stand-in, looked at while its VM runs and after."""
    log = tmp_path_factory.mktemp("stage") / "vm-stage.log"
    stage = Stage()
    t0 = time.monotonic()
    proc = start_stage(mini, STAND_IN, log)
    try:
        stage.during = wait_running(mini, proc, log)
        mini.timings["vm_running_s"] = time.monotonic() - t0
    finally:
        finish(proc, log, stage)
    mini.timings["vm_stage_s"] = time.monotonic() - t0
    stage.after = probe(mini)
    print(f"VM stage in the node: {mini.timings}", file=sys.stderr)
    return stage


def _only_vm(stage: Stage) -> dict[str, Any]:
    assert len(stage.during["running"]) == 1, stage.during
    vm: dict[str, Any] = next(iter(stage.during["running"].values()))
    return vm


def _hostdevs(xml: str) -> list[str]:
    found = []
    for addr in ET.fromstring(xml).iterfind("devices/hostdev/source/address"):
        found.append("{:04x}:{:02x}:{:02x}.{:x}".format(
            *(int(addr.get(k, "0"), 16) for k in ("domain", "bus", "slot", "function"))))
    return found


def left_behind(seen: dict[str, Any]) -> list[str]:
    return ([f"domain {d}" for d in seen["domains"]] + [f"volume {v}" for v in seen["volumes"]]
            + [f"file {f}" for f in seen["files"]] + [f"lease {x}" for x in seen["leases"]])


def test_domain_has_both_functions_as_hostdevs(passthrough: Stage) -> None:
    xml = _only_vm(passthrough)["xml"]
    assert _hostdevs(xml) == [STAND_IN, STAND_IN_AUDIO], xml
    assert ET.fromstring(xml).get("type") == "qemu"


def test_qemu_holds_the_vfio_group(passthrough: Stage) -> None:
    group = passthrough.during["groups"][STAND_IN]
    assert group and passthrough.during["groups"][STAND_IN_AUDIO] == group
    vm = _only_vm(passthrough)
    assert f"/dev/vfio/{group}" in vm["vfio"], f"qemu pid {vm['pid']} has open: {vm['vfio']}"
    assert "/dev/vfio/vfio" in vm["vfio"], vm["vfio"]


def test_functions_stay_on_vfio_while_it_runs(passthrough: Stage) -> None:
    assert passthrough.during["drivers"][STAND_IN] == "vfio-pci", passthrough.during
    assert passthrough.during["drivers"][STAND_IN_AUDIO] == "vfio-pci", passthrough.during


@pytest.mark.parametrize("pci_id", PCI_IDS)
def test_function_is_in_the_nested_guest_pci_tree(passthrough: Stage, pci_id: str) -> None:
    info = _only_vm(passthrough)["info_pci"]
    assert f"PCI device {pci_id}" in info, f"qemu's `info pci` of the test VM:\n{info}"


def test_boot_timeout_then_teardown_leaves_nothing(passthrough: Stage) -> None:
    assert passthrough.rc == 1, passthrough.out[-4000:]
    assert "got no address on network 'default' within" in passthrough.out, \
        passthrough.out[-4000:]
    assert not left_behind(passthrough.after), (left_behind(passthrough.after),
                                                passthrough.out[-4000:])
    for bdf in FUNCTIONS:
        assert passthrough.after["drivers"][bdf] == "vfio-pci", passthrough.after


def test_ctrl_c_during_the_nested_boot_leaves_nothing(mini: Node, passthrough: Stage,
                                                      tmp_path: Path) -> None:
    log = tmp_path / "vm-stage-int.log"
    t0 = time.monotonic()
    proc = start_stage(mini, STAND_IN, log)
    stage = Stage()
    try:
        stage.during = wait_running(mini, proc, log)
        sent = mini.ssh(f"kill -INT $(cat {PID_FILE})", timeout=60)
        assert sent.returncode == 0, sent.stdout
    finally:
        finish(proc, log, stage)
    mini.timings["ctrl_c_stage_s"] = time.monotonic() - t0
    after = probe(mini)
    assert stage.rc not in (0, None), stage.out[-4000:]
    assert "KeyboardInterrupt" in stage.out or "Interrupted" in stage.out, stage.out[-4000:]
    assert not left_behind(after), (left_behind(after), stage.out[-4000:])
    assert all(after["drivers"][bdf] == "vfio-pci" for bdf in FUNCTIONS), after


RENTER_XML = f"""<domain type='qemu'>
  <name>{RENTER}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/data/{RENTER}.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x02' slot='0x00' function='0x0'/></source>
    </hostdev>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x02' slot='0x00' function='0x1'/></source>
    </hostdev>
  </devices>
</domain>
"""


def _renter_state(mini: Node) -> tuple[str, str]:
    run = mini.ssh(f"virsh domstate {RENTER} && virsh dumpxml {RENTER}", timeout=120)
    assert run.returncode == 0, run.stdout
    state, _, xml = run.stdout.partition("\n")
    return state.strip(), xml


@pytest.fixture()
def renter(mini: Node) -> Iterator[str]:
    """A renter's domain (not the suite's), disk in /data, holding the second stand-in."""
    made = mini.ssh(f"qemu-img create -q -f qcow2 /data/{RENTER}.qcow2 64M && "
                    f"virsh define /dev/stdin", stdin=RENTER_XML.encode(), timeout=120)
    assert made.returncode == 0, made.stdout
    try:
        yield RENTER
    finally:
        mini.ssh(f"virsh destroy {RENTER}; virsh undefine {RENTER}; rm -f /data/{RENTER}.qcow2",
                 timeout=120)


def test_renter_domain_is_refused_and_untouched(mini: Node, passthrough: Stage, renter: str,
                                                tmp_path: Path) -> None:
    before = _renter_state(mini)
    assert before[0] == "shut off" and _hostdevs(before[1]) == [RENTER_STAND_IN, RENTER_AUDIO]
    log = tmp_path / "vm-stage-renter.log"
    proc = start_stage(mini, RENTER_STAND_IN, log)
    stage = Stage()
    finish(proc, log, stage)
    after = probe(mini)
    want = f"{RENTER_STAND_IN} is attached to domain {renter} (defined, not running)"
    assert stage.rc == 1 and want in stage.out, stage.out[-4000:]
    assert _renter_state(mini) == before
    assert not left_behind(after), left_behind(after)
    assert after["drivers"][RENTER_STAND_IN] == "vfio-pci", after
