"""Checks made before anything is created: never take a renter's GPU, never overwrite a name.

A GPU that another domain holds (running, or only defined and so due to start later) is
refused with the domain's name; so is a GPU function the host has not bound to vfio-pci, and
under software emulation (``--vm-virt-type qemu``) any GPU but a stand-in named by
``--gpu-ids``. The test VM's name ``dbc-accept-<run id>`` must be free.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from dbc_accept import gpuids
from dbc_accept.target import LocalTarget, Target
from dbc_accept.vm.domain_xml import hostdev_addresses
from dbc_accept.vm.errors import VmRefused
from dbc_accept.vm.libvirt_api import error_code, load_libvirt
from dbc_accept.vm.spec import VmSpec, domain_name, normalize_bdf

VFIO = "vfio-pci"
__all__ = ["VFIO", "VmRefused", "gpu_holders", "gpus_returned", "host_driver", "preflight",
           "recheck_gpus"]


def host_driver(target: Target, bdf: str) -> str | None:
    """The host driver bound to a PCI function (None when unbound)."""
    try:
        return os.path.basename(target.read_link(f"/sys/bus/pci/devices/{bdf}/driver"))
    except OSError as exc:
        if not _function_exists(target, bdf):
            raise VmRefused(f"PCI function {bdf} does not exist on {target.name}",
                            "gpu.vfio_bound") from None
        if isinstance(exc, PermissionError):
            raise VmRefused(f"cannot read the driver of {bdf}: permission denied (run as root)",
                            "gpu.vfio_bound") from None
        return None  # exists but no driver link: unbound


def gpus_returned(target: Target, bdfs: Iterable[str], after: str) -> list[tuple[str, bool]]:
    """After a VM that held ``bdfs`` is gone: one line per function not back on vfio-pci
    (``True``) or whose driver could not be read (``False``), in the order of ``bdfs``."""
    lines = []
    for bdf in bdfs:
        try:
            driver = host_driver(target, bdf)
        except VmRefused as exc:
            lines.append((f"could not check GPU function {bdf}: {exc}", False))
            continue
        if driver != VFIO:
            lines.append((f"GPU function {bdf} is bound to {driver or 'no driver'} after "
                          f"{after}, not {VFIO}", True))
    return lines


def _function_exists(target: Target, bdf: str) -> bool:
    try:
        target.list_dir(f"/sys/bus/pci/devices/{bdf}")
        return True
    except OSError:
        return False


def _domain_xmls(dom: Any) -> list[str]:
    """The live and the persistent XML: a hostdev may be only in the next boot's config."""
    libvirt = load_libvirt()
    xmls = [dom.XMLDesc(0)]
    if dom.isActive() and dom.isPersistent():
        xmls.append(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    return xmls


def gpu_holders(conn: Any, bdfs: tuple[str, ...], skip: str = "") -> dict[str, list[str]]:
    """{bdf: [domain (state), ...]} for each wanted function another domain lists."""
    libvirt = load_libvirt()
    wanted = {normalize_bdf(b) for b in bdfs}
    held: dict[str, list[str]] = {}
    for dom in conn.listAllDomains(0):
        try:
            name = dom.name()
            if name == skip:
                continue
            state = "running" if dom.isActive() else "defined, not running"
            used = {a for xml in _domain_xmls(dom) for a in hostdev_addresses(xml)}
        except libvirt.libvirtError as exc:
            if error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                continue  # went away while we looked
            raise
        for bdf in sorted(used & wanted):
            held.setdefault(bdf, []).append(f"{name} ({state})")
    return held


def _check_name_free(conn: Any, name: str) -> None:
    libvirt = load_libvirt()
    try:
        conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
            return
        raise
    raise VmRefused(f"a domain named {name} already exists; nothing was overwritten "
                    "(choose another run id, or remove it with `dbc-accept cleanup`)",
                    "vm.cleanup")


def _check_network(conn: Any, network: str) -> None:
    libvirt = load_libvirt()
    try:
        net = conn.networkLookupByName(network)
        active = bool(net.isActive())
    except libvirt.libvirtError as exc:
        if error_code(exc) != libvirt.VIR_ERR_NO_NETWORK:
            raise
        raise VmRefused(f"libvirt network {network!r} does not exist (`virsh net-list --all`)",
                        "vm.boot") from None
    if not active:
        raise VmRefused(f"libvirt network {network!r} is not active: "
                        f"`virsh net-start {network}`", "vm.boot")


def recheck_gpus(conn: Any, spec: VmSpec, ours: str = "") -> None:
    """Raise VmRefused when a domain other than ``ours`` lists one of the spec's GPUs."""
    held = gpu_holders(conn, spec.gpus, skip=ours)
    if held:
        lines = [f"{bdf} is attached to domain {', '.join(doms)}" for bdf, doms in held.items()]
        raise VmRefused("refusing to use a GPU another VM holds: " + "; ".join(lines),
                        "vm.gpu_busy")


def _check_stand_in(target: Target, bdfs: Iterable[str]) -> None:
    """Under software emulation only a stand-in of --gpu-ids is passed through, never NVIDIA.

    A stand-in (an emulated device playing the GPU, as in the node in miniature) works with
    vfio under an emulated IOMMU; a real GPU needs KVM to be of any use to the guest.
    """
    ids = gpuids.gpu_ids()
    nvidia = [bdf for bdf in bdfs if _vendor(target, bdf) == gpuids.NVIDIA]
    if ids is None or nvidia or any(i.startswith(gpuids.NVIDIA + ":") for i in ids):
        seen = f"NVIDIA functions {', '.join(nvidia)}" if nvidia else (
            f"a GPU here: {gpuids.describe()}")
        raise VmRefused(f"GPU passthrough needs --vm-virt-type kvm here ({seen}); use --gpus 0 "
                        "with qemu (only a stand-in device named by --gpu-ids, not NVIDIA, "
                        "is passed through under qemu)", "vm.virt_type")


def _vendor(target: Target, bdf: str) -> str:
    """``10de`` for an NVIDIA function; "" when the vendor cannot be read."""
    try:
        return target.read_text(f"/sys/bus/pci/devices/{bdf}/vendor").strip().lower()[-4:]
    except OSError:
        return ""


def preflight(conn: Any, spec: VmSpec, target: Target | None = None) -> None:
    """Raise VmRefused unless the VM of ``spec`` can be created without touching others."""
    _check_name_free(conn, domain_name(spec.run_id))
    target = target or LocalTarget()
    if spec.gpus and spec.virt_type != "kvm":
        _check_stand_in(target, spec.gpus)
    recheck_gpus(conn, spec)
    for bdf in spec.gpus:
        driver = host_driver(target, bdf)
        if driver != VFIO:
            raise VmRefused(f"GPU function {bdf} is bound to {driver or 'no driver'}, not "
                            f"{VFIO}: the host may be using it", "gpu.vfio_bound")
    _check_network(conn, spec.network)
