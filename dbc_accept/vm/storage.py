"""The run's system disk: a qcow2 overlay on the template, made through libvirt's storage API.

The overlay is created by libvirt (``qemu-img create -b``), so its cost does not depend on
the template's size and the template is only ever opened read-only as a backing file. The
overlay lives beside the template, in the storage pool whose folder holds it; when no
active pool covers that folder a transient one named ``dbc-accept-<hash>`` is made (a
transient pool leaves no configuration behind, and destroying it leaves files alone).

A volume cannot carry metadata, so ours are recognised by the owner record the run writes
(:mod:`dbc_accept.vm.ownership`) together with the name ``dbc-accept-<run id>.qcow2`` and
the template as its backing file, and no domain other than this tool's using it.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from dbc_accept.vm import ownership
from dbc_accept.vm.errors import StorageError
from dbc_accept.vm.libvirt_api import load_libvirt
from dbc_accept.vm.spec import PREFIX, volume_name

VOLUME_RE = re.compile(rf"^{re.escape(PREFIX)}(?P<run>[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}})\.qcow2$")
POOL_RE = re.compile(rf"^{re.escape(PREFIX)}[0-9a-f]{{12}}$")
FILE_POOL_TYPES = ("dir", "fs", "netfs")


@dataclass(frozen=True)
class Overlay:
    """One run's overlay volume and where it lives."""

    path: str
    name: str
    pool: str
    pool_created: bool  # a transient pool this run made
    backing: str
    backing_format: str
    seconds: float = 0.0


def pool_target(pool: Any) -> str:
    path = ET.fromstring(pool.XMLDesc(0)).findtext("target/path") or ""
    return os.path.normpath(path) if path else ""


def pool_type(pool: Any) -> str:
    return ET.fromstring(pool.XMLDesc(0)).get("type", "")


def pool_for_folder(conn: Any, folder: str) -> Any | None:
    """The active file-based pool whose target folder is ``folder``, if any."""
    folder = os.path.normpath(folder)
    for pool in conn.listAllStoragePools(0):
        try:
            if (pool.isActive() and pool_type(pool) in FILE_POOL_TYPES
                    and pool_target(pool) == folder):
                return pool
        except load_libvirt().libvirtError:
            continue  # a pool that vanished meanwhile
    return None


def transient_pool_name(folder: str) -> str:
    return PREFIX + hashlib.sha256(os.path.normpath(folder).encode()).hexdigest()[:12]


def _transient_pool_xml(name: str, folder: str) -> str:
    root = ET.Element("pool", type="dir")
    ET.SubElement(root, "name").text = name
    ET.SubElement(ET.SubElement(root, "target"), "path").text = folder
    return ET.tostring(root, encoding="unicode")


def find_or_make_pool(conn: Any, folder: str) -> tuple[Any, bool]:
    """(pool holding ``folder``, whether this call created it as a transient pool)."""
    libvirt = load_libvirt()
    pool = pool_for_folder(conn, folder)
    if pool is not None:
        return pool, False
    name = transient_pool_name(folder)
    try:
        return conn.storagePoolCreateXML(_transient_pool_xml(name, folder), 0), True
    except libvirt.libvirtError as exc:
        raise StorageError(f"no storage pool for {folder} and none could be made: "
                           f"{exc.get_error_message()}") from None


def _template_volume(pool: Any, image: str) -> Any:
    libvirt = load_libvirt()
    base = os.path.basename(image)
    try:
        return pool.storageVolLookupByName(base)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise
    try:
        pool.refresh(0)  # the pool may predate the template file
        return pool.storageVolLookupByName(base)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise StorageError(f"template {image} not found (check --vm-image)",
                               check="images.template") from None
        raise


def volume_facts(vol: Any) -> tuple[str, int, str]:
    """(format, capacity in bytes, backing path or "") of a volume, from its XML."""
    root = ET.fromstring(vol.XMLDesc(0))
    fmt_el = root.find("target/format")
    fmt = fmt_el.get("type", "raw") if fmt_el is not None else "raw"
    return fmt, int(root.findtext("capacity") or 0), root.findtext("backingStore/path") or ""


def overlay_xml(name: str, capacity: int, backing: str, backing_format: str) -> str:
    """Volume XML of a qcow2 overlay backed by ``backing``."""
    root = ET.Element("volume", type="file")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "capacity", unit="bytes").text = str(capacity)
    target = ET.SubElement(root, "target")
    ET.SubElement(target, "format", type="qcow2")
    ET.SubElement(target, "compat").text = "1.1"
    ET.SubElement(ET.SubElement(target, "permissions"), "mode").text = "0600"
    store = ET.SubElement(root, "backingStore")
    ET.SubElement(store, "path").text = backing
    ET.SubElement(store, "format", type=backing_format)
    return ET.tostring(root, encoding="unicode")


def _make_in(pool: Any, image: str, name: str) -> tuple[Any, Any, str]:
    """(overlay volume, template volume, template format), made in ``pool``."""
    libvirt = load_libvirt()
    template = _template_volume(pool, image)
    fmt, capacity, _ = volume_facts(template)
    if fmt not in ("qcow2", "raw"):
        raise StorageError(f"template {image} is {fmt}; use a qcow2 or raw image",
                           check="images.qcow2")
    try:
        pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise
    else:
        raise StorageError(f"volume {name} already exists in pool {pool.name()}; "
                           "nothing was overwritten", exists=True)
    return pool.createXML(overlay_xml(name, capacity, template.path(), fmt), 0), template, fmt


def create_overlay(conn: Any, image: str, run_id: str) -> Overlay:
    """Make ``dbc-accept-<run id>.qcow2`` beside the template, backed by it."""
    libvirt = load_libvirt()
    start = time.monotonic()
    image = os.path.abspath(image)
    folder = os.path.dirname(image)
    name = volume_name(run_id)
    for attempt in (1, 2):
        try:
            pool, created = find_or_make_pool(conn, folder)
        except StorageError as exc:
            raise StorageError(f"template {image} not found (check --vm-image): {exc}",
                               check="images.template") from None
        try:
            vol, template, fmt = _make_in(pool, image, name)
            break
        except libvirt.libvirtError as exc:
            # another run released the shared transient pool just now: take a fresh one
            gone = exc.get_error_code() in (libvirt.VIR_ERR_NO_STORAGE_POOL,
                                            libvirt.VIR_ERR_OPERATION_INVALID)
            if created:
                release_pool(conn, pool.name())
            if not gone or attempt == 2:
                raise
        except BaseException:
            if created:
                release_pool(conn, pool.name())
            raise
    ownership.write_record(name, run_id, vol.path(), template.path())  # else: left, listed
    return Overlay(path=vol.path(), name=name, pool=pool.name(), pool_created=created,
                   backing=template.path(), backing_format=fmt,
                   seconds=time.monotonic() - start)


def _find_volume(conn: Any, path: str, name: str) -> Any | None:
    """The volume at ``path``, also when no pool lists its folder any more."""
    libvirt = load_libvirt()
    try:
        return conn.storageVolLookupByPath(path)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise
    # a libvirtd restart forgets transient pools, not files: look again through a pool
    pool, _ = find_or_make_pool(conn, os.path.dirname(path))
    pool.refresh(0)
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise
    release_pool(conn, pool.name())
    return None


def delete_overlay(conn: Any, overlay: Overlay) -> str | None:
    """Delete the run's overlay; None when done or already gone, else the problem."""
    libvirt = load_libvirt()
    try:
        vol = _find_volume(conn, overlay.path, overlay.name)
        if vol is None:
            return None
        if vol.name() != overlay.name:  # the path holds something else now: not ours
            return f"{overlay.path} is now volume {vol.name()}; left alone"
        pool = vol.storagePoolLookupByVolume()
        vol.delete(0)
        ownership.forget(overlay.name)
        release_pool(conn, pool.name())
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_STORAGE_VOL,
                                        libvirt.VIR_ERR_NO_STORAGE_POOL):
            return f"could not delete volume {overlay.path}: {exc.get_error_message()}"
    except StorageError as exc:
        return f"could not delete volume {overlay.path}: {exc}"
    return None


def release_pool(conn: Any, name: str) -> bool:
    """Destroy our transient pool ``name`` once no ``dbc-accept-*`` volume is left in it.

    Destroying a transient dir pool forgets it; no file is touched.
    """
    libvirt = load_libvirt()
    if not POOL_RE.match(name):
        return False
    try:
        pool = conn.storagePoolLookupByName(name)
        if pool.isPersistent() or not pool.isActive():
            return False  # not one this tool makes
        pool.refresh(0)
        if any(VOLUME_RE.match(v) for v in pool.listVolumes()):
            return False  # another run's overlay still lives here
        pool.destroy()
        return True
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return False
        raise
