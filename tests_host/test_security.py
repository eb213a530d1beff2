"""(四) libvirtd without authentication must not be reachable from outside the host."""
from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.libvirtd import CONF, gather_libvirtd_conf, tcp_port
from dbc_accept.facts.listeners import gather_listeners, on_port
from dbc_accept.verdict import FactError, check, fail

pytestmark = pytest.mark.host


@pytest.mark.requires("libvirt")
def test_libvirtd_not_open_to_the_network(node: HostFacts) -> None:
    try:
        conf = node.get(gather_libvirtd_conf)
    except FactError as exc:
        fail("libvirtd.conf", observed=str(exc), expected=f"a readable {CONF}")
    unauthenticated = conf.get("listen_tcp") == 1 and conf.get("auth_tcp") == "none"
    port = tcp_port(conf)
    exposed = [s for s in on_port(node.get(gather_listeners), port) if not s.loopback]
    listen_addr = conf.get("listen_addr")
    check(not (unauthenticated and exposed), "libvirtd.security", level="warn",
          observed=f"libvirtd takes unauthenticated TCP (auth_tcp = \"none\") on "
          f"{', '.join(map(str, exposed))} (listen_addr "
          f"{'unset' if listen_addr is None else repr(listen_addr)}): anyone who reaches "
          f"port {port} controls this host and its VMs",
          expected=f"TCP {port} bound to 127.0.0.1, or firewalled")
