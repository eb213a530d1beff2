"""The test VM against libvirt's mock driver (test:///default): the fixtures and helpers of
test_vm_mock.py and test_vm_mock_recovery.py.

test:///default keeps one state per process, shared by every connection: each test makes
names of its own and removes what it made.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from dbc_accept.target import CommandResult
from dbc_accept.vm.spec import NS, VmSpec

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


def vm_spec(image: str, **kw: Any) -> VmSpec:
    base: dict[str, Any] = {"uri": URI, "image": image, "gpus": (GPU, GPU_AUDIO),
                            "memory_mib": 512, "vcpus": 2}
    return VmSpec(**{**base, **kw})


def decoy_xml(name: str, hostdev: str | None = GPU, tag: str | None = None) -> str:
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
    dom = conn.defineXML(decoy_xml(f"dbcvmtest-renter-{secrets.token_hex(3)}"))
    yield dom
    if dom.isActive():
        dom.destroy()
    dom.undefine()


def domain_names(conn: Any) -> set[str]:
    return {d.name() for d in conn.listAllDomains(0)}


def volume_names(conn: Any) -> set[str]:
    pool = conn.storagePoolLookupByName("default-pool")
    pool.refresh(0)
    return set(pool.listVolumes())

