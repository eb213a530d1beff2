"""The session-scoped ``guest`` fixture (vm, ssh:// or local).

Option values are checked at configure time (their syntax, :mod:`dbc_accept.settings`) and,
when a collected test uses ``guest``, at collection time (files, GPUs, sizing: the plan of
:mod:`dbc_accept.vm.plan`): a bad value is a usage error before anything is created. The
test VM's domain XML, console tail and what happened to it go into ``config.stash`` under
:data:`DOMAIN_XML_KEY`, :data:`CONSOLE_TAIL_KEY` and :data:`VM_RECORD_KEY` for the report;
problems left after teardown fail the session.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from dbc_accept.guest import Guest, LocalGuest, PassedGpu
from dbc_accept.guest.workers import refuse_shared_guest
from dbc_accept.messages import guest_kind, set_guest_kind, t
from dbc_accept.settings import GuestPlan, Settings, settings

if TYPE_CHECKING:
    from dbc_accept.guest.ssh import Credentials
    from dbc_accept.guest.vmguest import VmRecord
    from dbc_accept.vm.plan import VmPlan

PASSWORD_ENV = "DBC_VM_PASSWORD"

KIND_BEFORE_KEY = pytest.StashKey[str]()
VM_PLAN_KEY = pytest.StashKey["VmPlan"]()
DOMAIN_XML_KEY = pytest.StashKey[str]()  # the test VM's live domain XML
CONSOLE_TAIL_KEY = pytest.StashKey[str]()  # the last lines of its serial console
VM_RECORD_KEY = pytest.StashKey["VmRecord"]()  # timings, sweep, teardown, problems


def pytest_configure(config: pytest.Config) -> None:
    config.stash[KIND_BEFORE_KEY] = guest_kind()  # put back after the run (one process)
    # fixes and skip reasons name the test VM, the guest, this machine
    set_guest_kind(settings(config).guest.mode)


def pytest_unconfigure(config: pytest.Config) -> None:
    if KIND_BEFORE_KEY in config.stash:
        set_guest_kind(config.stash[KIND_BEFORE_KEY])


def _need_file(option: str, path: str | None) -> None:
    if path and not os.path.isfile(path):
        raise pytest.UsageError(f"{option} {path}: no such file; give the right path")


def _uses_our_guest(item: pytest.Item) -> bool:
    """True when the item's ``guest`` is this module's fixture (not a local namesake)."""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.get("guest") if info is not None else None
    if not defs:
        return False
    return getattr(defs[-1].func, "__module__", "") == __name__


@pytest.hookimpl(trylast=True)  # after `-m`/`-k` deselection: only the selected items count
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(_uses_our_guest(item) for item in items):
        return
    if refuse_shared_guest(config, items):  # -n: one test VM per run
        return
    found = settings(config)
    if found.guest.mode == "local":
        return
    _need_file("--vm-key", found.vm_key)
    _need_file("--vm-password-file", found.vm_password_file)
    if found.guest.mode == "vm":
        for opt, path in (("image", found.vm_image), ("kernel", found.vm_kernel),
                          ("initrd", found.vm_initrd)):
            _need_file(f"--vm-{opt}", path)
        config.stash[VM_PLAN_KEY] = _vm_plan(found)


def _host_memory_kib() -> int | None:
    from dbc_accept.facts.storage import parse_meminfo_total

    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            return parse_meminfo_total(fh.read()) // 1024
    except (OSError, ValueError):
        return None


def _vm_plan(found: Settings) -> VmPlan:
    """Choose the GPUs and size the VM as check_env does; usage errors for what cannot be."""
    from dbc_accept.facts.pci import gather_pci_devices
    from dbc_accept.target import LocalTarget
    from dbc_accept.verdict import FactError
    from dbc_accept.vm.plan import PlanError, VmRequest, plan_vm

    request = VmRequest(
        uri=found.libvirt_uri, image=os.path.abspath(found.vm_image), gpus=found.gpus,
        memory_mib=found.vm_memory, vcpus=found.vm_vcpus, virt_type=found.vm_virt_type,
        network=found.vm_network, uefi=found.vm_uefi, kernel=found.vm_kernel,
        initrd=found.vm_initrd, cmdline=found.vm_cmdline)
    functions: list[Any] | FactError
    try:
        functions = list(gather_pci_devices(LocalTarget()))
    except FactError as exc:
        functions = exc
    try:
        return plan_vm(request, functions, _host_memory_kib(), os.cpu_count() or 1)
    except PlanError as exc:
        raise pytest.UsageError(str(exc)) from None


def _password_file(config: pytest.Config) -> str | None:
    """The first line of --vm-password-file (a usage error when it cannot be read)."""
    path = settings(config).vm_password_file
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().rstrip("\r\n") or None
    except (OSError, UnicodeDecodeError) as exc:
        raise pytest.UsageError(f"--vm-password-file {path}: cannot read it ({exc}); give "
                                "a readable file holding the password") from None


def _credentials(config: pytest.Config, user: str) -> Credentials:
    from dbc_accept.guest.ssh import Credentials

    password = (settings(config).vm_password or _password_file(config)
                or os.environ.get(PASSWORD_ENV) or None)
    return Credentials(user, password=password, key_path=settings(config).vm_key)


# --- the fixture ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def guest(request: pytest.FixtureRequest) -> Iterator[Guest]:
    """Where in-guest tests run: the test VM (default), an ssh:// machine, or this one."""
    config = request.config
    plan = settings(config).guest
    if plan.mode == "local":
        yield from _local_guest()
    elif plan.mode == "ssh":
        yield from _ssh_guest(config, plan)
    else:
        yield from _vm_guest(config, plan)


def _local_guest() -> Iterator[Guest]:
    from dbc_accept.facts.pci import gather_pci_devices, nvidia_gpus
    from dbc_accept.target import LocalTarget
    from dbc_accept.verdict import FactError

    try:
        gpus: list[PassedGpu] | None = [
            PassedGpu(f.bdf, f.pci_id, f.describe())
            for f in nvidia_gpus(gather_pci_devices(LocalTarget()))]
    except FactError:
        gpus = None  # not known: the GPU tests go by what the driver shows
    workdir = tempfile.mkdtemp(prefix="dbc-accept-guest.")
    try:
        yield LocalGuest(workdir=workdir, passed_gpus=gpus)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _host_key_pin(config: pytest.Config) -> Any:
    """The host keys an ssh:// guest may present (a usage error for an unreadable file)."""
    from dbc_accept.guest.hostkeys import HostKeyError, HostKeyPin, default_known_hosts

    found = settings(config)
    path = found.vm_known_hosts or default_known_hosts()
    try:
        return HostKeyPin(path, accept_new=found.vm_accept_new_host_key)
    except HostKeyError as exc:
        raise pytest.UsageError(f"--vm-known-hosts: {exc}") from None


def _ssh_guest(config: pytest.Config, plan: GuestPlan) -> Iterator[Guest]:
    from dbc_accept.guest.ssh import GuestError, SshGuest
    from dbc_accept.remedies import remedy_for

    ssh = SshGuest(plan.host, plan.port, _credentials(config, plan.user),
                   pin=_host_key_pin(config))
    try:
        ssh.connect()
    except GuestError as exc:
        pytest.fail(f"{exc}\n{t('fix')}: {remedy_for('vm.ssh')}", pytrace=False)
    try:
        yield ssh
    finally:
        ssh.close()


def _vm_guest(config: pytest.Config, plan: GuestPlan) -> Iterator[Guest]:
    from dbc_accept.guest.ssh import GuestError
    from dbc_accept.guest.vmguest import VmRecord, vm_guest
    from dbc_accept.remedies import remedy_for
    from dbc_accept.vm.lifecycle import VmError, VmRefused

    vm_plan = config.stash[VM_PLAN_KEY]
    record = config.stash[VM_RECORD_KEY] = VmRecord()
    found = settings(config)
    spec = vm_plan.spec
    failure = ""
    try:
        with vm_guest(spec, _credentials(config, plan.user),
                      boot_timeout=found.vm_boot_timeout,
                      keep=found.keep_vm, record=record,
                      accept_new_host_key=found.vm_accept_new_host_key,
                      pci_functions=vm_plan.pci_functions,
                      console_dir=_console_dir()) as ssh:
            config.stash[DOMAIN_XML_KEY] = record.domain_xml
            yield ssh
    except (VmRefused, VmError) as exc:
        failure = f"{exc}\n{t('fix')}: {remedy_for(exc.check)}"
    except GuestError as exc:  # boot time-out (with the console) or SSH refused
        failure = str(exc) if f"{t('fix')}:" in str(exc) else \
            f"{exc}\n{t('fix')}: {remedy_for('vm.ssh')}"
    finally:
        config.stash[DOMAIN_XML_KEY] = record.domain_xml
        config.stash[CONSOLE_TAIL_KEY] = record.console_tail
    if failure:
        pytest.fail(failure, pytrace=False)
    if record.problems:
        pytest.fail("the test VM's teardown left problems:\n  " + "\n  ".join(record.problems),
                    pytrace=False)


def _console_dir() -> str:
    # Beside libvirt's own per-domain logs, which outlive the domain the same way.
    return "/var/log/libvirt/qemu"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A guest that broke is said in one message, not with a paramiko traceback."""
    report = yield
    excinfo = call.excinfo
    if excinfo is not None and report.failed:
        from dbc_accept.guest.ssh import GuestAuthError, GuestError
        from dbc_accept.remedies import remedy_for

        if isinstance(excinfo.value, GuestAuthError):
            report.longrepr = f"{excinfo.value}\n{t('fix')}: {remedy_for('vm.ssh')}"
        elif isinstance(excinfo.value, GuestError):
            report.longrepr = str(excinfo.value)
    return report


# --- after the run -------------------------------------------------------------------------

def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    record = session.config.stash.get(VM_RECORD_KEY, None)
    if record is not None and record.problems and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a stolen GPU must not pass


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    record = config.stash.get(VM_RECORD_KEY, None)
    if record is None:
        return
    tr = terminalreporter
    tr.section("dbc-accept: the test VM", sep="-", red=bool(record.problems))
    for line in summary_lines(record):
        tr.write_line(line)


def summary_lines(record: VmRecord) -> list[str]:
    """What the terminal says about the test VM's life."""
    lines = [f"removed leftover of an earlier run: {s}" for s in record.swept]
    if record.domain:
        how = f", login by {record.login}" if record.login else ""
        lines.append(f"{record.domain} at {record.address or 'no address'}{how}")
    if record.timings:
        lines.append("times: " + ", ".join(f"{k} {v:.1f} s" for k, v in record.timings.items()))
    lines += record.notes
    if record.torn_down:
        lines.append("torn down: " + ", ".join(record.torn_down))
    lines += [f"PROBLEM: {p}" for p in record.problems]
    return lines
