"""One fault at a time in a good snapshot: exactly the right checks fail or warn, with the fix.

Covers the CPU/KVM, IOMMU, GPU/vfio, host driver, framebuffer and forwarding checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dbc_accept.facts.cpu import KVM_PROBE_ARGV
from dbc_accept.facts.kernel import DMESG_ARGV
from dbc_accept.recording import capture
from dbc_accept.target import LocalTarget
from selftests.snapshot_harness import Snapshot, copy_snapshot, run_host_checks

FILES = ("test_os.py", "test_virtualization.py", "test_iommu.py", "test_gpu_vfio.py",
         "test_host_drivers.py", "test_framebuffer.py", "test_network.py")
INTEL = "intel-2204-4gpu"
AMD = "amd-2004-1gpu"
INTEL_FUNCTIONS = [f"0000:{bus}:00.{fn}" for bus in ("17", "3b", "86", "af") for fn in "01"]
INTEL_GPUS = [f"0000:{bus}:00.0" for bus in ("17", "3b", "86", "af")]
GPU_TESTS = ("test_function_on_vfio", "test_vfio_binding_persisted")


@dataclass(frozen=True)
class Fault:
    """A change to a base snapshot and the checks it must (and only it must) trip."""

    name: str
    mutate: Callable[[Snapshot], object]
    failed: set[str] = field(default_factory=set)
    warned: set[str] = field(default_factory=set)
    fix: str = ""  # a piece of text every failed/warned message must contain
    base: str = INTEL
    skipped: set[str] = field(default_factory=set)


def vfio(test: str, ids: list[str]) -> set[str]:
    return {f"test_gpu_vfio.py::{test}[{i}]" for i in ids}


def no_vmx(s: Snapshot) -> None:
    s.replace("/proc/cpuinfo", " ds_cpl vmx smx ", " ds_cpl smx ")


def no_kvm(s: Snapshot) -> None:
    s.delete("/dev/kvm")
    s.command(KVM_PROBE_ARGV, '{"exists": false, "api": null, '
              '"error": "/dev/kvm: No such file or directory"}\n')


def no_ignore_msrs(s: Snapshot) -> None:
    s.write("/sys/module/kvm/parameters/ignore_msrs", "N\n")
    s.replace("/proc/cmdline", " kvm.ignore_msrs=1", "")


def no_iommu_groups(s: Snapshot) -> None:
    s.delete("/sys/kernel/iommu_groups")
    s.path("/sys/kernel/iommu_groups").mkdir()
    for bdf in sorted(p.name for p in s.path("/sys/bus/pci/devices").iterdir()):
        s.delete(f"/sys/bus/pci/devices/{bdf}/iommu_group")


def no_intel_iommu(s: Snapshot) -> None:
    # Ubuntu's 5.15 kernel leaves the Intel IOMMU off without intel_iommu=on: no groups.
    s.replace("/proc/cmdline", "intel_iommu=on ", "")
    no_iommu_groups(s)


def no_nvidia(s: Snapshot) -> None:
    for bdf in INTEL_FUNCTIONS:
        s.delete(f"/sys/bus/pci/devices/{bdf}")


def audio_on_snd_hda(s: Snapshot) -> None:
    s.link("/sys/bus/pci/devices/0000:3b:00.1/driver",
           "../../../../bus/pci/drivers/snd_hda_intel")


def nic_in_gpu_group(s: Snapshot) -> None:
    s.link("/sys/bus/pci/devices/0000:5e:00.0/iommu_group", "../../../../kernel/iommu_groups/21")


def turing_usb_functions(s: Snapshot) -> None:
    # RTX 20xx cards carry a USB-C controller and its UCSI function besides VGA and audio.
    port = "/sys/devices/pci0000:16/0000:16:00.0"
    for fn, device, cls, driver in (("2", "1ad6", "0c0330", "xhci_hcd"),
                                    ("3", "1ad7", "0c8000", "nvidia-gpu")):
        bdf = f"0000:17:00.{fn}"
        s.write(f"{port}/{bdf}/vendor", "0x10de\n")
        s.write(f"{port}/{bdf}/device", f"0x{device}\n")
        s.write(f"{port}/{bdf}/class", f"0x{cls}\n")
        s.write(f"{port}/{bdf}/resource", "0x0000000000000000 0x0000000000000000 "
                "0x0000000000000000\n" * 13)
        s.link(f"{port}/{bdf}/driver", f"../../../../bus/pci/drivers/{driver}")
        s.link(f"{port}/{bdf}/iommu_group", "../../../../kernel/iommu_groups/21")
        s.link(f"/sys/bus/pci/devices/{bdf}", f"../../../devices/pci0000:16/0000:16:00.0/{bdf}")


def manual_binding_only(s: Snapshot) -> None:
    for path in ("/proc/cmdline", "/etc/default/grub"):
        s.replace(path, " vfio-pci.ids=10de:2204,10de:1aef", "")


def audio_id_not_persisted(s: Snapshot) -> None:
    for path in ("/proc/cmdline", "/etc/default/grub"):
        s.replace(path, "vfio-pci.ids=10de:2204,10de:1aef", "vfio-pci.ids=10de:2204")


def grub_set_not_rebooted(s: Snapshot) -> None:
    # The ids are in /etc/default/grub for the next boot; this boot was bound by hand.
    s.replace("/proc/cmdline", " vfio-pci.ids=10de:2204,10de:1aef", "")


def fb_on_bar(name: str) -> Callable[[Snapshot], None]:
    def mutate(s: Snapshot) -> None:
        s.replace("/proc/iomem", "    383fe0000000-383fefffffff : vfio-pci\n",
                  f"    383fe0000000-383fe07e8fff : {name}\n")
    return mutate


def bar_reserve(s: Snapshot) -> None:
    log = s.command_output(DMESG_ARGV) + (
        "[   79.129879] vfio-pci 0000:17:00.0: BAR 1: can't reserve "
        "[mem 0x383fe0000000-0x383fefffffff 64bit pref]\n")
    s.command(DMESG_ARGV, log)


def no_br_netfilter(s: Snapshot) -> None:
    s.replace("/proc/modules", "br_netfilter 32768 0 - Live 0xffffffffc0df0000\n", "")
    s.replace("/proc/modules", "bridge 307200 1 br_netfilter, Live", "bridge 307200 0 - Live")
    s.delete("/proc/sys/net/bridge")


def sysctl_d_overridden(s: Snapshot) -> None:
    # 99-dbc.conf sets 1, but /etc/sysctl.conf is applied last and sets 0.
    s.write("/etc/sysctl.d/99-dbc.conf", "net.ipv4.ip_forward = 1\n")
    s.replace("/etc/sysctl.conf", "\nnet.ipv4.ip_forward=1\n", "\nnet.ipv4.ip_forward=0\n")


GUIDE_BLACKLIST = ("blacklist snd_hda_intel\nblacklist amd76x_edac\nblacklist vga16fb\n"
                   "blacklist nouveau\nblacklist rivafb\nblacklist nvidiafb\nblacklist rivatv\n")
FB = "test_framebuffer.py::test_no_framebuffer_on_gpu"
NET = "test_network.py::"
BRIDGE = {f"{NET}test_bridge_nf_call[bridge-nf-call-iptables]",
          f"{NET}test_bridge_nf_call[bridge-nf-call-ip6tables]"}

FAULTS = [
    Fault("no-vmx", no_vmx, {"test_virtualization.py::test_cpu_virtualization_flags"},
          fix="enable VT-x"),
    Fault("no-dev-kvm", no_kvm, {"test_virtualization.py::test_kvm_device"},
          fix="modprobe kvm_intel"),
    Fault("kvm-api-wrong", lambda s: s.command(KVM_PROBE_ARGV, '{"exists": true, "api": 11, '
                                               '"error": ""}\n'),
          {"test_virtualization.py::test_kvm_device"}, fix="kvm-ok"),
    Fault("kvm-probe-garbage", lambda s: s.command(KVM_PROBE_ARGV, "Traceback (most recent"),
          {"test_virtualization.py::test_kvm_device"}, fix="could not parse"),
    Fault("no-ignore-msrs", no_ignore_msrs,
          warned={"test_virtualization.py::test_kvm_ignore_msrs"}, fix="kvm.ignore_msrs=1"),
    Fault("no-dmar", lambda s: s.delete("/sys/firmware/acpi/tables/DMAR"),
          {"test_iommu.py::test_iommu_in_firmware"}, fix="VT-d"),
    Fault("no-intel-iommu", no_intel_iommu,
          {"test_iommu.py::test_iommu_on_cmdline", "test_iommu.py::test_iommu_groups"},
          skipped={"test_gpu_vfio.py::test_iommu_group_isolated[none]"}, fix="intel_iommu=on"),
    Fault("no-intel-iommu-default-on", lambda s: s.replace("/proc/cmdline", "intel_iommu=on ",
                                                           ""),
          warned={"test_iommu.py::test_iommu_on_cmdline"}, fix="intel_iommu=on"),
    Fault("intel-iommu-off", lambda s: s.replace("/proc/cmdline", "splash intel_iommu=on kvm",
                                                 "splash intel_iommu=off kvm"),
          {"test_iommu.py::test_iommu_on_cmdline"}, fix="intel_iommu=on"),
    Fault("no-iommu-pt", lambda s: s.replace("/proc/cmdline", "iommu=pt ", ""),
          {"test_iommu.py::test_iommu_passthrough"}, fix="iommu=pt"),
    Fault("empty-iommu-groups", no_iommu_groups, {"test_iommu.py::test_iommu_groups"},
          skipped={"test_gpu_vfio.py::test_iommu_group_isolated[none]"}, fix="VT-d"),
    Fault("no-nvidia-gpu", no_nvidia, {"test_gpu_vfio.py::test_nvidia_gpu_present"},
          skipped={f"test_gpu_vfio.py::{t}[none]" for t in (*GPU_TESTS,
                                                            "test_iommu_group_isolated")}
          | {f"{FB}[none]"}, fix="lspci -nn"),
    Fault("audio-on-snd-hda-intel", audio_on_snd_hda,
          vfio("test_function_on_vfio", ["0000:3b:00.1"])
          | {"test_gpu_vfio.py::test_iommu_group_isolated[group31]"}, fix="vfio-pci"),
    Fault("nic-shares-gpu-group", nic_in_gpu_group,
          {"test_gpu_vfio.py::test_iommu_group_isolated[group21]"}, fix="IOMMU group"),
    Fault("manual-binding-only", manual_binding_only,
          warned=vfio("test_vfio_binding_persisted", INTEL_FUNCTIONS), fix="vfio-pci.ids="),
    Fault("audio-id-not-persisted", audio_id_not_persisted,
          warned=vfio("test_vfio_binding_persisted", INTEL_FUNCTIONS[1::2]),
          fix="lost at reboot"),
    Fault("turing-usb-functions-not-on-vfio", turing_usb_functions,
          vfio("test_function_on_vfio", ["0000:17:00.2", "0000:17:00.3"])
          | {"test_gpu_vfio.py::test_iommu_group_isolated[group21]"},
          warned=vfio("test_vfio_binding_persisted", ["0000:17:00.2", "0000:17:00.3"]),
          fix="vfio-pci"),
    Fault("grub-has-ids-not-yet-booted", grub_set_not_rebooted),
    Fault("grub-garbage", lambda s: s.append("/etc/default/grub", 'GRUB_CMDLINE_LINUX="x\n'),
          failed=vfio("test_vfio_binding_persisted", INTEL_FUNCTIONS),
          fix="could not parse /etc/default/grub"),
    Fault("nouveau-loaded", lambda s: s.append(
              "/proc/modules", "nouveau 2306048 0 - Live 0xffffffffc1a00000\n"),
          {"test_host_drivers.py::test_driver_not_loaded[nouveau]"}, fix="blacklist"),
    Fault("nvidia-loaded", lambda s: s.append(
              "/proc/modules", "nvidia 56164352 0 - Live 0xffffffffc1e00000 (POE)\n"),
          {"test_host_drivers.py::test_driver_not_loaded[nvidia]"}, fix="update-initramfs"),
    Fault("blacklist-missing", lambda s: s.replace(
              "/etc/modprobe.d/blacklist.conf", GUIDE_BLACKLIST, ""),
          {"test_host_drivers.py::test_blacklist"}, fix="blacklist snd_hda_intel"),
    Fault("vesafb-holds-bar", fb_on_bar("vesafb"), {f"{FB}[0000:17:00.0]"},
          fix="video=vesafb:off"),
    Fault("efifb-holds-bar", fb_on_bar("efifb"), {f"{FB}[0000:17:00.0]"},
          fix="video=efifb:off"),
    Fault("bootfb-holds-bar", fb_on_bar("BOOTFB"), {f"{FB}[0000:17:00.0]"},
          fix="initcall_blacklist=sysfb_init"),
    Fault("bar-cant-reserve", bar_reserve, {"test_framebuffer.py::test_no_bar_reserve_errors"},
          fix="nofb video=vesafb:off video=efifb:off vga=off"),
    Fault("iomem-garbage", lambda s: s.write("/proc/iomem", "PCI Bus\x00\x01 garbage\n"),
          {f"{FB}[{g}]" for g in INTEL_GPUS}, fix="could not parse /proc/iomem"),
    Fault("iomem-zeros-not-root", lambda s: s.write(
              "/proc/iomem", "00000000-00000000 : Reserved\n00000000-00000000 : System RAM\n"
                             "  00000000-00000000 : Kernel code\n"),
          {f"{FB}[{g}]" for g in INTEL_GPUS}, fix="run as root"),
    Fault("dmesg-not-permitted", lambda s: s.command(
              DMESG_ARGV, "", rc=1, stderr="dmesg: read kernel buffer failed: "
                                           "Operation not permitted\n"),
          {"test_framebuffer.py::test_no_bar_reserve_errors"}, fix="run as root"),
    Fault("ip-forward-0", lambda s: s.write("/proc/sys/net/ipv4/ip_forward", "0\n"),
          {f"{NET}test_ip_forward_now"}, fix="net.ipv4.ip_forward=1"),
    Fault("ip-forward-not-persisted", lambda s: s.replace(
              "/etc/sysctl.conf", "\nnet.ipv4.ip_forward=1\n", "\n"),
          {f"{NET}test_ip_forward_persisted"}, fix="/etc/sysctl.conf"),
    Fault("ip-forward-overridden", sysctl_d_overridden, {f"{NET}test_ip_forward_persisted"},
          fix="sysctl -p"),
    Fault("br-netfilter-not-loaded", no_br_netfilter,
          {f"{NET}test_br_netfilter_loaded", *BRIDGE}, fix="modprobe br_netfilter"),
    Fault("br-netfilter-not-at-boot", lambda s: s.delete(
              "/etc/modules-load.d/br_netfilter.conf"),
          {f"{NET}test_br_netfilter_at_boot"}, fix="/etc/modules-load.d/br_netfilter.conf"),
    Fault("bridge-nf-iptables-0", lambda s: s.write(
              "/proc/sys/net/bridge/bridge-nf-call-iptables", "0\n"),
          {f"{NET}test_bridge_nf_call[bridge-nf-call-iptables]"}, fix="bridge-nf-call-iptables=1"),
    Fault("cpuinfo-garbage", lambda s: s.write("/proc/cpuinfo", "\x00\x00 not cpuinfo\n"),
          {"test_virtualization.py::test_cpu_virtualization_flags",
           "test_iommu.py::test_iommu_on_cmdline"}, fix="could not parse /proc/cpuinfo"),
    Fault("pci-class-garbage", lambda s: s.write(
              "/sys/bus/pci/devices/0000:86:00.0/class", "VGA\n"),
          {"test_gpu_vfio.py::test_nvidia_gpu_present", f"{FB}[unreadable]",
           *(f"test_gpu_vfio.py::{t}[unreadable]"
             for t in (*GPU_TESTS, "test_iommu_group_isolated"))},
          fix="could not parse /sys/bus/pci/devices/0000:86:00.0/class"),
    Fault("amd-no-amd-iommu", lambda s: s.replace("/proc/cmdline", "amd_iommu=on ", ""),
          warned={"test_iommu.py::test_iommu_on_cmdline"}, fix="amd_iommu=on", base=AMD),
    Fault("amd-iommu-off", lambda s: s.replace("/proc/cmdline", "splash amd_iommu=on kvm",
                                               "splash amd_iommu=off kvm"),
          {"test_iommu.py::test_iommu_on_cmdline"}, fix="amd_iommu=on", base=AMD),
    Fault("amd-no-ivrs", lambda s: s.delete("/sys/firmware/acpi/tables/IVRS"),
          {"test_iommu.py::test_iommu_in_firmware"}, fix="AMD-Vi", base=AMD),
    Fault("amd-no-svm", lambda s: s.replace("/proc/cpuinfo", " svm ", " "),
          {"test_virtualization.py::test_cpu_virtualization_flags"}, fix="SVM", base=AMD),
    Fault("amd-modprobe-ids-removed", lambda s: s.delete("/etc/modprobe.d/vfio.conf"),
          warned=vfio("test_vfio_binding_persisted", ["0000:c1:00.0", "0000:c1:00.1"]),
          fix="options vfio-pci ids=", base=AMD),
]


@pytest.mark.parametrize("base", [INTEL, AMD])
def test_good_snapshot_passes(base: str, tmp_path: Path) -> None:
    results = copy_snapshot(base, tmp_path).run(*FILES)
    assert results.not_passed == set(), results.summary()
    gpus = 4 if base == INTEL else 1
    assert len(results.with_outcome("passed", "test_gpu_vfio.py::test_function_on_vfio")) == \
        2 * gpus


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault(fault: Fault, tmp_path: Path) -> None:
    snap = copy_snapshot(fault.base, tmp_path)
    fault.mutate(snap)
    results = snap.run(*FILES)
    assert results.failed == fault.failed, results.summary()
    assert results.warned == fault.warned, results.summary()
    assert results.skipped == fault.skipped, results.summary()
    assert not results.errors, results.summary()
    for test_id in fault.failed | fault.warned:
        assert fault.fix in results.message(test_id), results.message(test_id)


def test_capture_of_this_machine_replays_the_same(tmp_path: Path) -> None:
    # Whatever this machine is, a snapshot of it must judge it as the live run does.
    capture(LocalTarget()).write(tmp_path / "here")
    live = run_host_checks(None, FILES)  # right after: the machine has no time to change
    replay = run_host_checks(tmp_path / "here", FILES)
    assert {k: o for k, (o, _) in replay.items()} == {k: o for k, (o, _) in live.items()}
