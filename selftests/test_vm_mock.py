"""The test VM's logic against libvirt's mock driver (test:///default): fast, no qemu.

test:///default keeps one state per process, shared by every connection: each test makes
names of its own and removes what it made.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from dbc_accept import gpuids
from dbc_accept.vm.domain_xml import build_domain_xml, hostdev_addresses, parse_run_tag
from dbc_accept.vm.lifecycle import TestVm, VmError
from dbc_accept.vm.safety import VmRefused
from dbc_accept.vm.spec import domain_name, new_run_id, volume_name
from dbc_accept.vm.storage import StorageError
from selftests.vm_mock_support import (  # noqa: F401 - conn, template, decoy: fixtures
    GPU,
    GPU_AUDIO,
    POOL,
    VFIO_HOST,
    SysfsTarget,
    conn,
    decoy,
    decoy_xml,
    domain_names,
    template,
    vm_spec,
    volume_names,
)

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")


# --- domain XML --------------------------------------------------------------------------

def test_domain_xml_kvm_has_everything_a_rental_vm_has() -> None:
    spec = vm_spec("/data/ubuntu.qcow2", run_id="r1", console_log="/tmp/c.log", uefi=True)
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
    spec = vm_spec("/i.qcow2", run_id="r2", gpus=(), virt_type="qemu", kernel="/boot/vmlinuz",
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
    spec = vm_spec("/i.qcow2", run_id="r3", gpus=(), cmdline="a='<b>' & c")
    root = ET.fromstring(build_domain_xml(spec, "dbc-accept-r3", "/o&<>.qcow2"))
    assert root.findtext("os/cmdline") is None  # no kernel, so no cmdline
    assert root.find("devices/disk/source").get("file") == "/o&<>.qcow2"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="run id"):
        build_domain_xml(vm_spec("/i"), "x", "/o")


# --- create and teardown -----------------------------------------------------------------

def test_create_then_teardown_leaves_nothing(conn: Any, template: str) -> None:
    before_doms, before_vols = domain_names(conn), volume_names(conn)
    vm = TestVm(vm_spec(template), target=VFIO_HOST)
    vm.create()
    assert vm.is_alive()
    assert vm.name in domain_names(conn) and volume_name(vm.run_id) in volume_names(conn)
    xml = vm.domain_xml()
    assert parse_run_tag(xml) is not None and hostdev_addresses(xml) == [GPU, GPU_AUDIO]
    vol = conn.storageVolLookupByPath(vm.overlay.path)  # type: ignore[union-attr]
    assert ET.fromstring(vol.XMLDesc(0)).findtext("backingStore/path") == template
    assert vm.wait_address(timeout=5, poll=0.1).count(".") == 3
    assert vm.teardown(graceful_timeout=0.2) == []
    assert vm.teardown() == []  # idempotent
    assert domain_names(conn) == before_doms and volume_names(conn) == before_vols
    assert not vm.is_alive() and vm.domain_xml() == ""


def test_teardown_of_a_vm_destroyed_under_us(conn: Any, template: str) -> None:
    vm = TestVm(vm_spec(template), target=VFIO_HOST)
    vm.create()
    dom = conn.lookupByName(vm.name)
    dom.destroy()
    dom.undefine()
    assert vm.teardown() == []
    assert volume_name(vm.run_id) not in volume_names(conn)


def test_teardown_before_create_touches_nothing(conn: Any) -> None:
    before = domain_names(conn)
    vm = TestVm(vm_spec(f"{POOL}/none.qcow2"), target=VFIO_HOST)
    assert vm.teardown() == [] and domain_names(conn) == before


def test_teardown_leaves_a_domain_that_took_our_name(conn: Any, template: str) -> None:
    vm = TestVm(vm_spec(template), target=VFIO_HOST)
    vm.create()
    dom = conn.lookupByName(vm.name)
    dom.destroy()
    dom.undefine()
    impostor = conn.defineXML(decoy_xml(vm.name, hostdev=None))
    try:
        problems = vm.teardown()
        assert problems and "carries no dbc-accept tag" in problems[0]
        assert conn.lookupByName(vm.name).UUIDString() == impostor.UUIDString()
    finally:
        impostor.undefine()
    assert vm.teardown() == []  # retried: the domain is gone now, the overlay too
    assert volume_name(vm.run_id) not in volume_names(conn)


def test_teardown_leaves_a_copy_of_our_domain_defined_by_someone_else(
        conn: Any, template: str) -> None:
    vm = TestVm(vm_spec(template, gpus=()), target=VFIO_HOST)
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
    before_xml, before_doms, before_vols = decoy.XMLDesc(0), domain_names(conn), volume_names(conn)
    vm = TestVm(vm_spec(template), target=VFIO_HOST)
    with pytest.raises(VmRefused, match=f"{GPU} is attached to domain {decoy.name()} "
                                        r"\(defined, not running\)") as info:
        vm.create()
    assert info.value.check == "vm.gpu_busy"
    decoy.create()  # the same when it runs
    with pytest.raises(VmRefused, match=rf"{decoy.name()} \(running\)"):
        TestVm(vm_spec(template), target=VFIO_HOST).create()
    decoy.destroy()
    assert decoy.XMLDesc(0) == before_xml
    assert domain_names(conn) == before_doms and volume_names(conn) == before_vols


def test_gpu_not_on_vfio_is_refused(conn: Any, template: str) -> None:
    host = SysfsTarget({GPU: "nvidia", GPU_AUDIO: "vfio-pci"})
    with pytest.raises(VmRefused, match=f"{GPU} is bound to nvidia, not vfio-pci") as info:
        TestVm(vm_spec(template), target=host).create()
    assert info.value.check == "gpu.vfio_bound"
    with pytest.raises(VmRefused, match="needs --vm-virt-type kvm"):
        TestVm(vm_spec(template, virt_type="qemu"), target=VFIO_HOST).create()


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
    before_doms, before_vols = domain_names(conn), volume_names(conn)
    vm = TestVm(vm_spec(template, virt_type="qemu"), target=VendorTarget("8086"))
    vm.create()
    xml = vm.domain_xml()
    assert ET.fromstring(xml).get("type") == "qemu"
    assert hostdev_addresses(xml) == [GPU, GPU_AUDIO]
    assert vm.teardown(graceful_timeout=0.2) == []
    assert domain_names(conn) == before_doms and volume_names(conn) == before_vols


@pytest.mark.usefixtures("stand_in_ids")
def test_qemu_still_refuses_nvidia_functions(conn: Any, template: str) -> None:
    before = domain_names(conn)
    with pytest.raises(VmRefused, match=f"needs --vm-virt-type kvm here .NVIDIA functions "
                                        f"{GPU}, {GPU_AUDIO}") as info:
        TestVm(vm_spec(template, virt_type="qemu"), target=VendorTarget("10de")).create()
    assert info.value.check == "vm.virt_type"
    gpuids.set_gpu_ids(("10de:2204",))  # an NVIDIA id named by --gpu-ids is no stand-in
    with pytest.raises(VmRefused, match=r"needs --vm-virt-type kvm here .a GPU here: function "
                                        r"with a --gpu-ids id .10de:2204"):
        TestVm(vm_spec(template, virt_type="qemu"), target=VFIO_HOST).create()
    assert domain_names(conn) == before


def test_name_collision_never_overwrites(conn: Any, template: str) -> None:
    run_id = new_run_id()
    other = conn.defineXML(decoy_xml(domain_name(run_id), hostdev=None))
    xml = other.XMLDesc(0)
    try:
        with pytest.raises(VmRefused, match="already exists; nothing was overwritten"):
            TestVm(vm_spec(template, run_id=run_id), target=VFIO_HOST).create()
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
            TestVm(vm_spec(template, run_id=run_id), target=VFIO_HOST).create()
        assert volume_name(run_id) in volume_names(conn)
    finally:
        theirs.delete(0)


def test_failed_create_undoes_the_overlay(conn: Any, template: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    before_doms, before_vols = domain_names(conn), volume_names(conn)
    monkeypatch.setattr("dbc_accept.vm.lifecycle.build_domain_xml",
                        lambda *a: "<domain type='test'><name>x</name></domain>")
    with pytest.raises(VmError, match="could not create the test VM") as info:
        TestVm(vm_spec(template), target=VFIO_HOST).create()
    assert isinstance(info.value.__cause__, libvirt.libvirtError)
    assert domain_names(conn) == before_doms and volume_names(conn) == before_vols


def test_refusals_for_template_and_network(conn: Any, template: str) -> None:
    with pytest.raises(StorageError, match=r"template .*none.qcow2 not found"):
        TestVm(vm_spec(f"{POOL}/none.qcow2"), target=VFIO_HOST).create()
    with pytest.raises(VmRefused, match="network 'nonet' does not exist"):
        TestVm(vm_spec(template, network="nonet"), target=VFIO_HOST).create()


def test_agent_absent_means_false(conn: Any, template: str) -> None:
    vm = TestVm(vm_spec(template), target=VFIO_HOST)
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

    vm = TestVm(vm_spec(template, gpus=(), console_log=str(log)), target=LocalTarget())
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


