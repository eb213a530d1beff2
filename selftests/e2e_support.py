"""Support for the end-to-end selftests: the CI environment, pytest runs, leftovers, a decoy.

The tests need libvirtd on qemu+tcp://localhost:16509/system with an active `default`
network (scripts/start-libvirtd.sh) and the CI guest image (scripts/build-guest-image.sh).
Without them they skip, except under CI (the CI variable set), where they fail.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selftests import prereq

ROOT = Path(__file__).resolve().parents[1]
URI = "qemu+tcp://localhost:16509/system"
NETWORK = "default"
PASSWORD = "dbc-ci"  # the CI image's throw-away password (scripts/build-guest-image.sh)
DECOY_PREFIX = "dbcacc-e2e-decoy-"


def unavailable(reason: str) -> None:
    """Skip, or fail under CI: there the end-to-end tests must run."""
    prereq.unavailable(reason)


@dataclass(frozen=True)
class CiImage:
    image: str
    kernel: str
    initrd: str
    cmdline: str


def ci_image() -> CiImage:
    """The cached CI image (DBC_CI_* variables, or the build script's cache)."""
    env = dict(os.environ)
    if not env.get("DBC_CI_IMAGE"):
        proc = subprocess.run(["sh", str(ROOT / "scripts/build-guest-image.sh"),
                               "--cached-only"], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            unavailable("the CI guest image is not built: run scripts/build-guest-image.sh")
        for line in proc.stdout.splitlines():
            key, _, value = line.partition("=")
            env[key] = value.strip("'")
    img = CiImage(env["DBC_CI_IMAGE"], env["DBC_CI_KERNEL"], env["DBC_CI_INITRD"],
                  env.get("DBC_CI_CMDLINE", "root=/dev/vda rw console=ttyS0"))
    for path in (img.image, img.kernel, img.initrd):
        if not os.path.isfile(path):
            unavailable(f"{path} is missing: run scripts/build-guest-image.sh")
    return img


def libvirt_conn() -> Any:
    """A connection to the CI libvirtd with the network up, or skip/fail saying why."""
    try:
        import libvirt
    except ImportError:
        unavailable("libvirt-python is not installed")
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        unavailable(f"libvirtd does not answer on {URI} ({exc}): run scripts/start-libvirtd.sh")
    try:
        active = conn.networkLookupByName(NETWORK).isActive()
    except libvirt.libvirtError:
        active = False
    if not active:
        unavailable(f"libvirt network {NETWORK!r} is not active: run scripts/start-libvirtd.sh")
    return conn


def vm_options(img: CiImage, boot_timeout: float = 300, cmdline: str | None = None,
               image: str | None = None) -> list[str]:
    # One vCPU: under software emulation on a loaded 2-core machine a 2-vCPU guest kernel once
    # stopped for good early in boot (after "clocksource: Switched to clocksource hpet"), a
    # known hazard of SMP guests under TCG; one vCPU boots as fast here.
    return ["--libvirt-uri", URI, "--vm-image", image or img.image,
            "--vm-kernel", img.kernel, "--vm-initrd", img.initrd,
            "--vm-cmdline", cmdline or img.cmdline, "--vm-virt-type", "qemu", "--gpus", "0",
            "--vm-memory", "1024", "--vm-vcpus", "1", "--vm-boot-timeout", str(boot_timeout),
            "--no-report"]


@dataclass
class Run:
    """One pytest process and what it printed."""

    proc: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)
    rc: int | None = None
    seconds: float = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def out(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> Run:
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"pytest did not end within {timeout:g} s:\n{self.out}") from None
        self.seconds = time.monotonic() - self.started
        return self

    def send(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)


def start_pytest(args: list[str], tmp: Path, env: dict[str, str] | None = None) -> Run:
    """``python -m pytest ARGS`` in the project root, output to a file, password by env."""
    log = tmp / f"pytest-{time.monotonic_ns()}.log"
    full_env = {**os.environ, "DBC_VM_PASSWORD": PASSWORD, **(env or {})}
    full_env.pop("PYTEST_ADDOPTS", None)
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                                 "-rA", *args], cwd=ROOT, env=full_env, stdout=fh,
                                stderr=subprocess.STDOUT, preexec_fn=_as_from_a_shell)
    return Run(proc, log)


def _as_from_a_shell() -> None:
    """In the child: SIGINT and SIGTERM as a shell leaves them (default, unblocked), whatever
    an earlier selftest of this process left (an ignored or blocked SIGINT is inherited)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def wait_for(what: str, cond: Callable[[], bool], timeout: float, run: Run | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if run is not None and run.proc.poll() is not None:
            raise AssertionError(f"pytest ended before {what}:\n{run.out}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s"
                                 + (f":\n{run.out}" if run else ""))
        time.sleep(0.5)


def run_domains(conn: Any, pid: int) -> list[str]:
    """Names of the domains a pytest process made (run ids carry the creating pid)."""
    pattern = re.compile(rf"^dbc-accept-.*-p{pid}-[0-9a-f]+$")
    return sorted(d.name() for d in conn.listAllDomains(0) if pattern.match(d.name()))


def _domain_macs(conn: Any) -> set[str]:
    macs: set[str] = set()
    for dom in conn.listAllDomains(0):
        try:
            root = ET.fromstring(dom.XMLDesc(0))
        except Exception:  # went away meanwhile
            continue
        macs.update(m.get("address", "").lower() for m in root.iterfind("devices/interface/mac"))
    return macs


def leftovers(conn: Any, pid: int, image_dir: str, since_epoch: float) -> list[str]:
    """Everything the run of ``pid`` left: domains, volumes, overlay files, DHCP leases."""
    found = [f"domain {n}" for n in run_domains(conn, pid)]
    marker = f"-p{pid}-"
    for pool in conn.listAllStoragePools(0):
        if pool.isActive():
            pool.refresh(0)
            found += [f"volume {v.path()}" for v in pool.listAllVolumes(0) if marker in v.name()]
        if pool.name().startswith("dbc-accept-") and marker in pool.name():
            found.append(f"pool {pool.name()}")
    found += [f"file {p}" for p in Path(image_dir).glob(f"dbc-accept-*{marker}*")
              if f"file {p}" not in found]
    macs = _domain_macs(conn)
    lease_time = 3600  # libvirt's default: a lease got at T expires at T + 1 h
    for lease in conn.networkLookupByName(NETWORK).DHCPLeases():
        got = float(lease.get("expirytime", 0)) - lease_time
        if lease.get("mac", "").lower() not in macs and got >= since_epoch - 5:
            found.append(f"lease {lease.get('ipaddr')} ({lease.get('mac')})")
    return found


# --- the decoy: a renter's VM that every run must leave alone -----------------------------

@dataclass
class Decoy:
    name: str
    disk: Path
    live_xml: str = ""
    config_xml: str = ""
    disk_digest: str = ""
    disk_mtime: float = 0.0

    def snapshot(self, conn: Any) -> tuple[bool, str, str, str, float]:
        import libvirt

        dom = conn.lookupByName(self.name)
        return (bool(dom.isActive()), dom.XMLDesc(0),
                dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE),
                hashlib.sha256(self.disk.read_bytes()).hexdigest(), self.disk.stat().st_mtime)

    def assert_untouched(self, conn: Any) -> None:
        active, live, config, digest, mtime = self.snapshot(conn)
        assert active, f"the decoy {self.name} is no longer running"
        assert live == self.live_xml, f"the decoy {self.name}'s live XML changed"
        assert config == self.config_xml, f"the decoy {self.name}'s configuration changed"
        assert "<hostdev" in config, "the decoy lost its GPU hostdev"
        assert (digest, mtime) == (self.disk_digest, self.disk_mtime), "the decoy's disk changed"


FAKE_GPU = "0000:65:00.0"  # no such function here: fine in a definition, not at start


def decoy_xml(name: str, disk: Path, hostdev: bool, uuid: str = "") -> str:
    dev = ("<hostdev mode='subsystem' type='pci' managed='yes'><source>"
           "<address domain='0x0000' bus='0x65' slot='0x00' function='0x0'/></source></hostdev>"
           if hostdev else "")
    # No bootable disk: SeaBIOS finds nothing and idles, costing no CPU under TCG.
    ident = f"<uuid>{uuid}</uuid>" if uuid else ""
    return (f"<domain type='qemu'><name>{name}</name>{ident}<memory unit='MiB'>64</memory>"
            "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>"
            "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>{dev}"
            "<serial type='pty'/></devices></domain>")


def make_decoy(conn: Any, folder: Path) -> Decoy:
    """Define and start the decoy, then give its configuration a (fake) GPU hostdev."""
    name = f"{DECOY_PREFIX}{os.getpid()}"
    disk = folder / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    dom = conn.defineXML(decoy_xml(name, disk, hostdev=False))
    decoy = Decoy(name, disk)
    try:
        dom.create()
        # A running domain's next-boot configuration may name a GPU it cannot use now:
        # what a renter's VM looks like to a careless tool between two boots.
        conn.defineXML(decoy_xml(name, disk, hostdev=True, uuid=dom.UUIDString()))
    except BaseException:
        remove_decoy(conn, decoy)
        raise
    _, decoy.live_xml, decoy.config_xml, decoy.disk_digest, decoy.disk_mtime = \
        decoy.snapshot(conn)
    return decoy


def remove_decoy(conn: Any, decoy: Decoy) -> None:
    dom = conn.lookupByName(decoy.name)
    if dom.isActive():
        dom.destroy()
    dom.undefine()
    decoy.disk.unlink(missing_ok=True)


# --- libvirtd, stopped and restarted exactly as it was ------------------------------------

@dataclass(frozen=True)
class Libvirtd:
    pid: int
    argv: list[str]


def find_libvirtd() -> Libvirtd:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0].decode()) == "libvirtd":
            return Libvirtd(int(entry.name), [a.decode() for a in argv if a])
    raise AssertionError("no libvirtd process found")


def stop_libvirtd(daemon: Libvirtd) -> None:
    os.kill(daemon.pid, signal.SIGTERM)
    wait_for("libvirtd exit", lambda: not Path(f"/proc/{daemon.pid}").exists(), 30)


def start_libvirtd(daemon: Libvirtd) -> None:
    import libvirt

    subprocess.run(daemon.argv, check=True)

    def answers() -> bool:
        try:
            libvirt.open(URI).close()
            return True
        except libvirt.libvirtError:
            return False

    wait_for("libvirtd answering again", answers, 30)
