"""The test VM's libvirt domain XML, built as a tree, and reading our tag back from XML.

The shape follows what a DBC node gives a renter (check_env's domain): host-passthrough
CPU, KVM hidden and a Hyper-V vendor id (consumer NVIDIA drivers refuse to start in a
visible VM), virtio disk and NIC, the qemu guest agent channel, and each GPU function as a
managed PCI hostdev. The ``<metadata>`` element is what tells this tool's domains apart.
"""

from __future__ import annotations

import os
import socket
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from dbc_accept.vm.spec import NS, NS_PREFIX, VmSpec, normalize_bdf

HV_VENDOR_ID = "1234567890ab"  # what check_env sets; any 12 characters do
ET.register_namespace(NS_PREFIX, NS)


@dataclass(frozen=True)
class RunTag:
    """What the ``<dbca:run>`` element of a domain says."""

    run_id: str
    created: str = ""
    pid: int = 0
    host: str = ""
    overlay: str = ""
    image: str = ""


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _pci_address(parent: ET.Element, bdf: str) -> None:
    dom, bus, rest = normalize_bdf(bdf).split(":")
    slot, fn = rest.split(".")
    _sub(parent, "address", domain=f"0x{dom}", bus=f"0x{bus}", slot=f"0x{slot}",
         function=f"0x{fn}")


def _metadata(root: ET.Element, spec: VmSpec, run_id: str, overlay_path: str) -> None:
    meta = _sub(root, "metadata")
    _sub(meta, f"{{{NS}}}run", id=run_id,
         created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
         pid=str(os.getpid()), host=socket.gethostname(),
         overlay=overlay_path, image=spec.image)


def _os(root: ET.Element, spec: VmSpec) -> None:
    os_el = _sub(root, "os", **({"firmware": "efi"} if spec.uefi else {}))
    _sub(os_el, "type", "hvm", arch="x86_64", machine="q35")
    if spec.kernel:
        _sub(os_el, "kernel", spec.kernel)
        if spec.initrd:
            _sub(os_el, "initrd", spec.initrd)
        if spec.cmdline:
            _sub(os_el, "cmdline", spec.cmdline)
    else:
        _sub(os_el, "boot", dev="hd")


def _features_and_cpu(root: ET.Element, spec: VmSpec) -> None:
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if spec.virt_type != "kvm":
        return  # TCG: no host CPU to pass through, no KVM signature to hide
    hyperv = _sub(features, "hyperv")  # no mode=: libvirt before 8.0 (Ubuntu 20.04) lacks it
    _sub(hyperv, "vendor_id", state="on", value=HV_VENDOR_ID)
    kvm = _sub(features, "kvm")
    _sub(kvm, "hidden", state="on")
    cpu = _sub(root, "cpu", mode="host-passthrough", check="none")
    _sub(cpu, "topology", sockets="1", dies="1", cores=str(spec.vcpus), threads="1")


def _disk_and_nic(devices: ET.Element, spec: VmSpec, overlay_path: str) -> None:
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="qcow2", discard="unmap")
    _sub(disk, "source", file=overlay_path)
    _sub(disk, "target", dev="vda", bus="virtio")
    nic = _sub(devices, "interface", type="network")
    _sub(nic, "source", network=spec.network)
    _sub(nic, "model", type="virtio")


def _console_and_agent(devices: ET.Element, spec: VmSpec) -> None:
    if spec.console_log:
        serial = _sub(devices, "serial", type="file")
        _sub(serial, "source", path=spec.console_log, append="off")
    else:
        serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    # libvirt picks the socket path (under its own state folder): nothing to collide with
    channel = _sub(devices, "channel", type="unix")
    _sub(channel, "source", mode="bind")
    _sub(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    rng = _sub(devices, "rng", model="virtio")  # entropy: sshd starts without waiting
    _sub(rng, "backend", "/dev/urandom", model="random")


def build_domain_xml(spec: VmSpec, name: str, overlay_path: str) -> str:
    """The domain XML of the test VM named ``name`` on the overlay ``overlay_path``."""
    if not spec.run_id:
        raise ValueError("the spec has no run id to tag the domain with")
    root = ET.Element("domain", type=spec.virt_type)
    _sub(root, "name", name)
    _metadata(root, spec, spec.run_id, overlay_path)
    _sub(root, "memory", str(spec.memory_mib), unit="MiB")
    _sub(root, "currentMemory", str(spec.memory_mib), unit="MiB")
    _sub(root, "vcpu", str(spec.vcpus), placement="static")
    _os(root, spec)
    _features_and_cpu(root, spec)
    _sub(root, "clock", offset="utc")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")
    devices = _sub(root, "devices")
    _disk_and_nic(devices, spec, overlay_path)
    _console_and_agent(devices, spec)
    for bdf in spec.gpus:
        hostdev = _sub(devices, "hostdev", mode="subsystem", type="pci", managed="yes")
        _pci_address(_sub(hostdev, "source"), bdf)
    return ET.tostring(root, encoding="unicode")


# --- reading XML back --------------------------------------------------------------------

def parse_run_tag(xml: str) -> RunTag | None:
    """Our tag from a ``<dbca:run>`` element (as dom.metadata() returns it) or a domain XML."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    el = root if root.tag in (f"{{{NS}}}run", "run") else root.find(f"metadata/{{{NS}}}run")
    if el is None or not el.get("id"):
        return None
    try:
        pid = int(el.get("pid", "0"))
    except ValueError:
        pid = 0
    return RunTag(run_id=el.get("id", ""), created=el.get("created", ""), pid=pid,
                  host=el.get("host", ""), overlay=el.get("overlay", ""),
                  image=el.get("image", ""))


def hostdev_addresses(xml: str) -> list[str]:
    """The host PCI addresses of a domain's ``<hostdev type='pci'>`` devices."""
    root = ET.fromstring(xml)
    found = []
    for hd in root.iterfind("devices/hostdev[@type='pci']"):
        addr = hd.find("source/address")
        if addr is None:
            continue
        parts = [addr.get(k, "0") for k in ("domain", "bus", "slot", "function")]
        try:
            dom, bus, slot, fn = (int(p, 0) for p in parts)
        except ValueError:
            continue
        found.append(f"{dom:04x}:{bus:02x}:{slot:02x}.{fn:x}")
    return found


def disk_sources(xml: str) -> list[str]:
    """The file paths of a domain's disks."""
    root = ET.fromstring(xml)
    return [s.get("file", "") for s in root.iterfind("devices/disk/source") if s.get("file")]


def pool_volumes(xml: str) -> list[tuple[str, str]]:
    """(pool, volume) of a domain's disks given through a storage pool (``type='volume'``)."""
    root = ET.fromstring(xml)
    return [(s.get("pool", ""), s.get("volume", "")) for s in root.iterfind("devices/disk/source")
            if s.get("pool") and s.get("volume")]


def nic_macs(xml: str) -> list[str]:
    """The MAC addresses of a domain's network interfaces."""
    root = ET.fromstring(xml)
    return [m.get("address", "") for m in root.iterfind("devices/interface/mac")]


def nic_networks(xml: str) -> list[str]:
    """The libvirt networks a domain's network interfaces are attached to."""
    root = ET.fromstring(xml)
    return [s.get("network", "") for s in root.iterfind("devices/interface/source")
            if s.get("network")]
