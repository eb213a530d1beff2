"""(九) Nothing left by a test: no check_env domain_test, no VM of this tool, no stale disk."""
from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.images import gather_stale_disks
from dbc_accept.facts.libvirtconn import METADATA_NS, libvirt_of
from dbc_accept.verdict import check

pytestmark = pytest.mark.host

CHECK_ENV_DOMAIN = "domain_test"


@pytest.mark.requires("libvirtd")
def test_no_test_domain(node: HostFacts) -> None:
    probe = libvirt_of(node)
    check(probe.connected, "libvirtd.connect", observed=f"{probe.uri}: {probe.error}",
          expected=f"a connection to {probe.uri}")
    left = [d for d in probe.domains if d.name == CHECK_ENV_DOMAIN or d.tagged]
    check(not left, "leftovers.domain",
          observed="; ".join(f"{d.name} ({d.state}"
                             + (f", {METADATA_NS}" if d.tagged else "")
                             + (f", holds {' '.join(d.hostdevs)}" if d.hostdevs else "") + ")"
                             for d in left),
          expected=f"no domain {CHECK_ENV_DOMAIN!r} and none tagged {METADATA_NS}")


def test_no_stale_disk(node: HostFacts) -> None:
    stale = node.get(gather_stale_disks)
    check(not stale, "leftovers.disk", observed=", ".join(stale),
          expected="no test disk (*_domain_test.qcow2, dbc-accept-*.qcow2) in /data")
