"""(一) What virt-host-validate checks besides CPU and IOMMU (same levels: vhost-net and
cgroups WARN, tun FAIL), the guide's packages, libvirt's default network and OVMF."""
from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.libvirtconn import libvirt_of
from dbc_accept.facts.virt import (
    CONTROLLERS,
    PACKAGES,
    gather_cgroups,
    gather_device_nodes,
    gather_ovmf,
    gather_packages,
)
from dbc_accept.plugin import each
from dbc_accept.verdict import check, observe

pytestmark = pytest.mark.host


def test_vhost_net(node: HostFacts) -> None:
    check(node.get(gather_device_nodes).vhost_net, "virt.vhost_net", level="warn",
          observed="/dev/vhost-net is missing (virtio-net falls back to a slower path)",
          expected="/dev/vhost-net")


def test_tun(node: HostFacts) -> None:
    check(node.get(gather_device_nodes).tun, "virt.tun", observed="/dev/net/tun is missing",
          expected="/dev/net/tun (VM network interfaces need it)")


@each(lambda node: [(c, c) for c in CONTROLLERS], empty="no controllers")
def test_cgroup_controller(node: HostFacts, entry: str) -> None:
    cgroups = node.get(gather_cgroups)
    check(cgroups.has(entry), "virt.cgroups", level="warn",
          observed=f"cgroup v{cgroups.version} controller {entry!r} not enabled "
          f"(enabled: {', '.join(sorted(cgroups.enabled)) or 'none'})",
          expected=f"the {entry} controller (libvirt limits VMs with it)")


@each(lambda node: [(name, name) for name in PACKAGES], empty="no packages")
def test_package_installed(node: HostFacts, entry: str) -> None:
    packages = node.get(gather_packages)
    found = [packages[n] for n in PACKAGES[entry] if n in packages and packages[n].installed]
    check(bool(found), "virt.packages",
          observed=f"{' or '.join(PACKAGES[entry])} not installed (dpkg status)",
          expected=f"{entry} installed")
    observe(package=f"{found[0].name} {found[0].version}")


@pytest.mark.requires("libvirtd")
def test_default_network(node: HostFacts) -> None:
    probe = libvirt_of(node)
    check(probe.connected, "libvirtd.connect", observed=f"{probe.uri}: {probe.error}",
          expected=f"a connection to {probe.uri}")
    net = probe.network("default")
    check(net is not None, "virt.default_network",
          observed=f"no network 'default' (networks: "
          f"{', '.join(n.name for n in probe.networks) or 'none'})",
          expected="network 'default' defined, active, autostarted")
    assert net is not None
    check(net.active and net.autostart, "virt.default_network",
          observed=f"network 'default': {'active' if net.active else 'inactive'}, "
          f"autostart {'on' if net.autostart else 'off'}",
          expected="active, autostart on (check_env and the dbc program attach VMs to it)")


def test_ovmf(node: HostFacts) -> None:
    found = node.get(gather_ovmf)
    check(bool(found), "virt.ovmf", observed="no OVMF_CODE*.fd in /usr/share/OVMF or "
          "/usr/share/ovmf", expected="the OVMF firmware (UEFI guests, windows_1909.qcow2)")
    observe(ovmf=found)
