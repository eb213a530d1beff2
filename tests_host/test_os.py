"""(一) The operating system: Ubuntu 20.04 or 22.04."""
from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.system import gather_os_release
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
