"""(一) The operating system: Ubuntu 20.04 or 22.04 with systemd, reached over SSH."""
from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.system import gather_os_release
from dbc_accept.prereqs import PREREQUISITES
from dbc_accept.verdict import check

pytestmark = pytest.mark.host

SUPPORTED = ("20.04", "22.04")


def test_ubuntu_release(node: HostFacts) -> None:
    os_release = node.get(gather_os_release)
    check(
        os_release.id == "ubuntu" and os_release.version_id in SUPPORTED,
        "os.release",
        observed=os_release.pretty_name or f"{os_release.id} {os_release.version_id}",
        expected="Ubuntu 20.04 or 22.04",
    )


def test_host_reachable(node: HostFacts) -> None:
    why = PREREQUISITES["reachable"].probe(node)
    check(why is None, "node.reachable", observed=f"{node.name}: {why}",
          expected="a shell on the node over SSH")


def test_systemd_runs(node: HostFacts) -> None:
    why = PREREQUISITES["systemd"].probe(node)
    check(why is None, "host.systemd", observed=f"systemd does not answer: {why}",
          expected="systemd as PID 1 (`systemctl is-system-running`)")
