"""The run's settings: each bad option value is one usage error naming it; -n and the guest."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from dbc_accept.bench.profiles import PROFILES
from dbc_accept.facts import NodeOptions
from dbc_accept.options import DEFAULT_IMAGE, DEFAULT_URI
from dbc_accept.settings import GuestPlan, Settings, settings


def _settings(pytester: pytest.Pytester, *args: str) -> Settings:
    return settings(pytester.parseconfig("-p", "dbc_accept.plugin", *args))


def test_defaults(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBC_ACCEPT_GPU_IDS", raising=False)
    found = _settings(pytester)
    assert found.libvirt_uri == DEFAULT_URI and found.vm_image == DEFAULT_IMAGE
    assert found.guest == GuestPlan("vm", "dbc")
    assert (found.gpus, found.gpu_ids, found.expect_gpus) == ("all", None, None)
    assert (found.profile, found.bench_profile, found.bench_min_ratio) == ("dbc", "default", 0.85)
    assert (found.node_timeout, found.node_connect_timeout, found.node_read) == (120, 10, "batch")
    assert found.node_options() == NodeOptions(libvirt_uri=DEFAULT_URI, vm_image=DEFAULT_IMAGE)


def test_values_are_typed_and_kept_once(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig(
        "-p", "dbc_accept.plugin", "--guest", "ssh://ops@gpu1:2222", "--vm-memory", "4096",
        "--gpu-ids", "8086:10D3", "--dbc-dir", "/opt/dbc", "--listen-broadcast", "5",
        "--expect-gpus", "2", "--vm-uefi")
    found = settings(config)
    assert settings(config) is found
    assert found.guest == GuestPlan("ssh", "ops", "gpu1", 2222)
    assert (found.vm_memory, found.vm_uefi, found.gpu_ids) == (4096, True, ("8086:10d3",))
    assert found.node_options().dbc_dir == "/opt/dbc"
    assert found.node_options().listen_broadcast == 5.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.expect_gpus = 3  # type: ignore[misc]


@pytest.mark.parametrize("args,message", [
    (["--guest", "vmm"], "--guest 'vmm': use vm (the test VM), ssh://user@host:port"),
    (["--guest", "ssh://u:s3cr3t@h"], "--guest ssh://u:***@h: put no password in the URL"),
    (["--gpus", "first"], "--gpus first: 'first' is not a PCI address"),
    (["--vm-memory", "0"], "--vm-memory 0: give a positive number"),
    (["--vm-vcpus", "-2"], "--vm-vcpus -2: give a positive number"),
    (["--vm-boot-timeout", "0"], "--vm-boot-timeout 0.0: give a positive number"),
    (["--gpu-ids", "zz"], "--gpu-ids 'zz': 'zz' is not a PCI id; expected VENDOR:DEVICE"),
    (["--expect-gpus", "-1"], "--expect-gpus -1: give 0 or more"),
    (["--stress-seconds", "0"], "--stress-seconds 0: give a positive number of seconds"),
    (["--bench-min-ratio", "85"], "--bench-min-ratio 85.0: give a share of the reference "
                                  "figure, such as 0.85"),
    (["--listen-broadcast", "-5"], "--listen-broadcast -5: give the seconds to listen, more "
                                   "than 0 and at most 3600"),
    (["--dbc-client", "10.0.0.5:5052"], "'10.0.0.5:5052' is not an http:// URL"),
    (["--node-timeout", "0"], "--node-timeout 0: give seconds, more than 0 and at most 3600"),
    (["--node-connect-timeout", "4000"], "--node-connect-timeout 4000: give seconds"),
])
def test_bad_value_is_one_usage_error(pytester: pytest.Pytester, args: list[str],
                                      message: str) -> None:
    with pytest.raises(pytest.UsageError, match=re.escape(message)) as raised:
        _settings(pytester, *args)
    assert "s3cr3t" not in str(raised.value)


def test_snapshot_must_be_a_folder(pytester: pytest.Pytester, tmp_path: Path) -> None:
    with pytest.raises(pytest.UsageError, match="no such folder"):
        _settings(pytester, "--snapshot", str(tmp_path / "nowhere"))
    (tmp_path / "file").write_text("")
    with pytest.raises(pytest.UsageError, match="is a file: give the snapshot's folder"):
        _settings(pytester, "--snapshot", str(tmp_path / "file"))


@pytest.mark.parametrize("name", PROFILES)
def test_bench_profiles_are_those_of_the_table(pytester: pytest.Pytester, name: str) -> None:
    assert _settings(pytester, "--bench-profile", name).bench_profile == name


def test_unknown_bench_profile_is_refused(pytester: pytest.Pytester) -> None:
    with pytest.raises(pytest.UsageError, match="--bench-profile"):
        _settings(pytester, "--bench-profile", "nope")


GUEST_AND_HOST = """
def test_in_guest(guest):
    pass

def test_on_host():
    pass
"""


def test_xdist_is_refused_when_a_guest_test_is_selected(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["dbc_accept.plugin"]')
    pytester.makepyfile(test_x=GUEST_AND_HOST)
    args = ("-p", "no:cacheprovider", "--no-report", "--guest", "local", "-n", "2")
    refused = pytester.runpytest_subprocess(*args)
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines([
        "ERROR: -n: the in-guest tests and benchmarks cannot share the GPUs between 2 xdist "
        "workers (a run makes one test VM*): run them without -n (or with -n 0)*"
        "(pytest -m host -n auto)"])
    assert "passed" not in refused.stdout.str()
    host_only = pytester.runpytest_subprocess(*args, "-k", "on_host")
    host_only.assert_outcomes(passed=1)
