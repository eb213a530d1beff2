"""Parsers and gatherers of the CPU, PCI, kernel, iomem and sysctl facts, on captured data."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from dbc_accept.facts.cpu import (
    KVM_PROBE,
    KVM_PROBE_ARGV,
    gather_ignore_msrs,
    gather_kvm,
    parse_cpu_count,
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
from dbc_accept.facts.pci import (
    gather_pci_devices,
    gpu_iommu_groups,
    iommu_group_members,
    nvidia_functions,
    nvidia_gpus,
    parse_resource,
)
from dbc_accept.facts.sysctl import (
    gather_modules_load,
    gather_sysctl,
    gather_sysctl_config,
    parse_modules_load,
    parse_sysctl_conf,
)
from dbc_accept.snapshot import SnapshotTarget
from dbc_accept.target import NOT_FOUND_RC, CommandResult, LocalTarget
from dbc_accept.verdict import FactError
from selftests.prereq import PY38, unavailable

DATA = Path(__file__).parent / "data"
INTEL = SnapshotTarget(DATA / "snapshots" / "intel-2204-4gpu")
AMD = SnapshotTarget(DATA / "snapshots" / "amd-2004-1gpu")


def text(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


class DictTarget:
    """A host made of a dict of files (for gatherer edge cases)."""

    name = "dict"

    def __init__(self, files: dict[str, str], commands: dict[str, CommandResult] | None = None,
                 links: dict[str, str] | None = None) -> None:
        self.files = files
        self.commands = commands or {}
        self.links = links or {}

    def read_text(self, path: str) -> str:
        if path in self.files:
            return self.files[path]
        if any(p.startswith(path + "/") for p in self.files):
            raise IsADirectoryError(path)
        raise FileNotFoundError(path)

    def read_link(self, path: str) -> str:
        if path in self.links:
            return self.links[path]
        raise FileNotFoundError(path)

    def list_dir(self, path: str) -> list[str]:
        names = {p[len(path) + 1:].split("/")[0] for p in [*self.files, *self.links]
                 if p.startswith(path + "/")}
        if not names:
            raise FileNotFoundError(path)
        return sorted(names)

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        return self.commands.get(argv[0], CommandResult(tuple(argv), NOT_FOUND_RC, "", ""))


# --- cpu -----------------------------------------------------------------------------------

def test_cpuinfo_intel_xeon() -> None:
    cpu = parse_cpuinfo(text("cpuinfo-intel-xeon-gold-6248r.txt"))
    assert (cpu.vendor, cpu.processors, cpu.is_intel) == ("GenuineIntel", 3, True)
    assert cpu.model_name.startswith("Intel(R) Xeon(R) Gold 6248R")
    assert cpu.virt_flags == {"vmx"}
    assert "ept" in cpu.flags and "preemption_timer" not in cpu.flags  # not the vmx flags line


def test_cpuinfo_amd_epyc() -> None:
    cpu = parse_cpuinfo(text("cpuinfo-amd-epyc-7302.txt"))
    assert (cpu.vendor, cpu.processors, cpu.is_amd) == ("AuthenticAMD", 2, True)
    assert cpu.virt_flags == {"svm"}


def test_cpuinfo_of_this_machine() -> None:
    cpu = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    assert cpu.processors == os.cpu_count()


def test_cpu_count_logical_and_physical() -> None:
    xeon = parse_cpu_count(text("cpuinfo-intel-xeon-gold-6248r.txt"))
    assert (xeon.logical, xeon.physical) == (3, 3)
    smt = "processor : 0\nphysical id : 0\ncore id : 0\n\nprocessor : 1\nphysical id : 0\n" \
          "core id : 0\n"
    assert (parse_cpu_count(smt).logical, parse_cpu_count(smt).physical) == (2, 1)
    # no topology lines (some hypervisors, non-x86): each processor counts as a core
    arm = "processor : 0\nBogoMIPS : 50.00\n\nprocessor : 1\nBogoMIPS : 50.00\n"
    assert (parse_cpu_count(arm).logical, parse_cpu_count(arm).physical) == (2, 2)
    with pytest.raises(ValueError, match="no 'processor' entry"):
        parse_cpu_count("model name Intel\n")


@pytest.mark.parametrize("bad", ["", "\n\n", "processor : 0\nBogoMIPS : 50.00\n",
                                 "model name Intel\n"])
def test_cpuinfo_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_cpuinfo(bad)


def test_kvm_probe_outputs() -> None:
    ok = parse_kvm_probe('{"exists": true, "api": 12, "error": ""}\n')
    assert ok.usable and ok.exists
    gone = parse_kvm_probe('{"exists": false, "api": null, "error": "/dev/kvm: No such file"}')
    assert not gone.usable and not gone.exists and "No such file" in gone.error
    for bad in ("", "Traceback (most recent call last):", "[1, 2]", '{"api": 12}'):
        with pytest.raises(ValueError):
            parse_kvm_probe(bad)


def test_kvm_probe_on_this_machine() -> None:
    # LocalTarget runs python3 as the suite's interpreter; /dev/kvm may or may not be here.
    kvm = gather_kvm(LocalTarget())
    assert kvm.exists == os.path.exists("/dev/kvm")
    if kvm.exists and os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert kvm.api_version == 12
    else:
        assert kvm.api_version is None and kvm.error


def test_kvm_probe_runs_on_python_3_8() -> None:
    if not PY38.is_file():
        unavailable(f"{PY38} is not installed here")
    out = subprocess.run([PY38, "-c", KVM_PROBE], capture_output=True, text=True, check=True)
    assert parse_kvm_probe(out.stdout).exists == os.path.exists("/dev/kvm")


def test_kvm_probe_not_runnable() -> None:
    bad = CommandResult(KVM_PROBE_ARGV, NOT_FOUND_RC, "", "python3: not found")
    with pytest.raises(FactError, match=r"could not read KVM_GET_API_VERSION.*not found"):
        gather_kvm(DictTarget({}, {"python3": bad}))


def test_ignore_msrs_from_module_or_cmdline() -> None:
    assert gather_ignore_msrs(INTEL).enabled
    off = DictTarget({"/proc/cmdline": "ro quiet kvm.ignore_msrs=1\n",
                      "/sys/module/kvm/parameters/ignore_msrs": "N\n"})
    assert not gather_ignore_msrs(off).enabled  # the running module says no
    not_loaded = DictTarget({"/proc/cmdline": "ro quiet kvm.ignore_msrs=1\n"})
    assert gather_ignore_msrs(not_loaded).enabled


# --- kernel --------------------------------------------------------------------------------

def test_cmdline_intel_snapshot() -> None:
    cmd = parse_cmdline(INTEL.read_text("/proc/cmdline"))
    assert cmd.get("intel_iommu") == "on" and cmd.values("iommu") == ["pt"]
    assert cmd.get("vfio_pci.ids") == "10de:2204,10de:1aef"
    assert cmd.has("ro") and cmd.get("ro") is None


def test_cmdline_quotes_dashes_and_init_args() -> None:
    cmd = parse_cmdline('ro dyndbg="file vfio.c +p" vfio_pci.ids=10de:1b80 intel_iommu=on,sm_on '
                        "intel_iommu=off -- --init-arg=1 nofb\n")
    assert cmd.get("dyndbg") == "file vfio.c +p"
    assert cmd.get("intel_iommu") == "off"  # the last one wins
    assert cmd.values("intel_iommu") == ["on", "sm_on", "off"]
    assert not cmd.has("nofb")  # after `--`: init's, not the kernel's
    assert parse_cmdline('ro "unbalanced').has("unbalanced")


def test_cmdline_of_this_machine() -> None:
    cmd = parse_cmdline(Path("/proc/cmdline").read_text())
    assert cmd.params


def test_proc_modules() -> None:
    names = parse_modules(text("proc-modules-common.txt"))
    assert {"vfio_pci", "br_netfilter", "xfs"} <= names
    assert parse_modules("") == frozenset()
    with pytest.raises(ValueError):
        parse_modules("nvidia big 0 - Live\n")


def test_no_proc_modules_means_none_loaded() -> None:
    assert gather_loaded_modules(DictTarget({})) == frozenset()


def test_modprobe_conf_lines() -> None:
    lines = parse_modprobe_conf("# comment\nblacklist nouveau # why\noptions vfio-pci \\\n"
                                "  ids=10de:2204,10de:1aef disable_vga=1\n\n")
    assert lines == [("blacklist", ["nouveau"]),
                     ("options", ["vfio-pci", "ids=10de:2204,10de:1aef", "disable_vga=1"])]


def test_modprobe_config_and_persisted_ids() -> None:
    config = gather_modprobe_config(AMD)
    assert {"nouveau", "snd_hda_intel", "rivatv", "vesafb"} <= set(config.blacklist)
    assert config.blacklist["nouveau"] == "/etc/modprobe.d/blacklist.conf"
    cmdline = parse_cmdline(AMD.read_text("/proc/cmdline"))
    assert persisted_vfio_ids(cmdline, config) == {"10de:2231", "10de:1aef"}
    intel = parse_cmdline("vfio-pci.ids=10DE:2204:ffffffff:ffffffff,10de:1aef,bogus")
    assert persisted_vfio_ids(intel, gather_modprobe_config(DictTarget({}))) == {
        "10de:2204", "10de:1aef"}


def test_grub_default_of_the_snapshot() -> None:
    grub = gather_grub_cmdline(INTEL)
    assert grub.get("vfio_pci.ids") == "10de:2204,10de:1aef"
    assert grub.values("iommu") == ["pt"] and grub.has("rd.driver.pre")
    assert not grub.has("GRUB_DISTRIBUTOR")


def test_grub_d_appends_and_bad_quotes() -> None:
    host = DictTarget({
        "/etc/default/grub": 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\nGRUB_CMDLINE_LINUX=""\n',
        "/etc/default/grub.d/vfio.cfg":
            'GRUB_CMDLINE_LINUX_DEFAULT="${GRUB_CMDLINE_LINUX_DEFAULT} vfio-pci.ids=10de:2231"\n',
        "/etc/default/grub.d/README": "GRUB_CMDLINE_LINUX=ignored\n",
    })
    grub = gather_grub_cmdline(host)
    assert [k for k, _ in grub.params] == ["quiet", "splash", "vfio_pci.ids"]
    assert parse_grub_default("GRUB_CMDLINE_LINUX='a b' # c\n") == {"GRUB_CMDLINE_LINUX": "a b"}
    with pytest.raises(ValueError, match="unbalanced"):
        parse_grub_default('GRUB_CMDLINE_LINUX="a\n')


def test_bar_reserve_errors_of_the_guide() -> None:
    errors = parse_bar_reserve_errors(text("dmesg-guide-vfio-bar.txt"))
    assert [(e.bdf, e.bar, e.range) for e in errors] == [
        ("0000:01:00.0", 1, "[mem 0x90000000-0x9fffffff 64bit pref]")]


def test_bar_reserve_errors_newer_wording_and_clean_logs() -> None:
    line = "[ 5.1] vfio-pci 0000:41:00.0: BAR 3 [mem 0x6000000000-0x6001ffffff 64bit pref]: " \
           "can't reserve\n"
    assert [(e.bar, e.range) for e in parse_bar_reserve_errors(line)] == [
        (3, "[mem 0x6000000000-0x6001ffffff 64bit pref]")]
    for name in ("dmesg-intel-2204-clean.txt", "dmesg-amd-2004-clean.txt"):
        assert parse_bar_reserve_errors(text(name)) == []


def test_dmesg_not_permitted_says_run_as_root() -> None:
    denied = CommandResult(("dmesg",), 1, "", "dmesg: read kernel buffer failed: "
                           "Operation not permitted")
    with pytest.raises(FactError, match="run as root"):
        gather_bar_reserve_errors(DictTarget({}, {"dmesg": denied}))


# --- pci -----------------------------------------------------------------------------------

def test_resource_of_a_gpu() -> None:
    bars = parse_resource(INTEL.read_text("/sys/bus/pci/devices/0000:17:00.0/resource"))
    assert [b.index for b in bars] == [0, 1, 3, 5]
    assert str(bars[1]) == "BAR 1 [mem 0x383fe0000000-0x383fefffffff]"
    assert not bars[3].is_memory
    with pytest.raises(ValueError):
        parse_resource("0x0 0x1\n")


def test_pci_devices_of_the_intel_snapshot() -> None:
    functions = gather_pci_devices(INTEL)
    gpus = nvidia_gpus(functions)
    assert [g.bdf for g in gpus] == ["0000:17:00.0", "0000:3b:00.0", "0000:86:00.0",
                                     "0000:af:00.0"]
    assert {f.pci_id for f in nvidia_functions(functions)} == {"10de:2204", "10de:1aef"}
    assert all(f.driver == "vfio-pci" for f in nvidia_functions(functions))
    groups = gpu_iommu_groups(functions)
    assert list(groups) == ["21", "31", "51", "61"]
    assert [f.kind for f in iommu_group_members(functions, "21")] == ["VGA", "audio"]
    bridge = next(f for f in functions if f.bdf == "0000:16:00.0")
    assert bridge.is_bridge and bridge.driver == "pcieport"


def test_pci_devices_of_this_machine() -> None:
    functions = gather_pci_devices(LocalTarget())
    assert [f.bdf for f in functions] == sorted(os.listdir("/sys/bus/pci/devices"))
    assert all(len(f.vendor) == 4 for f in functions)


def test_pci_without_sysfs() -> None:
    with pytest.raises(FactError, match="no PCI devices"):
        gather_pci_devices(DictTarget({}))


# --- iomem ---------------------------------------------------------------------------------

def test_iomem_of_the_guide_shows_vesafb_on_bar1() -> None:
    iomem = parse_iomem(text("iomem-guide-vesafb.txt"))
    held = iomem.framebuffers_over(0x90000000, 0x9FFFFFFF)
    assert [fb.name for fb in held] == ["vesafb"]
    assert iomem.framebuffers_over(0xA0000000, 0xA1FFFFFF) == []
    bus = next(r for r in iomem.roots if r.name == "PCI Bus 0000:00" and r.start == 0x90000000)
    assert [c.name for c in bus.children] == ["PCI Bus 0000:01", "PCI Bus 0000:01",
                                              "0000:00:1f.3", "PCI Bus 0000:02"]


def test_iomem_bootfb_and_simplefb() -> None:
    iomem = parse_iomem(text("iomem-bootfb-simplefb.txt"))
    held = iomem.framebuffers_over(0x6000000000, 0x600FFFFFFF)
    assert [fb.name for fb in held] == ["BOOTFB", "simplefb"]


def test_iomem_of_the_snapshot_and_this_machine() -> None:
    assert not [r for r in gather_iomem(INTEL).walk() if r.is_framebuffer]
    if os.geteuid() == 0:
        assert list(gather_iomem(LocalTarget()).walk())
    else:  # the kernel shows zeros to others
        with pytest.raises(FactError, match="run as root"):
            gather_iomem(LocalTarget())


@pytest.mark.parametrize("bad", ["", "garbage\n", "  00000000-00000fff : indented first\n",
                                 "00001000-00000fff : backwards\n"])
def test_iomem_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_iomem(bad)


def test_iomem_as_non_root() -> None:
    zeros = "00000000-00000000 : Reserved\n00000000-00000000 : System RAM\n"
    with pytest.raises(FactError, match="run as root"):
        gather_iomem(DictTarget({"/proc/iomem": zeros}))


# --- sysctl and modules-load ---------------------------------------------------------------

def test_sysctl_conf_syntax() -> None:
    pairs = parse_sysctl_conf("# c\n; c\nnet/ipv4/ip_forward = 1\n-kernel.x=2\nno equals\n"
                              "net.ipv4.conf.all.rp_filter=2\n")
    assert pairs == [("net.ipv4.ip_forward", "1"), ("kernel.x", "2"),
                     ("net.ipv4.conf.all.rp_filter", "2")]
    assert ("net.ipv4.ip_forward", "1") in parse_sysctl_conf(text("sysctl.conf"))


def test_sysctl_order_like_systemd() -> None:
    host = DictTarget({
        "/usr/lib/sysctl.d/30-fwd.conf": "net.ipv4.ip_forward=1\n",
        "/etc/sysctl.d/30-fwd.conf": "net.ipv4.ip_forward=0\n",  # hides the /usr/lib one
        "/usr/lib/sysctl.d/50-x.conf": "net.ipv4.ip_forward = 1\n",  # later name: wins
    })
    assert gather_sysctl_config(host).get("net.ipv4.ip_forward") == (
        "1", "/usr/lib/sysctl.d/50-x.conf")
    host.files["/etc/sysctl.conf"] = "net.ipv4.ip_forward=0\n"  # read last of all
    assert gather_sysctl_config(host).get("net/ipv4/ip_forward") == ("0", "/etc/sysctl.conf")


def test_sysctl_now_and_in_snapshot() -> None:
    assert gather_sysctl(INTEL, "net.bridge.bridge-nf-call-ip6tables") == "1"
    assert gather_sysctl(DictTarget({}), "net.bridge.bridge-nf-call-iptables") is None
    assert gather_sysctl_config(INTEL).get("net.ipv4.ip_forward") == ("1", "/etc/sysctl.conf")


def test_modules_load() -> None:
    assert parse_modules_load("# c\n; c\nbr-netfilter\nvhost_net # why\n") == [
        "br_netfilter", "vhost_net"]
    assert gather_modules_load(INTEL)["br_netfilter"] == "/etc/modules-load.d/br_netfilter.conf"
