"""(三) vfio: no host driver holds the GPUs, and the guide's blacklist is in place."""

from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.kernel import MODPROBE_D, gather_loaded_modules, gather_modprobe_config
from dbc_accept.verdict import check

pytestmark = pytest.mark.host

FORBIDDEN = ("nouveau", "nvidia", "nvidiafb", "rivafb")
BLACKLIST = ("snd_hda_intel", "amd76x_edac", "vga16fb", "nouveau", "rivafb", "nvidiafb",
             "rivatv")


@pytest.mark.parametrize("driver", FORBIDDEN)
def test_driver_not_loaded(node: HostFacts, driver: str) -> None:
    loaded = node.get(gather_loaded_modules)
    check(driver not in loaded, "drivers.not_loaded",
          observed=f"{driver} is loaded (/proc/modules): it takes the GPUs from vfio-pci",
          expected=f"{driver} not loaded")


def test_blacklist(node: HostFacts) -> None:
    config = node.get(gather_modprobe_config)
    missing = [m for m in BLACKLIST if m not in config.blacklist]
    check(not missing, "drivers.blacklist",
          observed=f"not blacklisted in {MODPROBE_D}/*.conf: {', '.join(missing)}",
          expected=f"`blacklist NAME` for each of {', '.join(BLACKLIST)}")
