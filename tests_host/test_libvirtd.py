"""(四) libvirtd configured as the guide says, running, listening on TCP 16509, and
answering a real connection on --libvirt-uri with KVM among its domain types."""
from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.libvirtconn import libvirt_of, version_text
from dbc_accept.facts.libvirtd import (
    CONF,
    DEFAULTS,
    SOCKETS,
    ConfValue,
    gather_daemon_args,
    gather_libvirtd_conf,
    gather_service,
    gather_socket_masks,
    tcp_port,
)
from dbc_accept.facts.listeners import gather_listeners, on_port
from dbc_accept.facts.system import gather_os_release
from dbc_accept.plugin import each
from dbc_accept.verdict import FactError, check, fail, observe

pytestmark = pytest.mark.host

WANTED = {"listen_tls": 0, "listen_tcp": 1, "auth_tcp": "none"}


def _conf(node: HostFacts) -> dict[str, ConfValue]:
    """libvirtd.conf, or a libvirtd.conf failure that says why it cannot be used."""
    try:
        return node.get(gather_libvirtd_conf)
    except FactError as exc:
        fail("libvirtd.conf", observed=str(exc), expected=f"a readable {CONF}")




@pytest.mark.requires("libvirt")
@each(lambda node: [(name, (name, value)) for name, value in WANTED.items()],
      empty="no settings")
def test_libvirtd_conf(node: HostFacts, entry: tuple[str, object]) -> None:
    name, wanted = entry
    seen = _conf(node).get(name)
    shown = "unset (commented out)" if seen is None else f"{name} = {seen!r}"
    check(seen == wanted, "libvirtd.conf", observed=f"{CONF}: {shown}",
          expected=f"{name} = {wanted!r}")


@pytest.mark.requires("libvirt")
def test_libvirtd_listen_arg(node: HostFacts) -> None:
    args = node.get(gather_daemon_args)
    shown = "; ".join(f'{v}="{args.values[v]}"' for v in args.variables if v in args.values)
    check(args.listen, "libvirtd.args",
          observed=f"{DEFAULTS}: {shown or 'no ' + ' or '.join(args.variables)}"
          + ("" if args.exists else " (file missing)"),
          expected=f'{args.variables[0]}="-l" ({_release(node, args.version_id)})')


def _release(node: HostFacts, version_id: str) -> str:
    """The node's OS as os-release names it ("Debian GNU/Linux 12", "Ubuntu 22.04.4 LTS")."""
    release = node.try_get(gather_os_release)
    return (release.pretty_name if release and release.pretty_name
            else f"release {version_id or '?'}")


@pytest.mark.requires("libvirt")
@pytest.mark.requires("systemd")
@each(lambda node: [(name, name) for name in SOCKETS], empty="no sockets")
def test_libvirtd_socket_masked(node: HostFacts, entry: str) -> None:
    link = node.get(gather_socket_masks)[entry]
    check(link == "/dev/null", "libvirtd.sockets",
          observed=f"/etc/systemd/system/{entry} " + (f"-> {link}" if link else "is not a link"),
          expected="masked (-> /dev/null)")


@pytest.mark.requires("libvirt")
@pytest.mark.requires("systemd")
def test_libvirtd_active(node: HostFacts) -> None:
    state = node.get(gather_service)
    check(state.active == "active", "libvirtd.service",
          observed=f"`systemctl is-active libvirtd`: {state.active}", expected="active")


@pytest.mark.requires("libvirt")
@pytest.mark.requires("systemd")
def test_libvirtd_enabled(node: HostFacts) -> None:
    state = node.get(gather_service)
    check(state.enabled == "enabled" or state.wants_link, "libvirtd.service",
          observed=f"`systemctl is-enabled libvirtd`: {state.enabled}", expected="enabled")


@pytest.mark.requires("libvirt")
def test_libvirtd_listening(node: HostFacts) -> None:
    port = tcp_port(node.try_get(gather_libvirtd_conf) or {})  # 16509 if unreadable
    found = on_port(node.get(gather_listeners), port)
    observe(libvirtd_listeners=[str(s) for s in found])
    check(bool(found), "libvirtd.listening", observed=f"nothing listens on TCP {port}",
          expected=f"libvirtd listening on TCP {port}")


@pytest.mark.requires("libvirt")
def test_libvirt_connects(node: HostFacts) -> None:
    probe = libvirt_of(node)
    hint = " (install python3-libvirt on the node)" if probe.error_code == -1 else ""
    check(probe.connected, "libvirtd.connect",
          observed=f"{probe.uri}: error {probe.error_code}: {probe.error}{hint}",
          expected=f"a connection to {probe.uri}")
    observe(libvirt=version_text(probe.lib_version), hypervisor=probe.hv_type,
            hypervisor_version=version_text(probe.hv_version))


@pytest.mark.requires("libvirtd")
def test_libvirt_offers_kvm(node: HostFacts) -> None:
    probe = libvirt_of(node)
    check(probe.connected, "libvirtd.connect", observed=f"{probe.uri}: {probe.error}",
          expected=f"a connection to {probe.uri}")
    check("kvm" in probe.domain_types, "libvirtd.kvm",
          observed=f"domain types {', '.join(probe.domain_types) or 'none'}",
          expected="kvm among the capabilities' domain types")
