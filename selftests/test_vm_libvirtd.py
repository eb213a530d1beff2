"""The test VM against the real libvirtd and qemu of this machine (TCG; no GPU needed).

Two decoy domains stand for a renter's VMs for the whole module: one running, one only
defined with a (fake) GPU hostdev. The last test checks that every run left them exactly
as they were: same XML, same state, same disk bytes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbc_accept.vm import reaper
from dbc_accept.vm.domain_xml import build_domain_xml
from dbc_accept.vm.errors import StorageError, VmRefused
from dbc_accept.vm.lifecycle import TestVm
from dbc_accept.vm.spec import VmSpec, domain_name, new_run_id, volume_name
from dbc_accept.vm.storage import create_overlay, delete_overlay, transient_pool_name
from selftests.prereq import unavailable

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")

URI = "qemu+tcp://localhost:16509/system"
FAKE_GPU = "0000:41:00.0"
pytestmark = pytest.mark.slow


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _qemu_img(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    if shutil.which("qemu-img") is None:
        unavailable("qemu-img is not installed (apt-get install qemu-utils)")
    try:
        c = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        unavailable(f"no libvirtd at {URI}: {exc.get_error_message()}")
    yield c
    c.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dbcvm")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def network(conn: Any) -> Iterator[str]:
    """A NAT network with DHCP of this module's own (name, bridge and subnet unused)."""
    used = {ET.fromstring(n.XMLDesc(0)).find("ip").get("address", "")  # type: ignore[union-attr]
            for n in conn.listAllNetworks(0) if ET.fromstring(n.XMLDesc(0)).find("ip")
            is not None}
    tag = secrets.token_hex(3)
    third = next(n for n in range(160, 250) if f"10.251.{n}.1" not in used)
    xml = (f"<network><name>dbcvmtest-{tag}</name><bridge name='dbcvt{tag}'/>"
           f"<forward mode='nat'/><ip address='10.251.{third}.1' netmask='255.255.255.0'>"
           f"<dhcp><range start='10.251.{third}.10' end='10.251.{third}.99'/></dhcp></ip>"
           "</network>")
    net = conn.networkCreateXML(xml)
    yield net.name()
    net.destroy()


def _decoy_xml(name: str, disk: Path, hostdev: bool) -> str:
    root = ET.Element("domain", type="qemu")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "memory", unit="MiB").text = "64"
    ET.SubElement(ET.SubElement(root, "os"), "type", arch="x86_64", machine="q35").text = "hvm"
    devices = ET.SubElement(root, "devices")
    d = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(d, "driver", name="qemu", type="qcow2")
    ET.SubElement(d, "source", file=str(disk))
    ET.SubElement(d, "target", dev="vda", bus="virtio")
    if hostdev:
        src = ET.SubElement(ET.SubElement(devices, "hostdev", mode="subsystem", type="pci",
                                          managed="yes"), "source")
        ET.SubElement(src, "address", domain="0x0000", bus="0x41", slot="0x00",
                      function="0x0")
    return ET.tostring(root, encoding="unicode")


@pytest.fixture(scope="module")
def decoys(conn: Any, workdir: Path) -> Iterator[dict[str, Any]]:
    """A renter's running VM and a renter's defined VM holding a (fake) GPU."""
    tag = secrets.token_hex(3)
    found: dict[str, Any] = {}
    for kind, hostdev in (("run", False), ("def", True)):
        disk = workdir / f"renter-{kind}.qcow2"
        _qemu_img("create", "-q", "-f", "qcow2", str(disk), "64M")
        dom = conn.defineXML(_decoy_xml(f"dbcvmtest-renter-{kind}-{tag}", disk, hostdev))
        if kind == "run":
            dom.create()
        found[kind] = {"dom": dom, "disk": disk}
    time.sleep(0.5)
    for item in found.values():
        item["xml"] = item["dom"].XMLDesc(0)
        item["active"] = item["dom"].isActive()
        item["sha"] = _sha256(item["disk"])
    yield found
    for item in found.values():
        if item["dom"].isActive():
            item["dom"].destroy()
        item["dom"].undefine()


def _spec(image: Path, network: str, workdir: Path, **kw: Any) -> VmSpec:
    base: dict[str, Any] = {"uri": URI, "image": str(image), "gpus": (), "memory_mib": 128,
                            "vcpus": 1, "virt_type": "qemu", "network": network,
                            "console_log": str(workdir / f"console-{secrets.token_hex(3)}.log")}
    return VmSpec(**{**base, **kw})


@pytest.fixture(scope="module")
def templates(workdir: Path) -> dict[str, Path]:
    folder = workdir / "images"
    folder.mkdir()
    out = {}
    for name, args in (("1g", ["-f", "qcow2", "t1g.qcow2", "1G"]),
                       ("20g", ["-f", "qcow2", "t20g.qcow2", "20G"]),
                       ("raw", ["-f", "raw", "traw.img", "1G"])):
        _qemu_img("create", "-q", *args[:2], str(folder / args[2]), args[3])
        out[name] = folder / args[2]
    return out


def _our_leftovers(conn: Any, run_ids: list[str], folder: Path) -> list[str]:
    names = {d.name() for d in conn.listAllDomains(0)}
    left = [domain_name(r) for r in run_ids if domain_name(r) in names]
    left += [str(p) for p in folder.glob("dbc-accept-*")]
    return left


def test_overlay_cost_does_not_depend_on_template_size(
        conn: Any, templates: dict[str, Path], decoys: Any,
        record_property: Any) -> None:
    before = {k: _sha256(p) for k, p in templates.items()}
    times: dict[str, float] = {}
    for key, image in templates.items():
        runs = []
        for _ in range(3):
            rid = new_run_id()
            start = time.monotonic()
            overlay = create_overlay(conn, str(image), rid)
            runs.append(time.monotonic() - start)
            chain = json.loads(_qemu_img("info", "-U", "--backing-chain", "--output=json",
                                         overlay.path))
            assert [c["format"] for c in chain] == ["qcow2", "qcow2" if key != "raw" else "raw"]
            assert chain[0]["filename"] == overlay.path
            assert chain[0]["backing-filename"] == str(image)
            assert chain[0]["virtual-size"] == chain[1]["virtual-size"]
            assert Path(overlay.path).name == volume_name(rid)
            assert delete_overlay(conn, overlay) is None
            assert not Path(overlay.path).exists()
        times[key] = statistics.median(runs)
    record_property("overlay_seconds", times)
    sys.stderr.write(f"overlay creation, median of 3: {times}\n")
    assert max(times.values()) < 2.0
    assert abs(times["20g"] - times["1g"]) < 0.5
    assert {k: _sha256(p) for k, p in templates.items()} == before
    ours = {transient_pool_name(str(p.parent)) for p in templates.values()}
    assert not [p for p in conn.listAllStoragePools(0) if p.name() in ours]


@pytest.mark.parametrize("uefi", [False, True], ids=["bios", "uefi"])
def test_create_and_teardown_a_real_domain(conn: Any, templates: dict[str, Path],
                                           network: str, workdir: Path, decoys: Any,
                                           uefi: bool, record_property: Any) -> None:
    if uefi and not list(Path("/usr/share/qemu/firmware").glob("*.json")):
        unavailable("no UEFI firmware for qemu here (apt-get install ovmf)")
    vm = TestVm(_spec(templates["1g"], network, workdir, uefi=uefi))
    sha = _sha256(templates["1g"])
    vm.create()
    try:
        assert vm.is_alive()
        xml = ET.fromstring(vm.domain_xml())
        assert xml.get("type") == "qemu"
        assert xml.find("devices/disk/source").get("file") == vm.overlay.path  # type: ignore[union-attr]
        nvram = xml.findtext("os/nvram")
        assert bool(nvram) == uefi
        assert Path(vm.overlay.path).exists()  # type: ignore[union-attr]
    finally:
        problems = vm.teardown(graceful_timeout=1)
    assert problems == []
    assert vm.teardown() == []
    with pytest.raises(libvirt.libvirtError) as info:
        conn.lookupByName(vm.name)
    assert info.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
    assert _our_leftovers(conn, [vm.run_id], templates["1g"].parent) == []
    if nvram:
        assert not Path(nvram).exists()
    assert _sha256(templates["1g"]) == sha
    record_property("timings", vm.timings)
    sys.stderr.write(f"lifecycle ({'uefi' if uefi else 'bios'}): "
                     + ", ".join(f"{k} {v:.2f} s" for k, v in vm.timings.items()) + "\n")


def test_kvm_shape_is_accepted_by_libvirt(conn: Any, templates: dict[str, Path],
                                          network: str, workdir: Path) -> None:
    spec = _spec(templates["1g"], network, workdir, virt_type="kvm", gpus=(FAKE_GPU,),
                 uefi=True, run_id=new_run_id())
    name = domain_name(spec.run_id)
    dom = conn.defineXML(build_domain_xml(spec, name, str(workdir / "absent.qcow2")))
    try:
        back = ET.fromstring(dom.XMLDesc(0))
        assert back.find("cpu").get("mode") == "host-passthrough"  # type: ignore[union-attr]
        assert back.find("features/kvm/hidden") is not None
        assert back.find("features/hyperv/vendor_id") is not None
        assert back.find("devices/hostdev/source/address") is not None
    finally:
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


def test_missing_template_is_named(conn: Any, workdir: Path, network: str) -> None:
    for image in (workdir / "no-such-folder" / "t.qcow2", workdir / "no-such.qcow2"):
        vm = TestVm(_spec(image, network, workdir))
        with pytest.raises(StorageError, match=f"template {image} not found") as info:
            vm.create()
        assert info.value.check == "images.template"
        assert _our_leftovers(conn, [vm.run_id], workdir) == []
    assert transient_pool_name(str(workdir)) not in {p.name() for p in
                                                     conn.listAllStoragePools(0)}


def test_gpu_of_a_defined_renter_vm_is_refused(conn: Any, templates: dict[str, Path],
                                               network: str, workdir: Path,
                                               decoys: Any) -> None:
    vm = TestVm(_spec(templates["1g"], network, workdir, virt_type="kvm", gpus=(FAKE_GPU,)))
    name = decoys["def"]["dom"].name()
    with pytest.raises(VmRefused, match=f"{FAKE_GPU} is attached to domain {name}"):
        vm.create()
    assert _our_leftovers(conn, [vm.run_id], templates["1g"].parent) == []


def test_reaper_removes_a_dead_runs_vm_and_nothing_else(
        conn: Any, templates: dict[str, Path], network: str, workdir: Path,
        decoys: Any) -> None:
    dead = TestVm(_spec(templates["20g"], network, workdir, run_id=_dead_run_id()))
    dead.create()  # then "crashes": no teardown
    overlay = Path(dead.overlay.path)  # type: ignore[union-attr]
    removed = reaper.sweep(URI)
    assert any(dead.name in line for line in removed)
    assert any(str(overlay) in line for line in removed)
    assert not any("renter" in line for line in removed)
    assert not overlay.exists()
    assert _our_leftovers(conn, [dead.run_id], templates["20g"].parent) == []
    pool = transient_pool_name(str(templates["20g"].parent))
    assert pool not in {p.name() for p in conn.listAllStoragePools(0)}
    # other runs of the tool on this machine may be live now: only ours is asserted on
    assert not any(dead.run_id in line for line in reaper.sweep(URI))


def _dead_run_id() -> str:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return new_run_id(pid=int(proc.stdout))


def test_overlays_are_found_after_their_pool_is_forgotten(
        conn: Any, templates: dict[str, Path], network: str, workdir: Path,
        decoys: Any) -> None:
    # a libvirtd restart forgets transient pools; the overlay files stay
    vm = TestVm(_spec(templates["1g"], network, workdir))
    vm.create()
    conn.storagePoolLookupByName(vm.overlay.pool).destroy()  # type: ignore[union-attr]
    assert vm.teardown(graceful_timeout=0) == []
    assert _our_leftovers(conn, [vm.run_id], templates["1g"].parent) == []
    orphan = create_overlay(conn, str(templates["1g"]), _dead_run_id())
    conn.storagePoolLookupByName(orphan.pool).destroy()
    assert not any(orphan.path in line for line in reaper.sweep(URI))  # no pool lists it
    assert Path(orphan.path).exists()
    removed = reaper.sweep(URI, folders=[str(templates["1g"].parent)])
    assert any(orphan.path in line for line in removed)
    assert _our_leftovers(conn, [], templates["1g"].parent) == []
    pool = transient_pool_name(str(templates["1g"].parent))
    assert pool not in {p.name() for p in conn.listAllStoragePools(0)}


def test_zz_decoys_are_untouched(decoys: dict[str, Any]) -> None:
    for item in decoys.values():
        assert item["dom"].XMLDesc(0) == item["xml"]
        assert item["dom"].isActive() == item["active"]
        assert _sha256(item["disk"]) == item["sha"]
    assert decoys["run"]["active"]
