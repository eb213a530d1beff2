"""The run's settings: every option of the plugin read once, checked once, typed.

:meth:`Settings.from_config` reads the options (declared in :mod:`dbc_accept.options` and
:mod:`dbc_accept.fleet`) at configure time and raises one :class:`pytest.UsageError` for a
bad value, naming the option, what it got and what it accepts. The result is kept in
``config.stash``; everything else reads its fields through :func:`settings`. What can only
be checked when a test needs it (a file of the test VM, the GPUs of this node) is checked at
collection, by the guest fixture's plugin.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from dbc_accept import gpuids
from dbc_accept.facts import NodeOptions


@dataclass(frozen=True)
class GuestPlan:
    """Where the in-guest tests run, from ``--guest``."""

    mode: str  # "vm", "ssh" or "local"
    user: str = ""
    host: str = ""
    port: int = 22


def parse_guest(value: str, default_user: str) -> GuestPlan:
    """``--guest`` -> GuestPlan; pytest.UsageError with the fix when malformed."""
    text = value.strip()
    if text in ("vm", "local"):
        return GuestPlan(text, default_user)
    if text.startswith("ssh://"):
        from dbc_accept.guest.ssh import parse_ssh_url
        from dbc_accept.secrecy import mask_url

        try:
            user, host, port = parse_ssh_url(text)
        except ValueError as exc:
            shown = mask_url(value)  # never echo a password
            raise pytest.UsageError(f"--guest {shown}: {exc}") from None
        return GuestPlan("ssh", user or default_user, host, port)
    raise pytest.UsageError(
        f"--guest {value!r}: use vm (the test VM), ssh://user@host:port (an existing "
        "machine) or local (this machine)")


@dataclass(frozen=True)
class Settings:
    """The options of one run (see ``pytest --help``, group dbc-accept)."""

    # where host facts come from
    snapshot: str | None
    dbc_dir: str | None
    node_dat_backup: str | None
    # libvirt and the test VM
    libvirt_uri: str
    vm_image: str
    gpus: str  # 'all', a count, or PCI addresses, as given
    gpu_ids: gpuids.GpuIds  # None: the NVIDIA rule
    vm_virt_type: str
    vm_memory: int | None
    vm_vcpus: int | None
    vm_network: str
    vm_uefi: bool
    vm_kernel: str | None
    vm_initrd: str | None
    vm_cmdline: str | None
    vm_boot_timeout: float
    vm_password_file: str | None
    vm_password: str | None
    vm_key: str | None
    vm_known_hosts: str | None
    vm_accept_new_host_key: bool
    keep_vm: bool
    guest: GuestPlan  # --guest, with --vm-user as the default user
    # in-guest tests
    profile: str
    expect_gpus: int | None
    stress_seconds: float
    # benchmarks
    bench_profile: str
    bench_min_ratio: float
    # the node on the network
    listen_broadcast: float | None
    dbc_client: str | None
    # reports
    report_dir: str
    no_report: bool
    lang: str | None
    # remote nodes
    node_connect_timeout: float
    node_timeout: float
    node_read: str

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        """The options of ``config``, checked; pytest.UsageError for the first bad one."""
        opt = config.option
        made = cls(
            snapshot=opt.dbc_snapshot, dbc_dir=opt.dbc_dir,
            node_dat_backup=opt.dbc_node_dat_backup, libvirt_uri=opt.dbc_libvirt_uri,
            vm_image=opt.dbc_vm_image, gpus=str(opt.dbc_gpus),
            gpu_ids=_gpu_ids(opt.dbc_gpu_ids), vm_virt_type=opt.dbc_vm_virt_type,
            vm_memory=opt.dbc_vm_memory, vm_vcpus=opt.dbc_vm_vcpus,
            vm_network=opt.dbc_vm_network, vm_uefi=bool(opt.dbc_vm_uefi),
            vm_kernel=opt.dbc_vm_kernel, vm_initrd=opt.dbc_vm_initrd,
            vm_cmdline=opt.dbc_vm_cmdline, vm_boot_timeout=float(opt.dbc_vm_boot_timeout),
            vm_password_file=opt.dbc_vm_password_file, vm_password=opt.dbc_vm_password,
            vm_key=opt.dbc_vm_key, vm_known_hosts=opt.dbc_vm_known_hosts,
            vm_accept_new_host_key=bool(opt.dbc_vm_accept_new_host_key),
            keep_vm=bool(opt.dbc_keep_vm),
            guest=parse_guest(str(opt.dbc_guest), str(opt.dbc_vm_user)),
            profile=str(opt.dbc_profile), expect_gpus=opt.dbc_expect_gpus,
            stress_seconds=float(opt.dbc_stress_seconds),
            bench_profile=str(opt.dbc_bench_profile),
            bench_min_ratio=float(opt.dbc_bench_min_ratio),
            listen_broadcast=opt.dbc_listen_broadcast, dbc_client=opt.dbc_client,
            report_dir=str(opt.dbc_report_dir), no_report=bool(opt.dbc_no_report),
            lang=opt.dbc_lang, node_connect_timeout=float(opt.dbc_node_connect_timeout),
            node_timeout=float(opt.dbc_node_timeout), node_read=str(opt.dbc_node_read))
        made.check()
        return made

    def check(self) -> None:
        """pytest.UsageError naming the option, its value and what it accepts."""
        _check_snapshot(self.snapshot)
        _check_network(self.listen_broadcast, self.dbc_client)
        _check_vm(self)
        _check_in_guest(self)
        if not 0 < self.bench_min_ratio <= 2:
            raise pytest.UsageError(f"--bench-min-ratio {self.bench_min_ratio}: give a share "
                                    "of the reference figure, such as 0.85")
        for flag, value in (("--node-connect-timeout", self.node_connect_timeout),
                            ("--node-timeout", self.node_timeout)):
            if not 0 < value <= 3600:
                raise pytest.UsageError(f"{flag} {value:g}: give seconds, more than 0 and at "
                                        "most 3600")

    def node_options(self) -> NodeOptions:
        """What the host checks read of these settings."""
        return NodeOptions(libvirt_uri=self.libvirt_uri, vm_image=self.vm_image,
                           dbc_dir=self.dbc_dir, node_dat_backup=self.node_dat_backup,
                           snapshot=self.snapshot, listen_broadcast=self.listen_broadcast,
                           dbc_client=self.dbc_client)


SETTINGS_KEY = pytest.StashKey[Settings]()


def settings(config: pytest.Config) -> Settings:
    """The run's settings (made and checked on first use, normally at configure time)."""
    if SETTINGS_KEY not in config.stash:
        config.stash[SETTINGS_KEY] = Settings.from_config(config)
    return config.stash[SETTINGS_KEY]


def _gpu_ids(text: str | None) -> gpuids.GpuIds:
    """--gpu-ids, else DBC_ACCEPT_GPU_IDS, else None (NVIDIA)."""
    try:
        return gpuids.parse_gpu_ids(text) if text is not None else gpuids.gpu_ids()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def _check_snapshot(snapshot: str | None) -> None:
    if snapshot and not os.path.isdir(snapshot):
        what = ("is a file: give the snapshot's folder (the one holding snapshot.json)"
                if os.path.isfile(snapshot) else "no such folder")
        raise pytest.UsageError(f"--snapshot {snapshot}: {what}")


def _check_network(seconds: float | None, url: str | None) -> None:
    """--listen-broadcast and --dbc-client."""
    if seconds is not None and not 0 < seconds <= 3600:
        raise pytest.UsageError(f"--listen-broadcast {seconds:g}: give the seconds to listen, "
                                "more than 0 and at most 3600")
    if url:
        from dbc_accept.facts.network_node import mining_nodes_url

        try:
            mining_nodes_url(url)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None


def _check_vm(s: Settings) -> None:
    """The test VM's numbers and --gpus (its syntax; the GPUs themselves at collection)."""
    for flag, value in (("--vm-memory", s.vm_memory), ("--vm-vcpus", s.vm_vcpus),
                        ("--vm-boot-timeout", s.vm_boot_timeout)):
        if value is not None and value <= 0:
            raise pytest.UsageError(f"{flag} {value}: give a positive number")
    gpus = s.gpus.strip().lower()
    if gpus != "all" and not gpus.isdigit():
        from dbc_accept.vm.spec import normalize_bdf

        for part in filter(None, (p.strip() for p in gpus.split(","))):
            try:
                normalize_bdf(part)
            except ValueError as exc:
                raise pytest.UsageError(
                    f"--gpus {gpus}: {exc}; give 'all', a count, or PCI addresses") from None


def _check_in_guest(s: Settings) -> None:
    """--profile, --expect-gpus and --stress-seconds."""
    from dbc_accept.guest.thresholds import thresholds_for

    try:
        thresholds_for(s.profile)
    except KeyError as exc:
        raise pytest.UsageError(f"--profile: {exc.args[0]}") from None
    if s.expect_gpus is not None and s.expect_gpus < 0:
        raise pytest.UsageError(f"--expect-gpus {s.expect_gpus}: give 0 or more")
    if s.stress_seconds <= 0:
        raise pytest.UsageError(f"--stress-seconds {s.stress_seconds:g}: give a positive "
                                "number of seconds")
