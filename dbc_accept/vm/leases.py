"""Give back the DHCP leases a destroyed test VM still holds on a libvirt network.

A VM that is destroyed (or shut down: systemd-networkd leaves its link configured) sends no
DHCPRELEASE, so libvirt's dnsmasq keeps its lease for an hour. After teardown we send the
release on the VM's behalf, from this host to the network's own dnsmasq on the bridge, as
dnsmasq's ``dhcp_release`` tool does; only leases of this run's MAC addresses are touched.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import time
import xml.etree.ElementTree as ET
from typing import Any

DHCP_SERVER_PORT = 67
BOOTREQUEST = 1
HTYPE_ETHER = 1
DHCPRELEASE = 7
MAGIC_COOKIE = b"\x63\x82\x53\x63"
OPT_MSG_TYPE, OPT_SERVER_ID, OPT_CLIENT_ID, OPT_END = 53, 54, 61, 255
CONFIRM_S = 4.0  # how long a release may take to leave libvirt's lease list
POLL_S = 0.1


def interface_macs(domain_xml: str, network: str) -> list[str]:
    """MAC addresses of the domain's NICs on ``network``."""
    if not domain_xml:
        return []
    root = ET.fromstring(domain_xml)
    macs = []
    for iface in root.iterfind("devices/interface"):
        source = iface.find("source")
        mac = iface.find("mac")
        if source is not None and source.get("network") == network and mac is not None:
            macs.append(str(mac.get("address", "")).lower())
    return [m for m in macs if m]


def release_packet(ip: str, mac: str, server: str, client_id: bytes = b"") -> bytes:
    """A DHCPRELEASE (RFC 2131) for ``ip`` held by ``mac``, to the server ``server``."""
    chaddr = bytes.fromhex(mac.replace(":", "")).ljust(16, b"\0")
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s", BOOTREQUEST, HTYPE_ETHER, 6, 0,
        int.from_bytes(os.urandom(4), "big"), 0, 0,
        ipaddress.IPv4Address(ip).packed, b"\0" * 4, b"\0" * 4, b"\0" * 4,
        chaddr, b"", b"")
    options = bytes([OPT_MSG_TYPE, 1, DHCPRELEASE, OPT_SERVER_ID, 4])
    options += ipaddress.IPv4Address(server).packed
    if client_id:
        options += bytes([OPT_CLIENT_ID, len(client_id)]) + client_id
    return header + MAGIC_COOKIE + options + bytes([OPT_END])


def _server_address(net: Any) -> str:
    ip = ET.fromstring(net.XMLDesc(0)).find("ip")
    if ip is None or not ip.get("address"):
        raise OSError(f"network {net.name()} has no IPv4 address of its own")
    return str(ip.get("address"))


def _client_id(text: str | None) -> bytes:
    try:
        return bytes.fromhex((text or "").replace(":", ""))
    except ValueError:
        return b""


def release_leases(conn: Any, network: str, macs: list[str],
                   confirm_s: float = CONFIRM_S) -> list[str]:
    """Release every lease of ``macs`` on ``network``; one line per lease.

    dnsmasq takes a DHCPRELEASE over UDP, with no answer, and libvirt lists the lease until
    dnsmasq's lease helper has run: wait up to ``confirm_s`` for each lease to leave the
    list, sending the release once more half-way; a lease still listed then says so."""
    if not macs:
        return []
    net = conn.networkLookupByName(network)
    if not net.isActive():
        return []
    server, bridge = _server_address(net), str(net.bridgeName())
    sent: dict[tuple[str, str], bytes] = {}
    for lease in net.DHCPLeases():
        mac = str(lease.get("mac", "")).lower()
        if mac not in macs or lease.get("type") != 0:  # IPv4 only
            continue
        ip = str(lease["ipaddr"])
        sent[(ip, mac)] = release_packet(ip, mac, server, _client_id(lease.get("clientid")))
        _send(sent[(ip, mac)], server, bridge)
    pending = _wait_gone(net, set(sent), confirm_s / 2)
    for key in pending:
        _send(sent[key], server, bridge)
    pending = _wait_gone(net, pending, confirm_s / 2)
    return [f"lease {ip} ({mac}) on {network}"
            + (f" (release sent; still listed after {confirm_s:g} s)"
               if (ip, mac) in pending else "")
            for ip, mac in sent]


def _send(packet: bytes, server: str, bridge: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, bridge.encode())
        sock.sendto(packet, (server, DHCP_SERVER_PORT))


def _wait_gone(net: Any, keys: set[tuple[str, str]], within_s: float) -> set[tuple[str, str]]:
    """Those of ``keys`` (ip, mac) the network still lists after up to ``within_s``."""
    deadline = time.monotonic() + within_s
    while keys:
        listed = {(str(lease.get("ipaddr")), str(lease.get("mac", "")).lower())
                  for lease in net.DHCPLeases()}
        keys = keys & listed
        if not keys or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    return keys
