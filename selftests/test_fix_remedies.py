"""The structured remedies agree with the printed fix texts; --apply asks before each step.

The actions live beside the fix texts in dbc_accept/remedies.py; each names the things it
changes, and the fix text that the checks print must name them too, so that what a FAIL
tells a person and what `dbc-accept fix` does cannot drift apart.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.fix import actions as a
from dbc_accept.fix.command import apply
from dbc_accept.fix.resolve import RESOLVERS, plan
from dbc_accept.remedies import REMEDIES
from dbc_accept.snapshot import SnapshotTarget
from dbc_accept.target import LocalTarget, TestinfraTarget
from dbc_accept.verdict import Finding
from selftests.fake_node_bin import install
from selftests.snapshot_harness import copy_snapshot

WITH_ACTIONS = sorted(cid for cid, r in REMEDIES.items() if r.actions)


def test_host_checks_a_script_can_fix_have_actions() -> None:
    assert {"net.ip_forward", "net.br_netfilter", "net.bridge_nf", "libvirtd.conf",
            "libvirtd.args", "libvirtd.sockets", "libvirtd.service", "iommu.cmdline",
            "iommu.passthrough", "cpu.ignore_msrs", "gpu.vfio_bound", "gpu.vfio_persistent",
            "drivers.blacklist", "fb.iomem", "storage.pquota", "storage.fstab",
            "virt.packages", "virt.default_network"} <= set(WITH_ACTIONS)
    # What needs a person has no action but a comment: BIOS, hardware, a disk with data.
    for cid in ("cpu.virt_flags", "iommu.firmware", "gpu.present", "storage.mount",
                "storage.xfs", "storage.ftype", "storage.size", "host.memory"):
        assert not REMEDIES[cid].actions, cid


@pytest.mark.parametrize("check_id", WITH_ACTIONS)
def test_printed_fix_names_what_the_script_does(check_id: str) -> None:
    remedy = REMEDIES[check_id]
    for action in remedy.actions:
        for token in action.tokens():
            assert token in remedy.fix, f"{check_id}: {type(action).__name__} changes " \
                                        f"{token!r}, which its fix text does not name"


def test_every_action_has_a_resolver_or_is_a_person() -> None:
    kinds = {type(x) for r in REMEDIES.values() for x in r.actions}
    assert kinds - {a.Manual} <= set(RESOLVERS), kinds - set(RESOLVERS)


def finding(check: str, level: str = "fail") -> Finding:
    return Finding(check=check, level=level, observed="o", expected="e",  # type: ignore[arg-type]
                   fix=REMEDIES[check].text())


def test_person_steps_are_comments_only(tmp_path: Path) -> None:
    node = HostFacts(SnapshotTarget(str(copy_snapshot("intel-2204-4gpu", tmp_path).root)))
    result = plan([finding(c) for c in ("cpu.virt_flags", "storage.ftype", "storage.xfs",
                                        "iommu.firmware")], node)
    assert result.steps == []
    assert [n.check for n in result.notes] == ["cpu.virt_flags", "storage.ftype", "storage.xfs",
                                              "iommu.firmware"]


def test_apply_asks_before_each_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = copy_snapshot("intel-2204-4gpu", tmp_path)
    snap.write("/proc/sys/net/ipv4/ip_forward", "0\n")
    snap.replace("/proc/modules", "vhost_net 32768 0 - Live 0xffffffffc0d8e000\n", "")
    node = HostFacts(SnapshotTarget(str(snap.root)))
    result = plan([finding("net.ip_forward"), finding("virt.vhost_net", "warn"),
                   finding("virt.ovmf")], node)
    assert [s.group for s in result.steps] == ["packages", "modules", "sysctl"]
    log = tmp_path / "log"
    log.write_text("", encoding="utf-8")
    for key, value in (("DBC_FIX_ROOT", str(snap.root / "fs")), ("FAKE_LOG", str(log)),
                       ("PATH", f"{install(tmp_path / 'bin')}:{os.environ['PATH']}")):
        monkeypatch.setenv(key, value)
    asked: list[int] = []

    def answer(step: object, number: int, total: int) -> str:
        asked.append(number)
        return {1: "n", 2: "y", 3: "q"}[number]

    assert apply(result, LocalTarget(), answer) == 1  # stopped at 'q'
    assert asked == [1, 2, 3]
    assert log.read_text(encoding="utf-8") == "modprobe vhost_net\n"  # only step 2 ran
    assert snap.read("/proc/sys/net/ipv4/ip_forward") == "0\n"
    assert apply(result, LocalTarget(), None) == 0  # --yes: every step, no question
    assert snap.read("/proc/sys/net/ipv4/ip_forward") == "1\n"


def test_apply_through_testinfra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # --hosts runs each step as one remote `sh -c`: the step's text must survive the quoting.
    import testinfra

    snap = copy_snapshot("intel-2204-4gpu", tmp_path)
    snap.replace("/etc/libvirt/libvirtd.conf", 'auth_tcp = "none"', 'auth_tcp = "sasl"')
    node = HostFacts(SnapshotTarget(str(snap.root)))
    result = plan([finding("libvirtd.conf")], node)
    log = tmp_path / "log"
    log.write_text("", encoding="utf-8")
    monkeypatch.setenv("DBC_FIX_ROOT", str(snap.root / "fs"))
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("PATH", f"{install(tmp_path / 'bin')}:{os.environ['PATH']}")
    target = TestinfraTarget(testinfra.get_host("local://"), "local")
    assert apply(result, target, None) == 0
    assert 'auth_tcp = "none"' in snap.read("/etc/libvirt/libvirtd.conf").splitlines()
    assert log.read_text(encoding="utf-8") == "systemctl restart libvirtd.service\n"
