"""Remove what earlier runs of this tool left behind, and nothing else.

A domain is ours only when ``dom.metadata()`` finds our ``<dbca:run>`` element and its
name is ``dbc-accept-<that run id>``; a domain whose run is still alive (its creating
process runs on this machine) is left alone unless ``force``. An overlay volume is ours
only when its run wrote an owner record for it (:mod:`dbc_accept.vm.ownership`: a name made
by ``new_run_id``, the template as backing file) and no domain uses it, by file path or
through a pool source. Every volume named like ours that is left is listed, with why.
check_env's ``domain_test`` and every other domain or volume are never touched (the host
checks report them).
"""

from __future__ import annotations

import calendar
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from dbc_accept.target import Target
from dbc_accept.vm import ownership
from dbc_accept.vm.domain_xml import (
    RunTag,
    disk_sources,
    hostdev_addresses,
    nic_networks,
    parse_run_tag,
    pool_volumes,
)
from dbc_accept.vm.errors import StorageError
from dbc_accept.vm.libvirt_api import connect, error_code, error_message, load_libvirt, undefine
from dbc_accept.vm.safety import gpus_returned
from dbc_accept.vm.spec import NS, domain_name, run_id_origin
from dbc_accept.vm.storage import (
    POOL_RE,
    VOLUME_RE,
    find_or_make_pool,
    release_pool,
    volume_facts,
)


def _boot_time() -> float:
    with open("/proc/stat", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_started(pid: int) -> float | None:
    """When the local process ``pid`` started (epoch seconds), None when it does not run."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime, counted after the ")"
        return _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def run_is_live(run_id: str, pid: int = 0, host: str = "", created: float | None = None) -> bool:
    """True when the process that made the run still runs here (pid not reused since)."""
    origin = run_id_origin(run_id)
    if origin is not None:
        created, pid = origin
    if pid <= 0 or (host and host != socket.gethostname()):
        return False
    started = process_started(pid)
    if started is None:
        return False
    # a process that started after the run was made is a reused pid, not the run's maker
    return created is None or started <= created + 2


def _created_epoch(tag: RunTag) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(tag.created, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def _our_tag(dom: Any) -> RunTag | None:
    """The run tag of a domain when it is ours beyond doubt, else None."""
    libvirt = load_libvirt()
    try:
        xml = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS, 0)
    except libvirt.libvirtError as exc:
        if error_code(exc) in (libvirt.VIR_ERR_NO_DOMAIN_METADATA, libvirt.VIR_ERR_NO_DOMAIN):
            return None
        raise
    tag = parse_run_tag(xml)
    if tag is None or dom.name() != domain_name(tag.run_id):
        return None  # a tag copied into a domain of another name: not ours to remove
    return tag


def _remove_domain(dom: Any) -> None:
    libvirt = load_libvirt()
    try:
        if dom.isActive():
            dom.destroy()
        undefine(dom)
    except libvirt.libvirtError as exc:
        if error_code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
            raise


class _Sweep:
    def __init__(self, conn: Any, force: bool, log: Callable[[str], None]) -> None:
        self.conn = conn
        self.force = force
        self.log = log
        self.removed: list[str] = []
        self.live_runs: set[str] = set()
        self.folders: set[str] = set()  # where removed domains had their overlays
        self.target: Target | None = None  # the host whose GPU drivers are checked
        self.gpu_problems: list[str] = []
        self.released: list[str] = []  # DHCP leases of removed domains given back
        self.pool_names: set[str] = set()  # volumes used through a pool libvirt cannot open

    def domains(self) -> None:
        libvirt = load_libvirt()
        for dom in self.conn.listAllDomains(0):
            try:
                tag = _our_tag(dom)
                if tag is None:
                    continue
                if not self.force and tag.host and tag.host != socket.gethostname():
                    self.live_runs.add(tag.run_id)
                    self.log(f"left {dom.name()}: made from host {tag.host}, which may still "
                             "be using it (force removes it)")
                    continue
                if not self.force and run_is_live(tag.run_id, tag.pid, tag.host,
                                                  _created_epoch(tag)):
                    self.live_runs.add(tag.run_id)
                    self.log(f"left {dom.name()}: its run (pid {tag.pid}) is still going")
                    continue
                state = "running" if dom.isActive() else "defined"
                xml = dom.XMLDesc(0)
                gpus = hostdev_addresses(xml) if state == "running" else []
                _remove_domain(dom)
                self.check_gpus(dom.name(), gpus)
                self.release_leases(xml)
                if tag.overlay and VOLUME_RE.match(os.path.basename(tag.overlay)):
                    self.folders.add(os.path.dirname(tag.overlay))
                self.removed.append(f"removed domain {dom.name()} ({state}, run {tag.run_id}, "
                                    f"created {tag.created or 'unknown'})")
            except libvirt.libvirtError as exc:
                self.log(f"could not sweep a domain: {error_message(exc)}")

    def release_leases(self, domain_xml: str) -> None:
        """Give back the DHCP leases the removed domain held (dnsmasq keeps them an hour)."""
        from dbc_accept.vm.leases import interface_macs, release_leases  # stdlib only

        for network in sorted(set(nic_networks(domain_xml))):
            macs = interface_macs(domain_xml, network)
            try:
                self.released += release_leases(self.conn, network, macs)
            except (load_libvirt().libvirtError, OSError) as exc:  # harmless: expires in an hour
                self.log(f"could not release the DHCP lease of {', '.join(macs)} on "
                         f"{network}: {error_message(exc)}")

    def check_gpus(self, name: str, bdfs: list[str]) -> None:
        """Say so when a GPU the removed VM held is not back on vfio-pci."""
        if self.target is None:
            return
        for line, wrong_driver in gpus_returned(self.target, bdfs, f"removing {name}"):
            if wrong_driver:
                self.gpu_problems.append(line)
            else:
                self.log(line)

    def used_paths(self) -> dict[str, set[str]]:
        """{disk path: names of the domains using it}, over every remaining domain."""
        used: dict[str, set[str]] = {}
        for dom in self.conn.listAllDomains(0):
            try:
                xml = dom.XMLDesc(0)
                paths = disk_sources(xml) + self._pool_paths(pool_volumes(xml))
                for path in paths:
                    used.setdefault(os.path.normpath(path), set()).add(dom.name())
            except load_libvirt().libvirtError:
                continue
        return used

    def _pool_paths(self, refs: list[tuple[str, str]]) -> list[str]:
        """The file paths of disks given as ``<source pool= volume=>``."""
        paths = []
        for pool_name, vol_name in refs:
            try:
                pool = self.conn.storagePoolLookupByName(pool_name)
                paths.append(pool.storageVolLookupByName(vol_name).path())
            except load_libvirt().libvirtError:  # an inactive pool: its volume name counts as used
                self.pool_names.add(vol_name)
        return paths

    def cover(self, folders: set[str]) -> None:
        """Make sure a pool lists each folder (a transient pool of a dead run is gone)."""
        for folder in sorted(folders):
            try:
                find_or_make_pool(self.conn, folder)
            except StorageError as exc:
                self.log(f"could not look for overlays in {folder}: {exc}")

    def volumes(self) -> None:
        libvirt = load_libvirt()
        used = self.used_paths()
        pools = []
        for pool in self.conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            pools.append(pool)
            try:
                pool.refresh(0)
                vols = pool.listAllVolumes(0)
            except libvirt.libvirtError as exc:
                self.log(f"could not list pool {pool.name()}: {error_message(exc)}")
                continue
            for vol in vols:
                self._volume(vol, used)
        for pool in pools:
            name = pool.name()
            if POOL_RE.match(name) and release_pool(self.conn, name):
                self.removed.append(f"removed transient storage pool {name} (files untouched)")

    def _volume(self, vol: Any, used: dict[str, set[str]]) -> None:
        libvirt = load_libvirt()
        m = VOLUME_RE.match(vol.name())
        if not m:
            return
        run_id = m["run"]
        try:
            path = vol.path()
            _, _, backing = volume_facts(vol)
            users = used.get(os.path.normpath(path), set())
            why = ownership.not_ours(vol.name(), run_id, path, backing)
            if why:
                self.log(f"left {path}: not proven ours: {why}")
            elif users or vol.name() in self.pool_names:
                self.log(f"left {path}: in use by {', '.join(sorted(users)) or 'a domain'}")
            elif run_id in self.live_runs or (not self.force and run_is_live(run_id)):
                self.log(f"left {path}: its run is still going")
            else:
                vol.delete(0)
                ownership.forget(vol.name())
                self.removed.append(f"removed volume {path} (overlay of {backing})")
        except libvirt.libvirtError as exc:
            if error_code(exc) != libvirt.VIR_ERR_NO_STORAGE_VOL:
                self.log(f"could not remove volume {vol.name()}: {error_message(exc)}")


def sweep(uri: str, force: bool = False, log: Callable[[str], None] | None = None,
          folders: Iterable[str] = (), target: Target | None = None) -> list[str]:
    """Remove this tool's leftover domains and overlays at ``uri``; one line per removal.

    Overlays are looked for in every active pool, in the folders of the removed domains'
    overlays, and in ``folders`` (pass the template's folder: after a libvirtd restart
    the transient pool of a crashed run is gone, but its overlay file is not).
    With ``target`` (the libvirt host), each GPU a removed running VM held is checked to be
    back on vfio-pci; a line says so when one is not.
    """
    conn = connect(uri)
    try:
        work = _Sweep(conn, force, log or (lambda _m: None))
        work.target = target
        work.domains()
        work.cover(work.folders | {os.path.normpath(f) for f in folders})
        work.volumes()
        return work.removed + [f"released {r}" for r in work.released] + work.gpu_problems
    finally:
        conn.close()
