"""(三) 3 Forwarding and bridge netfilter: ip_forward, br_netfilter, bridge-nf-call-*."""

from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.kernel import gather_loaded_modules
from dbc_accept.facts.sysctl import gather_modules_load, gather_sysctl, gather_sysctl_config
from dbc_accept.verdict import check

pytestmark = pytest.mark.host

IP_FORWARD = "net.ipv4.ip_forward"
BRIDGE_NF = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")


def test_ip_forward_now(node: HostFacts) -> None:
    value = node.get(gather_sysctl, IP_FORWARD)
    check(value == "1", "net.ip_forward",
          observed=f"{IP_FORWARD} = {value if value is not None else '(missing)'}",
          expected=f"{IP_FORWARD} = 1")


def test_ip_forward_persisted(node: HostFacts) -> None:
    setting = node.get(gather_sysctl_config).get(IP_FORWARD)
    seen = (f"{IP_FORWARD} = {setting[0]} (last set in {setting[1]})" if setting
            else f"{IP_FORWARD} set in neither /etc/sysctl.conf nor any sysctl.d/*.conf")
    check(setting is not None and setting[0] == "1", "net.ip_forward", observed=seen,
          expected=f"{IP_FORWARD}=1 in /etc/sysctl.conf or /etc/sysctl.d/*.conf (kept at boot)")


def test_br_netfilter_loaded(node: HostFacts) -> None:
    loaded = "br_netfilter" in node.get(gather_loaded_modules)
    built_in = node.get(gather_sysctl, BRIDGE_NF[0]) is not None  # its sysctls exist
    check(loaded or built_in, "net.br_netfilter",
          observed="br_netfilter is not in /proc/modules (and /proc/sys/net/bridge is absent)",
          expected="br_netfilter loaded")


def test_br_netfilter_at_boot(node: HostFacts) -> None:
    check("br_netfilter" in node.get(gather_modules_load), "net.br_netfilter",
          observed="br_netfilter is in no /etc/modules-load.d/*.conf (nor /etc/modules)",
          expected="br_netfilter listed in /etc/modules-load.d/br_netfilter.conf")


@pytest.mark.parametrize("key", BRIDGE_NF, ids=[k.rsplit(".", 1)[1] for k in BRIDGE_NF])
def test_bridge_nf_call(node: HostFacts, key: str) -> None:
    value = node.get(gather_sysctl, key)
    seen = (f"{key} = {value}" if value is not None
            else f"/proc/sys/{key.replace('.', '/')} does not exist: br_netfilter is not loaded")
    check(value == "1", "net.bridge_nf", observed=seen, expected=f"{key} = 1")
