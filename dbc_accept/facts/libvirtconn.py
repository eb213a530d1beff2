"""One live libvirt connection, through the URI the dbc program uses, for several checks.

The probe runs as ``python3 -c PROBE URI`` on the node (python3-libvirt comes with
virt-manager; this machine's interpreter has libvirt-python). Where the node's python3 has
no libvirt module (the install guide installs none), ``python3 -c VIRSH_PROBE URI`` asks
the same of ``virsh`` (libvirt-clients, which the guide installs). Either prints one JSON
document:
whether it connected (else libvirt's error code and message), the capabilities' guest
domain types, versions, every domain (state, whether it carries this tool's metadata, its
host PCI devices) and every network (active, autostart).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dbc_accept.facts import HostFacts
from dbc_accept.target import Target
from dbc_accept.verdict import FactError

# The connection the dbc program uses: libvirtd listening on TCP 16509 without auth.
DEFAULT_URI = "qemu+tcp://localhost:16509/system"
METADATA_NS = "urn:dbc-accept:vm:1"

# Runs on the node with its python3 (3.8 on Ubuntu 20.04, the oldest a node runs; 3.10 on
# 22.04): stdlib and libvirt only.
PROBE = r'''
import json, sys
import xml.etree.ElementTree as ET
NS = "urn:dbc-accept:vm:1"
STATES = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown",
          5: "shutoff", 6: "crashed", 7: "pmsuspended"}
out = {"connected": False}
try:
    import libvirt
except ImportError as exc:
    out.update(error_code=-1, error="cannot import libvirt: %s" % exc)
    print(json.dumps(out)); sys.exit(0)
libvirt.registerErrorHandler(lambda ctx, err: None, None)
def hostdevs(xml):
    found = []
    for src in ET.fromstring(xml).findall("./devices/hostdev/source/address"):
        a = src.attrib
        try:
            found.append("%04x:%02x:%02x.%x" % tuple(int(a.get(k, "0"), 16) for k in
                                                    ("domain", "bus", "slot", "function")))
        except ValueError:
            pass
    return found
def tagged(dom):
    try:
        dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS)
        return True
    except libvirt.libvirtError:
        return False
try:
    conn = libvirt.open(sys.argv[1])
    out["connected"] = True
    caps = ET.fromstring(conn.getCapabilities())
    out["domain_types"] = sorted({d.get("type") for d in caps.findall("./guest/arch/domain")})
    out["lib_version"] = conn.getLibVersion()
    out["hv_version"] = conn.getVersion()
    out["hv_type"] = conn.getType()
    out["domains"] = [{"name": d.name(), "state": STATES.get(d.state()[0], "unknown"),
                       "tagged": tagged(d), "hostdevs": hostdevs(d.XMLDesc(0))}
                      for d in conn.listAllDomains(0)]
    out["networks"] = [{"name": n.name(), "active": bool(n.isActive()),
                        "autostart": bool(n.autostart())} for n in conn.listAllNetworks(0)]
    conn.close()
except libvirt.libvirtError as exc:
    out.update(error_code=exc.get_error_code(), error=str(exc))
print(json.dumps(out))
'''

# The same document through virsh, for a python3 without the libvirt module.
VIRSH_PROBE = r'''
import json, re, subprocess, sys
import xml.etree.ElementTree as ET
NS = "urn:dbc-accept:vm:1"
STATES = {"no state": "nostate", "running": "running", "idle": "blocked", "paused": "paused",
          "in shutdown": "shutdown", "shut off": "shutoff", "crashed": "crashed",
          "pmsuspended": "pmsuspended"}
uri = sys.argv[1]
def virsh(*args):
    try:
        p = subprocess.run(["virsh", "-q", "-c", uri] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=50)
    except FileNotFoundError:
        return 127, "", "virsh: not found"
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
def packed(text):
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return int(m.group(1)) * 1000000 + int(m.group(2)) * 1000 + int(m.group(3)) if m else 0
def hostdevs(xml):
    found = []
    for src in ET.fromstring(xml).findall("./devices/hostdev/source/address"):
        a = src.attrib
        try:
            found.append("%04x:%02x:%02x.%x" % tuple(int(a.get(k, "0"), 16) for k in
                                                    ("domain", "bus", "slot", "function")))
        except ValueError:
            pass
    return found
out = {"connected": False}
rc, caps, err = virsh("capabilities")
if rc != 0:
    lines = [l[len("error: "):] if l.startswith("error: ") else l for l in err.strip().splitlines()]
    out.update(error_code=-1 if rc == 127 else -2, error="; ".join(lines) or "virsh exited %d" % rc)
    print(json.dumps(out)); sys.exit(0)
out["connected"] = True
found = ET.fromstring(caps).findall("./guest/arch/domain")
out["domain_types"] = sorted({d.get("type") for d in found})
version = dict(l.split(":", 1) for l in virsh("version")[1].splitlines() if ":" in l)
out["lib_version"] = packed(version.get("Using library", ""))
hv = version.get("Running hypervisor", "").split()
out["hv_version"] = packed(" ".join(hv[1:]))
out["hv_type"] = hv[0] if hv else ""
out["domains"] = []
for name in [n for n in virsh("list", "--all", "--name")[1].splitlines() if n.strip()]:
    state = virsh("domstate", name)[1].strip()
    out["domains"].append({"name": name, "state": STATES.get(state, "unknown"),
                           "tagged": virsh("metadata", name, NS)[0] == 0,
                           "hostdevs": hostdevs(virsh("dumpxml", name)[1] or "<domain/>")})
out["networks"] = []
for name in [n for n in virsh("net-list", "--all", "--name")[1].splitlines() if n.strip()]:
    info = dict((k.strip(), v.strip()) for k, v in
                (l.split(":", 1) for l in virsh("net-info", name)[1].splitlines() if ":" in l))
    out["networks"].append({"name": name, "active": info.get("Active") == "yes",
                            "autostart": info.get("Autostart") == "yes"})
print(json.dumps(out))
'''


@dataclass(frozen=True)
class Domain:
    name: str
    state: str
    tagged: bool
    hostdevs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Network:
    name: str
    active: bool
    autostart: bool


@dataclass(frozen=True)
class LibvirtProbe:
    """What one connection to libvirt showed."""

    uri: str
    connected: bool
    error_code: int | None = None
    error: str = ""
    domain_types: tuple[str, ...] = ()
    lib_version: int = 0
    hv_version: int = 0
    hv_type: str = ""
    domains: tuple[Domain, ...] = field(default=())
    networks: tuple[Network, ...] = field(default=())

    def network(self, name: str) -> Network | None:
        return next((n for n in self.networks if n.name == name), None)


def version_text(number: int) -> str:
    """libvirt's packed version (major * 1e6 + minor * 1e3 + micro) as '9.0.0'."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def _require(doc: dict[str, Any], key: str, kind: type) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"{key!r} is {type(value).__name__}, expected {kind.__name__}")
    return value


def parse_probe(text: str, uri: str = DEFAULT_URI) -> LibvirtProbe:
    """Parse the probe's JSON document; ValueError when it is not the probe's shape."""
    try:
        return _parse_probe(json.loads(text), uri)
    except (TypeError, AttributeError, KeyError) as exc:
        raise ValueError(f"unexpected document: {type(exc).__name__}: {exc}") from None


def _parse_probe(doc: Any, uri: str) -> LibvirtProbe:
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if not _require(doc, "connected", bool):
        code = doc.get("error_code")
        return LibvirtProbe(uri, False, code if isinstance(code, int) else None,
                            str(doc.get("error", "")))
    # by name: libvirt's API and virsh list them in different orders
    domains = tuple(sorted((
        Domain(str(_require(d, "name", str)), str(d.get("state", "")), bool(d.get("tagged")),
               tuple(str(h) for h in d.get("hostdevs", [])))
        for d in _require(doc, "domains", list)), key=lambda d: d.name))
    networks = tuple(sorted((
        Network(str(_require(n, "name", str)), bool(n.get("active")), bool(n.get("autostart")))
        for n in _require(doc, "networks", list)), key=lambda n: n.name))
    return LibvirtProbe(
        uri, True, domain_types=tuple(str(t) for t in _require(doc, "domain_types", list)),
        lib_version=int(_require(doc, "lib_version", int)),
        hv_version=int(_require(doc, "hv_version", int)), hv_type=str(doc.get("hv_type", "")),
        domains=domains, networks=networks)


def _probe(target: Target, script: str, uri: str) -> LibvirtProbe:
    out = target.run(["python3", "-c", script, uri], timeout=60)
    if not out.ok:
        raise FactError(f"the libvirt probe of {uri}", out.describe())
    try:
        return parse_probe(out.stdout, uri)
    except ValueError as exc:
        raise FactError(f"the libvirt probe's output for {uri}", str(exc), verb="parse") from None


def gather_libvirt(target: Target, uri: str = DEFAULT_URI) -> LibvirtProbe:
    """Connect once and read everything the host checks need from libvirt.

    Through the libvirt Python module where the node's python3 has it, else through virsh.
    """
    probe = _probe(target, PROBE, uri)
    if probe.connected or probe.error_code != -1:
        return probe
    virsh = _probe(target, VIRSH_PROBE, uri)
    if virsh.connected or virsh.error_code != -1:
        return virsh
    return LibvirtProbe(uri, False, -1, f"{probe.error}; and {virsh.error} (libvirt-clients)")


def libvirt_of(node: HostFacts) -> LibvirtProbe:
    """The session's one probe of the node, on --libvirt-uri."""
    return node.get(gather_libvirt, node.options.libvirt_uri or DEFAULT_URI)


GATHERERS = [gather_libvirt]
