"""The test VM end to end: real libvirtd, real qemu (TCG), the CI guest image, real SSH.

Each run is a separate pytest process with the CI options; after each one, nothing of it may
be left (domains, volumes, overlay files, DHCP leases) and the decoy (a running domain whose
configuration holds a GPU hostdev, standing for a renter's VM) must be untouched. The two
runs that stop libvirtd are last: they restart libvirtd exactly as they found it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from selftests.e2e_support import (
    PASSWORD,
    URI,
    CiImage,
    Decoy,
    Run,
    ci_image,
    find_libvirtd,
    leftovers,
    libvirt_conn,
    make_decoy,
    remove_decoy,
    run_domains,
    start_libvirtd,
    start_pytest,
    stop_libvirtd,
    vm_options,
    wait_for,
)

pytestmark = pytest.mark.slow
CHECKS = "selftests/e2e_guest_checks.py"
BOOT_LIMIT = 600  # one pytest run with a boot, at most (TCG on two shared cores)


@pytest.fixture(scope="module")
def img() -> CiImage:
    return ci_image()


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    c = libvirt_conn()
    yield c
    c.close()


@pytest.fixture(scope="module")
def decoy(conn: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Decoy]:
    d = make_decoy(conn, tmp_path_factory.mktemp("decoy"))
    yield d
    fresh = libvirt_conn()  # the module's connection dies if libvirtd was restarted
    try:
        remove_decoy(fresh, d)
    finally:
        fresh.close()


@pytest.fixture()
def after_run(decoy: Decoy, img: CiImage) -> Iterator[list[Run]]:
    """Collects the runs of a test; afterwards: no leftovers, decoy untouched, no password."""
    runs: list[Run] = []
    since = time.time()
    yield runs
    conn = libvirt_conn()  # the module's connection dies if the test restarted libvirtd
    try:
        for run in runs:
            assert PASSWORD not in run.out, "the guest password appeared in pytest's output"
            left = leftovers(conn, run.pid, os.path.dirname(img.image), since)
            assert not left, f"left behind: {left}\n{run.out}"
        decoy.assert_untouched(conn)
    finally:
        conn.close()


def _run(img: CiImage, tmp: Path, *extra: str, env: dict[str, str] | None = None,
         **opts: Any) -> Run:
    return start_pytest([*vm_options(img, **opts), *extra], tmp, env)


def test_happy_path_runs_in_guest_checks_and_tears_down(
        img: CiImage, tmp_path: Path, after_run: list[Run]) -> None:
    run = _run(img, tmp_path, CHECKS, "tests_vm", "-m", "not gpu")
    after_run.append(run)
    out = run.wait(BOOT_LIMIT).out
    assert "PASSED selftests/e2e_guest_checks.py::test_guest_target_and_uploads" in out, out
    # The in-guest tests ran on the guest (pass or fail on a small VM), none errored.
    assert "PASSED tests_vm/test_unit_guest.py::test_guest_python" in out, out
    assert "\nERROR " not in out.split("short test summary info")[-1], out
    assert "login by run key (guest agent)" in out, out
    assert "key(s) of the VM read through the guest agent and pinned" in out, out
    assert "torn down: domain dbc-accept-" in out, out
    assert "PROBLEM" not in out, out


def test_sigint_during_boot(img: CiImage, conn: Any, tmp_path: Path,
                            after_run: list[Run]) -> None:
    run = _run(img, tmp_path, CHECKS)
    after_run.append(run)
    wait_for("test VM", lambda: bool(run_domains(conn, run.pid)), 120, run)
    time.sleep(3)
    run.send(signal.SIGINT)
    out = run.wait(120).out
    assert run.rc == 2 and "KeyboardInterrupt" in out, out  # pytest's "interrupted"
    assert "torn down: domain dbc-accept-" in out, out
    assert "PROBLEM" not in out, out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_a_test(img: CiImage, tmp_path: Path, after_run: list[Run],
                              signum: signal.Signals) -> None:
    marker = tmp_path / "holding"
    run = _run(img, tmp_path, CHECKS, "-k", "hold", env={"E2E_HOLD": str(marker)})
    after_run.append(run)
    wait_for("the in-guest test", marker.exists, BOOT_LIMIT, run)
    run.send(signum)
    out = run.wait(120).out
    assert run.rc == 2 and "KeyboardInterrupt" in out, out
    if signum == signal.SIGTERM:
        assert "stopped by SIGTERM" in out, out
    assert "torn down: domain dbc-accept-" in out, out


def test_guest_destroyed_mid_test(img: CiImage, tmp_path: Path, after_run: list[Run]) -> None:
    run = _run(img, tmp_path, CHECKS, "-k", "destroyed", env={"E2E_DESTROY": "1"})
    after_run.append(run)
    out = run.wait(BOOT_LIMIT).out
    assert run.rc == 1, out
    assert "lost the SSH connection while running `sleep 5`" in out, out
    assert "the test VM is no longer running" in out, out


def test_wrong_password(img: CiImage, tmp_path: Path, after_run: list[Run]) -> None:
    # With the guest agent masked the run key cannot be set: the password must do. Nor can
    # the VM's host key be read, so logging in at all needs the explicit opt-in.
    cmdline = f"{img.cmdline} systemd.mask=qemu-guest-agent.service"
    run = _run(img, tmp_path, CHECKS, "--vm-accept-new-host-key", cmdline=cmdline,
               env={"DBC_VM_PASSWORD": "not-the-password"})
    after_run.append(run)
    out = run.wait(BOOT_LIMIT).out
    assert run.rc == 1, out
    assert "authentication as dbc with password failed" in out, out
    assert "--vm-password" in out, out  # the fix
    assert "not-the-password" not in out


def test_no_guest_agent_means_no_login(img: CiImage, tmp_path: Path,
                                      after_run: list[Run]) -> None:
    cmdline = f"{img.cmdline} systemd.mask=qemu-guest-agent.service"
    # The whole boot timeout is spent waiting for the agent: long enough for the address on a
    # loaded 2-core machine (one vCPU under emulation), short enough not to cost minutes.
    run = _run(img, tmp_path, CHECKS, cmdline=cmdline, boot_timeout=120,
               env={"DBC_VM_PASSWORD": "pw-never-offered"})
    after_run.append(run)
    out = run.wait(BOOT_LIMIT).out
    assert run.rc == 1, out
    assert "could not be read through the qemu guest agent, so no login was tried" in out, out
    assert "--vm-accept-new-host-key" in out and "pw-never-offered" not in out, out


def test_missing_template_is_a_usage_error(img: CiImage, tmp_path: Path,
                                           after_run: list[Run]) -> None:
    run = _run(img, tmp_path, CHECKS, image=str(tmp_path / "nope.qcow2"))
    after_run.append(run)
    out = run.wait(120).out
    assert run.rc == 4, out
    assert f"--vm-image {tmp_path}/nope.qcow2: no such file" in out, out


def test_boot_that_never_reaches_ssh(img: CiImage, tmp_path: Path,
                                     after_run: list[Run]) -> None:
    cmdline = f"{img.cmdline} init=/bin/false panic=0"
    run = _run(img, tmp_path, CHECKS, cmdline=cmdline, boot_timeout=60)
    after_run.append(run)
    out = run.wait(BOOT_LIMIT).out
    assert run.rc == 1, out
    assert "got no address" in out or "did not answer SSH" in out, out
    assert "Kernel panic" in out, out  # the serial console's tail is in the message
    assert "fix:" in out, out


RESTART = pytest.mark.skipif(
    not (os.environ.get("CI") or os.environ.get("DBC_E2E_RESTART_LIBVIRTD")),
    reason="stops the shared libvirtd for a while: only under CI or with "
           "DBC_E2E_RESTART_LIBVIRTD=1")


@RESTART
def test_libvirtd_restarted_mid_run(img: CiImage, tmp_path: Path,
                                    after_run: list[Run]) -> None:
    """libvirtd dies during a test and comes back while teardown waits for it: teardown
    reconnects and finishes, nothing is left (lease included). Runs last but one."""
    marker = tmp_path / "holding"
    run = _run(img, tmp_path, CHECKS, "-k", "hold", env={"E2E_HOLD": str(marker)})
    after_run.append(run)
    wait_for("the in-guest test", marker.exists, BOOT_LIMIT, run)
    daemon = find_libvirtd()
    stop_libvirtd(daemon)
    try:
        Path(f"{marker}.release").touch()
        time.sleep(6)  # the test ends, teardown starts and waits (up to 30 s) for libvirtd
    finally:
        start_libvirtd(daemon)
    out = run.wait(120).out
    assert run.rc == 0, out
    assert "PASSED selftests/e2e_guest_checks.py::test_hold_in_guest" in out, out
    assert "torn down: domain dbc-accept-" in out and ", lease " in out, out
    assert "PROBLEM" not in out, out


@RESTART
def test_libvirtd_stopped_mid_run(img: CiImage, conn: Any, tmp_path: Path,
                                  decoy: Decoy) -> None:
    """libvirtd dies during a test and is still down when teardown gives up waiting: a
    clear message with the cleanup fix; once it is back, the next session's sweep removes
    the leftover, its DHCP lease too. Runs last (file order)."""
    marker = tmp_path / "holding"
    since = time.time()
    run = _run(img, tmp_path, CHECKS, "-k", "hold", env={"E2E_HOLD": str(marker)})
    wait_for("the in-guest test", marker.exists, BOOT_LIMIT, run)
    daemon = find_libvirtd()
    stop_libvirtd(daemon)
    try:
        Path(f"{marker}.release").touch()
        out = run.wait(120).out
    finally:
        start_libvirtd(daemon)
    assert run.rc == 1, out
    assert "PASSED selftests/e2e_guest_checks.py::test_hold_in_guest" in out, out  # SSH only
    assert "ERROR at teardown of test_hold_in_guest" in out, out
    assert "the test VM's teardown left problems" in out and "dbc-accept cleanup" in out, out
    assert "PROBLEM: could not reach libvirt at " in out and "within 30 s" in out, out
    from dbc_accept.vm.reaper import sweep as reap

    new_conn = libvirt_conn()
    try:
        # A restarted libvirtd reconnects to the domains it had in the background: sweep
        # again (as the next session would) until nothing of the run is left, or 60 s.
        removed: list[str] = []
        said: list[str] = []
        deadline = time.time() + 60
        while True:
            removed += reap(URI, folders=[os.path.dirname(img.image)], log=said.append)
            left = leftovers(new_conn, run.pid, os.path.dirname(img.image), since)
            if not left or time.time() > deadline:
                break
            time.sleep(3)
        assert not left, (left, removed, said)  # its DHCP lease too: the sweep gives it back
        assert any(f"-p{run.pid}-" in line for line in removed), (removed, said)
        decoy.assert_untouched(new_conn)
    finally:
        new_conn.close()
