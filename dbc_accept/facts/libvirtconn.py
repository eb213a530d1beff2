"""One live libvirt connection, through the URI the dbc program uses, for several checks.

The probe runs as ``python3 -c PROBE URI`` on the node (python3-libvirt comes with
virt-manager; this machine's interpreter has libvirt-python) and prints one JSON document:
whether it connected (else libvirt's error code and message), the capabilities' guest
domain types, versions, every domain (state, whether it carries this tool's metadata, its
host PCI devices) and every network (active, autostart).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dbc_accept.facts import HostFacts
from dbc_accept.options import DEFAULT_URI
from dbc_accept.target import Target
from dbc_accept.verdict import FactError

METADATA_NS = "urn:dbc-accept:vm:1"

# Runs on the node with its python3 (3.6+ on Ubuntu 20.04): stdlib and libvirt only.
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
    domains = tuple(
        Domain(str(_require(d, "name", str)), str(d.get("state", "")), bool(d.get("tagged")),
               tuple(str(h) for h in d.get("hostdevs", [])))
        for d in _require(doc, "domains", list))
    networks = tuple(
        Network(str(_require(n, "name", str)), bool(n.get("active")), bool(n.get("autostart")))
        for n in _require(doc, "networks", list))
    return LibvirtProbe(
        uri, True, domain_types=tuple(str(t) for t in _require(doc, "domain_types", list)),
        lib_version=int(_require(doc, "lib_version", int)),
        hv_version=int(_require(doc, "hv_version", int)), hv_type=str(doc.get("hv_type", "")),
        domains=domains, networks=networks)


def gather_libvirt(target: Target, uri: str = DEFAULT_URI) -> LibvirtProbe:
    """Connect once and read everything the host checks need from libvirt."""
    out = target.run(["python3", "-c", PROBE, uri], timeout=60)
    if not out.ok:
        raise FactError(f"the libvirt probe of {uri}", out.describe())
    try:
        return parse_probe(out.stdout, uri)
    except ValueError as exc:
        raise FactError(f"the libvirt probe's output for {uri}", str(exc), verb="parse") from None


def libvirt_of(node: HostFacts) -> LibvirtProbe:
    """The session's one probe of the node, on --libvirt-uri."""
    return node.get(gather_libvirt, node.options.get("dbc_libvirt_uri") or DEFAULT_URI)


GATHERERS = [gather_libvirt]
