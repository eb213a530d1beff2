"""The test VM's logic against libvirt's mock driver (test:///default): fast, no qemu.

test:///default keeps one state per process, shared by every connection: each test makes
names of its own and removes what it made.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from dbc_accept import gpuids
from dbc_accept.target import CommandResult
from dbc_accept.vm import reaper
from dbc_accept.vm.domain_xml import build_domain_xml, hostdev_addresses, parse_run_tag
from dbc_accept.vm.lifecycle import TestVm, VmError
from dbc_accept.vm.safety import VmRefused
from dbc_accept.vm.spec import NS, VmSpec, domain_name, new_run_id, volume_name
from dbc_accept.vm.storage import StorageError, create_overlay, delete_overlay

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")

URI = "test:///default"
POOL = "/default-pool"
GPU = "0000:41:00.0"
GPU_AUDIO = "0000:41:00.1"


class SysfsTarget:
    """A host whose GPU functions are bound to the given drivers."""

    name = "fake"

    def __init__(self, drivers: dict[str, str]) -> None:
        self.drivers = drivers

    def read_link(self, path: str) -> str:
        bdf = path.split("/")[-2]
        if bdf not in self.drivers:
            raise FileNotFoundError(path)
        return f"../../../bus/pci/drivers/{self.drivers[bdf]}"

    def list_dir(self, path: str) -> list[str]:
        return ["driver"]

    def read_text(self, path: str) -> str:
        raise FileNotFoundError(path)

    def run(self, argv: Any, timeout: float = 30.0) -> CommandResult:
        return CommandResult(tuple(argv), 127, "", "")


VFIO_HOST = SysfsTarget({GPU: "vfio-pci", GPU_AUDIO: "vfio-pci"})


@pytest.fixture()
def conn() -> Iterator[Any]:
    c = libvirt.open(URI)
    yield c
    c.close()


@pytest.fixture()
def template(conn: Any) -> Iterator[str]:
    """A qcow2 template volume in the mock driver's default-pool."""
    pool = conn.storagePoolLookupByName("default-pool")
    name = f"dbcvmtest-{secrets.token_hex(4)}.qcow2"
    vol = pool.createXML(
        f"<volume><name>{name}</name><capacity unit='G'>2</capacity>"
        "<target><format type='qcow2'/></target></volume>", 0)
    yield f"{POOL}/{name}"
    vol.delete(0)


def _spec(image: str, **kw: Any) -> VmSpec:
    base: dict[str, Any] = {"uri": URI, "image": image, "gpus": (GPU, GPU_AUDIO),
                            "memory_mib": 512, "vcpus": 2}
    return VmSpec(**{**base, **kw})


def _decoy_xml(name: str, hostdev: str | None = GPU, tag: str | None = None) -> str:
    root = ET.Element("domain", type="test")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "memory").text = "65536"
    ET.SubElement(ET.SubElement(root, "os"), "type").text = "hvm"
    if tag:
        ET.SubElement(ET.SubElement(root, "metadata"), f"{{{NS}}}run", id=tag)
    devices = ET.SubElement(root, "devices")
    if hostdev:
        dom, bus, rest = hostdev.split(":")
        slot, fn = rest.split(".")
        src = ET.SubElement(ET.SubElement(devices, "hostdev", mode="subsystem", type="pci",
                                          managed="yes"), "source")
        ET.SubElement(src, "address", domain=f"0x{dom}", bus=f"0x{bus}", slot=f"0x{slot}",
                      function=f"0x{fn}")
    return ET.tostring(root, encoding="unicode")


@pytest.fixture()
def decoy(conn: Any) -> Iterator[Any]:
    """A renter's VM holding the GPU, defined but not running."""
    dom = conn.defineXML(_decoy_xml(f"dbcvmtest-renter-{secrets.token_hex(3)}"))
    yield dom
    if dom.isActive():
        dom.destroy()
    dom.undefine()


def _names(conn: Any) -> set[str]:
    return {d.name() for d in conn.listAllDomains(0)}


def _volumes(conn: Any) -> set[str]:
    pool = conn.storagePoolLookupByName("default-pool")
    pool.refresh(0)
    return set(pool.listVolumes())


# --- domain XML --------------------------------------------------------------------------

def test_domain_xml_kvm_has_everything_a_rental_vm_has() -> None:
    spec = _spec("/data/ubuntu.qcow2", run_id="r1", console_log="/tmp/c.log", uefi=True)
    root = ET.fromstring(build_domain_xml(spec, "dbc-accept-r1", "/data/o.qcow2"))
    assert root.get("type") == "kvm" and root.findtext("name") == "dbc-accept-r1"
    assert root.find("cpu").get("mode") == "host-passthrough"  # type: ignore[union-attr]
    assert root.find("features/kvm/hidden").get("state") == "on"  # type: ignore[union-attr]
    vendor = root.find("features/hyperv/vendor_id")
    assert vendor is not None and vendor.get("state") == "on" and len(vendor.get("value", "")) == 12
    assert root.findtext("memory") == "512" and root.find("memory").get("unit") == "MiB"  # type: ignore[union-attr]
    assert root.findtext("vcpu") == "2"
    assert root.find("os").get("firmware") == "efi"  # type: ignore[union-attr]
    disk = root.find("devices/disk")
    assert disk is not None and disk.find("target").get("bus") == "virtio"  # type: ignore[union-attr]
    assert disk.find("source").get("file") == "/data/o.qcow2"  # type: ignore[union-attr]
    nic = root.find("devices/interface")
    assert nic is not None and nic.find("source").get("network") == "default"  # type: ignore[union-attr]
    assert nic.find("model").get("type") == "virtio"  # type: ignore[union-attr]
    agent = root.find("devices/channel/target")
    assert agent is not None and agent.get("name") == "org.qemu.guest_agent.0"
    serial = root.find("devices/serial")
    assert serial is not None and serial.get("type") == "file"
    assert serial.find("source").get("path") == "/tmp/c.log"  # type: ignore[union-attr]
    hostdevs = root.findall("devices/hostdev")
    assert [(h.get("mode"), h.get("type"), h.get("managed")) for h in hostdevs] == [
        ("subsystem", "pci", "yes")] * 2
    assert hostdev_addresses(ET.tostring(root, encoding="unicode")) == [GPU, GPU_AUDIO]
    tag = parse_run_tag(ET.tostring(root, encoding="unicode"))
    assert tag is not None and tag.run_id == "r1" and tag.overlay == "/data/o.qcow2"
    assert tag.created.endswith("Z")


def test_domain_xml_tcg_and_direct_kernel_boot() -> None:
    spec = _spec("/i.qcow2", run_id="r2", gpus=(), virt_type="qemu", kernel="/boot/vmlinuz",
                 initrd="/boot/initrd.img", cmdline="root=/dev/vda rw console=ttyS0")
    root = ET.fromstring(build_domain_xml(spec, "dbc-accept-r2", "/o.qcow2"))
    assert root.get("type") == "qemu"
    assert root.find("cpu") is None and root.find("features/kvm") is None
    assert root.findtext("os/kernel") == "/boot/vmlinuz"
    assert root.findtext("os/initrd") == "/boot/initrd.img"
    assert root.findtext("os/cmdline") == "root=/dev/vda rw console=ttyS0"
    assert root.find("os/boot") is None and root.find("os").get("firmware") is None  # type: ignore[union-attr]
    assert root.findall("devices/hostdev") == []


def test_domain_xml_is_a_tree_not_a_template() -> None:
    # a value with markup characters stays a value
    spec = _spec("/i.qcow2", run_id="r3", gpus=(), cmdline="a='<b>' & c")
    root = ET.fromstring(build_domain_xml(spec, "dbc-accept-r3", "/o&<>.qcow2"))
    assert root.findtext("os/cmdline") is None  # no kernel, so no cmdline
    assert root.find("devices/disk/source").get("file") == "/o&<>.qcow2"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="run id"):
        build_domain_xml(_spec("/i"), "x", "/o")


# --- create and teardown -----------------------------------------------------------------

def test_create_then_teardown_leaves_nothing(conn: Any, template: str) -> None:
    before_doms, before_vols = _names(conn), _volumes(conn)
    vm = TestVm(_spec(template), target=VFIO_HOST)
    vm.create()
    assert vm.is_alive()
    assert vm.name in _names(conn) and volume_name(vm.run_id) in _volumes(conn)
    xml = vm.domain_xml()
    assert parse_run_tag(xml) is not None and hostdev_addresses(xml) == [GPU, GPU_AUDIO]
    vol = conn.storageVolLookupByPath(vm.overlay.path)  # type: ignore[union-attr]
    assert ET.fromstring(vol.XMLDesc(0)).findtext("backingStore/path") == template
    assert vm.wait_address(timeout=5, poll=0.1).count(".") == 3
    assert vm.teardown(graceful_timeout=0.2) == []
    assert vm.teardown() == []  # idempotent
    assert _names(conn) == before_doms and _volumes(conn) == before_vols
    assert not vm.is_alive() and vm.domain_xml() == ""


def test_teardown_of_a_vm_destroyed_under_us(conn: Any, template: str) -> None:
    vm = TestVm(_spec(template), target=VFIO_HOST)
    vm.create()
    dom = conn.lookupByName(vm.name)
    dom.destroy()
    dom.undefine()
    assert vm.teardown() == []
    assert volume_name(vm.run_id) not in _volumes(conn)


def test_teardown_before_create_touches_nothing(conn: Any) -> None:
    before = _names(conn)
    vm = TestVm(_spec(f"{POOL}/none.qcow2"), target=VFIO_HOST)
    assert vm.teardown() == [] and _names(conn) == before


def test_teardown_leaves_a_domain_that_took_our_name(conn: Any, template: str) -> None:
    vm = TestVm(_spec(template), target=VFIO_HOST)
    vm.create()
    dom = conn.lookupByName(vm.name)
    dom.destroy()
    dom.undefine()
    impostor = conn.defineXML(_decoy_xml(vm.name, hostdev=None))
    try:
        problems = vm.teardown()
        assert problems and "carries no dbc-accept tag" in problems[0]
        assert conn.lookupByName(vm.name).UUIDString() == impostor.UUIDString()
    finally:
        impostor.undefine()
    assert vm.teardown() == []  # retried: the domain is gone now, the overlay too
    assert volume_name(vm.run_id) not in _volumes(conn)


def test_teardown_leaves_a_copy_of_our_domain_defined_by_someone_else(
        conn: Any, template: str) -> None:
    vm = TestVm(_spec(template, gpus=()), target=VFIO_HOST)
    vm.create()
    dom = conn.lookupByName(vm.name)
    xml = dom.XMLDesc(0)
    dom.destroy()
    dom.undefine()
    root = ET.fromstring(xml)
    root.remove(root.find("uuid"))  # type: ignore[arg-type]
    copy = conn.defineXML(ET.tostring(root, encoding="unicode"))  # same name, same tag
    try:
        problems = vm.teardown()
        assert problems and "defined again by someone else" in problems[0]
        assert conn.lookupByName(vm.name).UUIDString() == copy.UUIDString()
    finally:
        copy.undefine()
    assert vm.teardown() == []


def test_gpu_held_by_a_defined_domain_is_refused_by_name(conn: Any, template: str,
                                                         decoy: Any) -> None:
    before_xml, before_doms, before_vols = decoy.XMLDesc(0), _names(conn), _volumes(conn)
    vm = TestVm(_spec(template), target=VFIO_HOST)
    with pytest.raises(VmRefused, match=f"{GPU} is attached to domain {decoy.name()} "
                                        r"\(defined, not running\)") as info:
        vm.create()
    assert info.value.check == "vm.gpu_busy"
    decoy.create()  # the same when it runs
    with pytest.raises(VmRefused, match=rf"{decoy.name()} \(running\)"):
        TestVm(_spec(template), target=VFIO_HOST).create()
    decoy.destroy()
    assert decoy.XMLDesc(0) == before_xml
    assert _names(conn) == before_doms and _volumes(conn) == before_vols


def test_gpu_not_on_vfio_is_refused(conn: Any, template: str) -> None:
    host = SysfsTarget({GPU: "nvidia", GPU_AUDIO: "vfio-pci"})
    with pytest.raises(VmRefused, match=f"{GPU} is bound to nvidia, not vfio-pci") as info:
        TestVm(_spec(template), target=host).create()
    assert info.value.check == "gpu.vfio_bound"
    with pytest.raises(VmRefused, match="needs --vm-virt-type kvm"):
        TestVm(_spec(template, virt_type="qemu"), target=VFIO_HOST).create()


class VendorTarget(SysfsTarget):
    """VFIO_HOST whose functions read as made by ``vendor``."""

    def __init__(self, vendor: str) -> None:
        super().__init__(dict(VFIO_HOST.drivers))
        self.vendor = vendor

    def read_text(self, path: str) -> str:
        if path.endswith("/vendor"):
            return f"0x{self.vendor}\n"
        raise FileNotFoundError(path)


@pytest.fixture()
def stand_in_ids() -> Iterator[None]:
    gpuids.set_gpu_ids(("8086:10d3",))
    yield
    gpuids.reset()


@pytest.mark.usefixtures("stand_in_ids")
def test_qemu_passes_through_a_stand_in_of_gpu_ids(conn: Any, template: str) -> None:
    before_doms, before_vols = _names(conn), _volumes(conn)
    vm = TestVm(_spec(template, virt_type="qemu"), target=VendorTarget("8086"))
    vm.create()
    xml = vm.domain_xml()
    assert ET.fromstring(xml).get("type") == "qemu"
    assert hostdev_addresses(xml) == [GPU, GPU_AUDIO]
    assert vm.teardown(graceful_timeout=0.2) == []
    assert _names(conn) == before_doms and _volumes(conn) == before_vols


@pytest.mark.usefixtures("stand_in_ids")
def test_qemu_still_refuses_nvidia_functions(conn: Any, template: str) -> None:
    before = _names(conn)
    with pytest.raises(VmRefused, match=f"needs --vm-virt-type kvm here .NVIDIA functions "
                                        f"{GPU}, {GPU_AUDIO}") as info:
        TestVm(_spec(template, virt_type="qemu"), target=VendorTarget("10de")).create()
    assert info.value.check == "vm.virt_type"
    gpuids.set_gpu_ids(("10de:2204",))  # an NVIDIA id named by --gpu-ids is no stand-in
    with pytest.raises(VmRefused, match=r"needs --vm-virt-type kvm here .a GPU here: function "
                                        r"with a --gpu-ids id .10de:2204"):
        TestVm(_spec(template, virt_type="qemu"), target=VFIO_HOST).create()
    assert _names(conn) == before


def test_name_collision_never_overwrites(conn: Any, template: str) -> None:
    run_id = new_run_id()
    other = conn.defineXML(_decoy_xml(domain_name(run_id), hostdev=None))
    xml = other.XMLDesc(0)
    try:
        with pytest.raises(VmRefused, match="already exists; nothing was overwritten"):
            TestVm(_spec(template, run_id=run_id), target=VFIO_HOST).create()
        assert other.XMLDesc(0) == xml
    finally:
        other.undefine()


def test_existing_overlay_name_is_not_ours(conn: Any, template: str) -> None:
    run_id = new_run_id()
    pool = conn.storagePoolLookupByName("default-pool")
    theirs = pool.createXML(f"<volume><name>{volume_name(run_id)}</name><capacity>1</capacity>"
                            "</volume>", 0)
    try:
        with pytest.raises(StorageError, match="already exists"):
            TestVm(_spec(template, run_id=run_id), target=VFIO_HOST).create()
        assert volume_name(run_id) in _volumes(conn)
    finally:
        theirs.delete(0)


def test_failed_create_undoes_the_overlay(conn: Any, template: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    before_doms, before_vols = _names(conn), _volumes(conn)
    monkeypatch.setattr("dbc_accept.vm.lifecycle.build_domain_xml",
                        lambda *a: "<domain type='test'><name>x</name></domain>")
    with pytest.raises(VmError, match="could not create the test VM") as info:
        TestVm(_spec(template), target=VFIO_HOST).create()
    assert isinstance(info.value.__cause__, libvirt.libvirtError)
    assert _names(conn) == before_doms and _volumes(conn) == before_vols


def test_refusals_for_template_and_network(conn: Any, template: str) -> None:
    with pytest.raises(StorageError, match=r"template .*none.qcow2 not found"):
        TestVm(_spec(f"{POOL}/none.qcow2"), target=VFIO_HOST).create()
    with pytest.raises(VmRefused, match="network 'nonet' does not exist"):
        TestVm(_spec(template, network="nonet"), target=VFIO_HOST).create()


def test_agent_absent_means_false(conn: Any, template: str) -> None:
    vm = TestVm(_spec(template), target=VFIO_HOST)
    vm.create()
    try:
        assert vm.agent_exec(["true"]) is None
        assert vm.agent_set_key("dbc", "ssh-ed25519 AAAA test") is False
        with pytest.raises(ValueError):
            vm.agent_set_key("dbc; rm", "ssh-ed25519 AAAA")
        assert "not logged" in vm.console_tail()
    finally:
        assert vm.teardown() == []


def test_boot_timeout_message_has_the_console(conn: Any, template: str, tmp_path: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "console.log"
    log.write_text("SeaBIOS\r\nBooting from Hard Disk...\nNo bootable device.\x1b[0m\n")
    from dbc_accept.target import LocalTarget

    vm = TestVm(_spec(template, gpus=(), console_log=str(log)), target=LocalTarget())
    vm.create()
    try:
        monkeypatch.setattr(vm, "_address", lambda _dom: None)
        with pytest.raises(VmError, match=r"no address .* within 0.2 s") as info:
            vm.wait_address(timeout=0.2, poll=0.05)
        assert "No bootable device." in str(info.value) and "\x1b" not in str(info.value)
        conn.lookupByName(vm.name).destroy()
        with pytest.raises(VmError, match="stopped while booting"):
            vm.wait_address(timeout=5)
    finally:
        assert vm.teardown() == []


# --- the reaper --------------------------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_reaper_removes_only_tagged_leftovers(conn: Any, template: str) -> None:
    left = TestVm(_spec(template, run_id=new_run_id(pid=_dead_pid())), target=VFIO_HOST)
    left.create()  # a run that died without teardown
    live = TestVm(_spec(template, gpus=()), target=VFIO_HOST)
    live.create()  # a run of this very process: still going
    untagged = conn.defineXML(_decoy_xml(f"dbc-accept-{secrets.token_hex(3)}", hostdev=None))
    wrong_name = conn.defineXML(_decoy_xml(f"dbcvmtest-{secrets.token_hex(3)}", hostdev=None,
                                           tag="someone"))
    domain_test = conn.defineXML(_decoy_xml("domain_test", hostdev=None))
    keep = {d.name(): d.XMLDesc(0) for d in (untagged, wrong_name, domain_test)}
    try:
        removed = reaper.sweep(URI)
        assert any(left.name in r for r in removed)
        assert any(volume_name(left.run_id) in r for r in removed)
        assert not any(live.name in r for r in removed)
        names = _names(conn)
        assert left.name not in names and live.name in names
        for name, xml in keep.items():
            assert conn.lookupByName(name).XMLDesc(0) == xml
        assert volume_name(live.run_id) in _volumes(conn)
        assert reaper.sweep(URI) == []  # nothing more to do
        assert any(live.name in r for r in reaper.sweep(URI, force=True))
        assert live.teardown() == []  # the domain went already: teardown still succeeds
    finally:
        for dom in (untagged, wrong_name, domain_test):
            dom.undefine()
        live.teardown()
        left.teardown()


def test_reaper_leaves_runs_of_other_hosts_unless_forced(conn: Any) -> None:
    name = domain_name(new_run_id(pid=_dead_pid()))
    root = ET.fromstring(_decoy_xml(name, hostdev=None, tag=name[len("dbc-accept-"):]))
    root.find(f"metadata/{{{NS}}}run").set("host", "controller-elsewhere")  # type: ignore[union-attr]
    dom = conn.defineXML(ET.tostring(root, encoding="unicode"))
    notes: list[str] = []
    try:
        assert not any(name in r for r in reaper.sweep(URI, log=notes.append))
        assert any("controller-elsewhere" in n for n in notes)
        assert any(name in r for r in reaper.sweep(URI, force=True))
    finally:
        if name in _names(conn):
            dom.undefine()


def test_run_liveness() -> None:
    assert reaper.run_is_live(new_run_id())
    assert not reaper.run_is_live(new_run_id(pid=_dead_pid()))
    assert not reaper.run_is_live("custom-id")
    # this process, but the run was made before it started: a reused pid
    assert not reaper.run_is_live(new_run_id(now=0.0))


def test_ctrl_c_during_teardown_waits_for_it(conn: Any, template: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    vm = TestVm(_spec(template), target=VFIO_HOST)
    vm.create()
    remove = vm._remove_domain

    def interrupted(timeout: float) -> list[str]:
        os.kill(os.getpid(), signal.SIGINT)  # the owner presses Ctrl-C mid-teardown
        return remove(timeout)

    monkeypatch.setattr(vm, "_remove_domain", interrupted)
    with pytest.raises(KeyboardInterrupt):
        vm.teardown(graceful_timeout=0)
    assert vm.name not in _names(conn)  # finished first, then the interrupt came
    assert volume_name(vm.run_id) not in _volumes(conn)


def test_libvirtd_gone_at_teardown_is_reported_then_retried(conn: Any, template: str) -> None:
    vm = TestVm(_spec(template), target=VFIO_HOST)
    vm.create()
    good = vm.spec
    vm._close()
    vm.spec = replace(good, uri="qemu+tcp://127.0.0.1:1/system")  # nothing listens there
    vm.reconnect_s = 1.5
    with pytest.raises(VmError, match="does not answer"):
        vm.is_alive()  # unreachable is not "gone"
    t = time.monotonic()
    problems = vm.teardown()
    assert 1.5 <= time.monotonic() - t < 10  # it kept trying for the window, then gave up
    assert len(problems) == 1 and "could not reach libvirt" in problems[0]
    assert "within 1.5 s" in problems[0] and "dbc-accept cleanup" in problems[0]
    vm.spec = good
    assert vm.teardown() == []
    assert vm.name not in _names(conn)


def test_overlay_retries_once_when_the_pool_went_away(conn: Any, template: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    class PoolGone(libvirt.libvirtError):  # type: ignore[misc,name-defined]
        def get_error_code(self) -> int:
            return int(libvirt.VIR_ERR_NO_STORAGE_POOL)

    real = libvirt.virStoragePool.createXML
    calls: list[int] = []

    def flaky(self: Any, xml: str, flags: int = 0) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise PoolGone("storage pool is gone")
        return real(self, xml, flags)

    monkeypatch.setattr(libvirt.virStoragePool, "createXML", flaky)
    overlay = create_overlay(conn, template, new_run_id())
    assert len(calls) == 2 and overlay.name in _volumes(conn)
    assert delete_overlay(conn, overlay) is None
    calls.clear()
    monkeypatch.setattr(libvirt.virStoragePool, "createXML",
                        lambda *_a: (_ for _ in ()).throw(PoolGone("gone again")))
    with pytest.raises(libvirt.libvirtError):
        create_overlay(conn, template, new_run_id())


def test_a_gpu_not_back_on_vfio_is_a_teardown_problem(conn: Any, template: str) -> None:
    host = SysfsTarget({GPU: "vfio-pci", GPU_AUDIO: "vfio-pci"})
    vm = TestVm(_spec(template), target=host)
    vm.create()
    host.drivers[GPU] = "nouveau"  # the host took the GPU back when the VM let it go
    problems = vm.teardown(graceful_timeout=0)
    assert problems == [f"GPU function {GPU} is bound to nouveau after the test VM, not "
                        "vfio-pci"]
    assert vm.gpu_problems == problems
    assert vm.name not in _names(conn) and volume_name(vm.run_id) not in _volumes(conn)


def test_agent_addresses_are_taken_from_our_nic_only() -> None:
    class AgentOnly:
        def XMLDesc(self, _flags: int) -> str:
            return ("<domain><devices><interface type='network'>"
                    "<mac address='52:54:00:AA:BB:CC'/></interface></devices></domain>")

        def interfaceAddresses(self, source: int, _flags: int) -> dict[str, Any]:
            if source != libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT:
                raise libvirt.libvirtError("no lease yet")
            v4 = libvirt.VIR_IP_ADDR_TYPE_IPV4
            return {
                "lo": {"hwaddr": "00:00:00:00:00:00", "addrs": [{"type": v4, "addr": "127.0.0.1"}]},
                "docker0": {"hwaddr": "02:42:ac:11:00:01",
                            "addrs": [{"type": v4, "addr": "172.17.0.1"}]},
                "enp1s0": {"hwaddr": "52:54:00:aa:bb:cc",
                           "addrs": [{"type": 1, "addr": "fe80::1"},
                                     {"type": v4, "addr": "192.168.122.50"}]},
            }

    vm = TestVm(_spec("/i.qcow2", gpus=()))
    assert vm._address(AgentOnly()) == "192.168.122.50"


def test_reaper_says_when_a_gpu_is_not_back_on_vfio(conn: Any, template: str) -> None:
    left = TestVm(_spec(template, run_id=new_run_id(pid=_dead_pid())), target=VFIO_HOST)
    left.create()
    host = SysfsTarget({GPU: "nvidia", GPU_AUDIO: "vfio-pci"})
    lines = reaper.sweep(URI, target=host)
    assert any(left.name in line for line in lines)
    assert f"GPU function {GPU} is bound to nvidia after removing {left.name}, not vfio-pci" \
        in lines
    assert not any(GPU_AUDIO in line for line in lines)


def test_reaper_gives_back_the_dhcp_leases_of_what_it_removes(
        conn: Any, template: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dbc_accept.guest import leases

    left = TestVm(_spec(template, gpus=(), run_id=new_run_id(pid=_dead_pid())),
                  target=VFIO_HOST)
    left.create()
    macs = leases.interface_macs(left.domain_xml(), "default")
    assert macs
    calls: list[tuple[str, list[str], bool]] = []

    def release(c: Any, network: str, m: list[str]) -> list[str]:
        gone = left.name not in _names(c)  # released after the domain was removed
        calls.append((network, m, gone))
        return [f"lease 192.168.122.9 ({m[0]}) on {network}"]

    monkeypatch.setattr(leases, "release_leases", release)
    lines = reaper.sweep(URI)
    assert calls == [("default", macs, True)]
    assert f"released lease 192.168.122.9 ({macs[0]}) on default" in lines
    # the mock driver has no leases at all: a failure to release is logged, not raised
    monkeypatch.undo()
    left2 = TestVm(_spec(template, gpus=(), run_id=new_run_id(pid=_dead_pid())),
                   target=VFIO_HOST)
    left2.create()
    notes: list[str] = []
    lines = reaper.sweep(URI, log=notes.append)
    assert any(left2.name in line for line in lines)
    assert any("could not release the DHCP lease" in n for n in notes), notes


def _rpc_eof() -> Any:
    """The error a connection to a libvirtd that was restarted raises."""
    exc = libvirt.libvirtError("End of file while reading data: Input/output error")
    exc.err = (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_RPC,
               "End of file while reading data: Input/output error", 2, None, None, None, 0, 0)
    return exc


class StaleConn:
    """A connection whose libvirtd went away: it looks alive until a call fails."""

    def __init__(self) -> None:
        self.alive = True
        self.closed = False

    def isAlive(self) -> bool:
        return self.alive

    def close(self) -> None:
        self.closed = True

    def __getattr__(self, name: str) -> Any:
        def call(*_a: Any) -> Any:
            self.alive = False  # as libvirt's client closes its socket on EOF
            raise _rpc_eof()

        return call


def test_a_connection_broken_by_a_libvirtd_restart_is_opened_again(conn: Any,
                                                                   template: str) -> None:
    vm = TestVm(_spec(template), target=VFIO_HOST)
    vm.create()
    for ask in (vm.is_alive, vm.domain_xml):
        stale = StaleConn()
        vm._conn = stale
        assert ask()  # True, and the domain XML: the same domain, on a new connection
        assert stale.closed and vm._conn is not stale
    stale = StaleConn()
    vm._conn = stale
    assert vm.teardown(graceful_timeout=0) == []
    assert stale.closed
    assert vm.name not in _names(conn)
    assert volume_name(vm.run_id) not in _volumes(conn)


def test_teardown_finishes_when_libvirtd_is_back_within_the_window(conn: Any,
                                                                   template: str) -> None:
    vm = TestVm(_spec(template), target=VFIO_HOST, reconnect_s=20)
    vm.create()
    good = vm.spec
    vm._close()
    vm.spec = replace(good, uri="qemu+tcp://127.0.0.1:1/system")  # libvirtd is down
    back = threading.Timer(1.5, lambda: setattr(vm, "spec", good))  # ... and comes back
    back.start()
    t = time.monotonic()
    try:
        assert vm.teardown(graceful_timeout=0) == []
    finally:
        back.cancel()
    assert 1.5 <= time.monotonic() - t < 15
    assert vm.name not in _names(conn)
    assert volume_name(vm.run_id) not in _volumes(conn)
