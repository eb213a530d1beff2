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

from dbc_accept import inline
from dbc_accept.facts import HostFacts
from dbc_accept.target import Target
from dbc_accept.verdict import FactError

# The connection the dbc program uses: libvirtd listening on TCP 16509 without auth.
DEFAULT_URI = "qemu+tcp://localhost:16509/system"
METADATA_NS = "urn:dbc-accept:vm:1"

# The probes themselves are in dbc_accept.inline (snapshots know them by name and version).
PROBE = inline.PROBES["libvirt"].text
VIRSH_PROBE = inline.PROBES["libvirt-virsh"].text


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


def _probe(target: Target, name: str, uri: str) -> LibvirtProbe:
    out = target.run(inline.argv(name, uri), timeout=60)
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
    probe = _probe(target, "libvirt", uri)
    if probe.connected or probe.error_code != -1:
        return probe
    virsh = _probe(target, "libvirt-virsh", uri)
    if virsh.connected or virsh.error_code != -1:
        return virsh
    return LibvirtProbe(uri, False, -1, f"{probe.error}; and {virsh.error} (libvirt-clients)")


def libvirt_of(node: HostFacts) -> LibvirtProbe:
    """The session's one probe of the node, on --libvirt-uri."""
    return node.get(gather_libvirt, node.options.libvirt_uri or DEFAULT_URI)


GATHERERS = [gather_libvirt]
