"""Garbage in: the CPU/PCI/kernel/iomem/sysctl parsers raise ValueError (gatherers FactError),
never anything else."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbc_accept.facts.cpu import (
    gather_cpuinfo,
    gather_ignore_msrs,
    gather_kvm,
    parse_cpuinfo,
    parse_kvm_probe,
)
from dbc_accept.facts.iomem import gather_iomem, parse_iomem
from dbc_accept.facts.kernel import (
    gather_bar_reserve_errors,
    gather_grub_cmdline,
    gather_loaded_modules,
    gather_modprobe_config,
    parse_bar_reserve_errors,
    parse_cmdline,
    parse_grub_default,
    parse_modprobe_conf,
    parse_modules,
    persisted_vfio_ids,
)
from dbc_accept.facts.pci import gather_pci_devices, parse_hex, parse_resource
from dbc_accept.facts.sysctl import (
    gather_modules_load,
    gather_sysctl_config,
    parse_modules_load,
    parse_sysctl_conf,
)
from dbc_accept.target import CommandResult
from dbc_accept.verdict import FactError
from selftests.test_parsers_hosta import DictTarget

# Text that looks a little like the real thing: digits, hex, separators, newlines, tabs.
TOKENS = [*"0123456789abcdefx:-. =\t\n[]{}\"',#;\\/\x00é", "vfio-pci", "BAR", " : ", "  ",
          "flags", "processor", "GRUB_CMDLINE_LINUX=", "${GRUB_CMDLINE_LINUX}", "0000:01:00.0",
          "can't reserve", "blacklist", "options", "ids=", "vesafb"]
LIKELY = st.lists(st.sampled_from(TOKENS), max_size=80).map("".join)
TEXT = st.one_of(st.text(max_size=300), LIKELY)



def parse_class(text: str) -> int:
    return parse_hex(text, 24)


PARSERS: list[Callable[[str], Any]] = [
    parse_cpuinfo, parse_kvm_probe, parse_cmdline, parse_modules, parse_modprobe_conf,
    parse_bar_reserve_errors, parse_grub_default, parse_iomem, parse_resource, parse_class,
    parse_sysctl_conf, parse_modules_load,
]


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: str(p.__name__))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=TEXT)
def test_parser_takes_garbage(parser: Callable[[str], Any], data: str) -> None:
    with contextlib.suppress(ValueError):
        parser(data)


@settings(max_examples=100, deadline=None)
@given(cmdline=TEXT, conf=TEXT)
def test_persisted_ids_take_garbage(cmdline: str, conf: str) -> None:
    config = gather_modprobe_config(DictTarget({"/etc/modprobe.d/x.conf": conf}))
    ids = persisted_vfio_ids(parse_cmdline(cmdline), config)
    assert all(len(i) == 9 and i[4] == ":" for i in ids)


GATHERERS = [gather_cpuinfo, gather_ignore_msrs, gather_kvm, gather_iomem,
             gather_bar_reserve_errors, gather_grub_cmdline, gather_loaded_modules,
             gather_modprobe_config, gather_pci_devices, gather_sysctl_config, gather_modules_load]
BDF = "0000:01:00.0"


@settings(max_examples=150, deadline=None)
@given(data=TEXT, rc=st.sampled_from([0, 1, 127]))
def test_gatherers_turn_garbage_into_fact_errors(data: str, rc: int) -> None:
    dev = f"/sys/bus/pci/devices/{BDF}"
    files = {p: data for p in (
        "/proc/cpuinfo", "/proc/cmdline", "/proc/iomem", "/proc/modules",
        "/sys/module/kvm/parameters/ignore_msrs", "/etc/modprobe.d/a.conf", "/etc/sysctl.conf",
        "/etc/sysctl.d/99.conf", "/etc/modules", "/etc/default/grub", f"{dev}/vendor",
        f"{dev}/device", f"{dev}/class", f"{dev}/resource")}
    commands = {name: CommandResult((name,), rc, data, data) for name in ("python3", "dmesg")}
    host = DictTarget(files, commands, links={f"{dev}/driver": data, f"{dev}/iommu_group": data})
    for gatherer in GATHERERS:
        try:
            gatherer(host)
        except FactError as exc:
            assert str(exc).startswith("could not ")
