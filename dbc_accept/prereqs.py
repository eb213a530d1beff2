"""What a host check needs before it can say anything: declared once, here.

A prerequisite has one *owner*, the test that FAILS with its fix when it is missing. Every
other test that needs it carries ``@pytest.mark.requires("name")`` and SKIPS, naming the
owner, instead of failing again under its own id. Being reachable is every host test's
prerequisite on a remote node, so it needs no mark. Prerequisites chain (``after``): a test
that needs libvirtd reachable skips behind "libvirt installed" when that is what is missing.
:func:`dbc_folder` gives the tests that read the dbc install folder that folder, by the same
rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.verdict import FactError, fail

Probe = Callable[[HostFacts], Optional[str]]  # why it is missing, or None when it is there


@dataclass(frozen=True)
class Prerequisite:
    name: str
    what: str  # "libvirt installed": read as "needs <what>"
    owner: str  # the test id (in tests_host) that fails with the fix
    check_id: str  # the owner's check id: its fix is a root cause in "what to fix"
    probe: Probe
    after: tuple[str, ...] = ()


def _reachable(node: HostFacts) -> str | None:
    from dbc_accept.facts.system import gather_os_release

    try:
        node.get(gather_os_release)
    except FactError as exc:
        return exc.why if "cannot connect" in exc.why else None
    return None


NO_SYSTEMD = ("booted with systemd", "Failed to connect to bus", "command not found")


def _systemd(node: HostFacts) -> str | None:
    from dbc_accept.facts.libvirtd import gather_service

    try:
        active = node.get(gather_service).active
    except FactError:
        return None  # unknown: the service checks say why
    return active if any(sign in active for sign in NO_SYSTEMD) else None


def _libvirt(node: HostFacts) -> str | None:
    from dbc_accept.facts.virt import gather_packages

    try:
        package = node.get(gather_packages).get("libvirt-daemon-system")
    except FactError:
        return None  # no dpkg status: not a Debian-style host, the package check says so
    if package is None or not package.installed:
        return "libvirt-daemon-system is not installed (dpkg status)"
    return None


def _libvirtd(node: HostFacts) -> str | None:
    from dbc_accept.facts.libvirtconn import libvirt_of

    try:
        probe = libvirt_of(node)
    except FactError as exc:
        return str(exc)
    return None if probe.connected else f"{probe.uri}: {probe.error}"


def _dbc_dir(node: HostFacts) -> str | None:
    from dbc_accept.facts.dbcnode import gather_dbc_processes, install_folder

    try:
        processes = node.get(gather_dbc_processes)
    except FactError as exc:
        return str(exc)
    if install_folder(processes, node.options.dbc_dir) is None:
        return "no running dbc compute node and no --dbc-dir"
    return None


def dbc_folder(node: HostFacts, *, dependent: bool = True) -> str:
    """The dbc install folder (from its process, or --dbc-dir).

    Without one, ``test_dbc_install_folder`` FAILS with the fix and the tests that only read
    files in the folder (``dependent``) skip saying so: one failure, not one per file.
    """
    from dbc_accept.facts.dbcnode import gather_dbc_processes, install_folder

    folder = install_folder(node.get(gather_dbc_processes), node.options.dbc_dir)
    if folder is None:
        if dependent:
            pytest.skip(f"{node.name}: no dbc install folder to read "
                        "(test_dbc_install_folder fails with the fix)")
        fail("dbc.install_dir", observed="no running dbc compute node to find the folder from",
             expected="the dbc install folder (or --dbc-dir)")
    return folder


PREREQUISITES: dict[str, Prerequisite] = {p.name: p for p in (
    Prerequisite("reachable", "the host reachable over SSH", "test_os.py::test_host_reachable",
                 "node.reachable", _reachable),
    Prerequisite("systemd", "systemd running as PID 1", "test_os.py::test_systemd_runs",
                 "host.systemd", _systemd),
    Prerequisite("libvirt", "libvirt installed",
                 "test_virt_parity.py::test_package_installed[libvirt-daemon-system]",
                 "virt.packages", _libvirt),
    Prerequisite("libvirtd", "libvirtd reachable", "test_libvirtd.py::test_libvirt_connects",
                 "libvirtd.connect", _libvirtd, after=("libvirt",)),
    Prerequisite("dbc_dir", "the dbc install folder",
                 "test_dbc_node.py::test_dbc_install_folder", "dbc.install_dir", _dbc_dir),
)}

ROOT_CHECKS = [p.check_id for p in PREREQUISITES.values()]  # in the order they are met


def chain(names: list[str]) -> list[Prerequisite]:
    """``names`` with what each needs first (``after``), each once; KeyError if unknown."""
    out: list[Prerequisite] = []
    for name in names:
        pre = PREREQUISITES[name]
        for dep in chain(list(pre.after)):
            if dep not in out:
                out.append(dep)
        if pre not in out:
            out.append(pre)
    return out


def _owned_by(item: pytest.Item, pre: Prerequisite) -> bool:
    """Whether ``item`` is the owner test of ``pre`` (on any node)."""
    head, _, param = f"{item.path.name}::{item.name}".partition("[")
    owner_head, _, owner_param = pre.owner.partition("[")
    if head != owner_head:
        return False
    return not owner_param or param[:-1].endswith(owner_param[:-1])


def unmet(item: pytest.Item, node: HostFacts) -> tuple[Prerequisite, str] | None:
    """The first prerequisite of ``item`` that ``node`` lacks, with why."""
    names = ["reachable"] + [m.args[0] for m in item.iter_markers("requires")]
    for pre in chain(names):
        if _owned_by(item, pre):
            return None  # the owner reports it; what it needs itself came first
        why = pre.probe(node)
        if why is not None:
            return pre, why
    return None


def skip_reason(node: HostFacts, pre: Prerequisite, why: str) -> str:
    return f"{node.name}: needs {pre.what}: {pre.owner} fails with the fix ({why})"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    callspec = getattr(item, "callspec", None)
    node = callspec.params.get("node") if callspec else None
    if not isinstance(node, HostFacts):
        return
    missing = unmet(item, node)
    if missing is not None:
        pytest.skip(skip_reason(node, *missing))

