"""Write the known-good base snapshots of selftests/data/snapshots (CPU, PCI, kernel, network).

Run `python selftests/make_snapshots.py` after changing what the host checks of those areas
read. It writes only the files listed here; files other areas add to the same snapshots are
left alone. The content is real-format: sysfs symlinks as the kernel makes them, /proc
files as Ubuntu shows them to root.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from dbc_accept.facts.cpu import KVM_PROBE_ARGV
from dbc_accept.facts.kernel import DMESG_ARGV
from dbc_accept.snapshot import command_slug

HERE = Path(__file__).parent
DATA = HERE / "data"
SNAPSHOTS = DATA / "snapshots"
DRIVER_IOMEM_NAME = {"vfio-pci": "vfio-pci", "ahci": "ahci", "i40e": "i40e", "tg3": "tg3",
                     "nvme": "nvme", "igb": "igb"}


@dataclass
class Function:
    """A PCI function to write under /sys/devices/<path>."""

    path: str  # pci0000:16/0000:16:00.0/0000:17:00.0
    vendor: int
    device: int
    cls: int
    driver: str | None
    group: int
    bars: list[tuple[int, int, int, int]] = field(default_factory=list)  # index, start, size, flags
    rom: tuple[int, int] | None = None  # start, size

    @property
    def bdf(self) -> str:
        return self.path.rsplit("/", 1)[1]

    @property
    def is_bridge(self) -> bool:
        return self.cls >> 8 == 0x0604

    def resource(self) -> str:
        rows = [(0, 0, 0)] * (17 if self.is_bridge else 13)
        for index, start, size, flags in self.bars:
            rows[index] = (start, start + size - 1, flags)
        if self.rom:
            rows[6] = (self.rom[0], self.rom[0] + self.rom[1] - 1, 0x46200)
        return "".join(f"0x{a:016x} 0x{b:016x} 0x{c:016x}\n" for a, b, c in rows)


MEM32 = 0x40200
MEM64_PREF = 0x14220C
MEM64 = 0x140204
IO = 0x40101


def gpu_card(root: str, port: str, bus: int, group: int, low: int, high: int,
             device: int, audio: int = 0x1AEF) -> list[Function]:
    """A GPU and its HDMI audio function behind root port ``port``, in one IOMMU group."""
    base = f"{root}/{port}"
    gpu = Function(f"{base}/0000:{bus:02x}:00.0", 0x10DE, device, 0x030000, "vfio-pci", group,
                   [(0, low, 0x1000000, MEM32), (1, high, 0x10000000, MEM64_PREF),
                    (3, high + 0x10000000, 0x2000000, MEM64_PREF),
                    (5, 0x1000 * bus, 0x80, IO)], rom=(low + 0x1000000, 0x80000))
    sound = Function(f"{base}/0000:{bus:02x}:00.1", 0x10DE, audio, 0x040300, "vfio-pci", group,
                     [(0, low + 0x1080000, 0x4000, MEM32)])
    return [gpu, sound]


def root_port(root: str, bdf: str, vendor: int, device: int, group: int) -> Function:
    return Function(f"{root}/{bdf}", vendor, device, 0x060400, "pcieport", group)


def intel_functions() -> list[Function]:
    fns = [
        Function("pci0000:00/0000:00:00.0", 0x8086, 0x2020, 0x060000, None, 0),
        Function("pci0000:00/0000:00:17.0", 0x8086, 0xA182, 0x010601, "ahci", 9,
                 [(5, 0xA5E00000, 0x800, MEM32)]),
        Function("pci0000:00/0000:00:1f.0", 0x8086, 0xA1C2, 0x060100, None, 10),
        Function("pci0000:00/0000:00:1f.4", 0x8086, 0xA1A3, 0x0C0500, "i801_smbus", 10,
                 [(0, 0xA5E10000, 0x100, MEM32)]),
    ]
    layout = [("pci0000:16", "0000:16:00.0", 0x17, 20, 21),
              ("pci0000:3a", "0000:3a:00.0", 0x3B, 30, 31),
              ("pci0000:85", "0000:85:00.0", 0x86, 50, 51),
              ("pci0000:ae", "0000:ae:00.0", 0xAF, 60, 61)]
    for i, (root, port, bus, port_group, group) in enumerate(layout):
        fns.append(root_port(root, port, 0x8086, 0x2030, port_group))
        fns += gpu_card(root, port, bus, group, 0xC4000000 + i * 0x4000000,
                        0x383FE0000000 + i * 0x1000000000, 0x2204)
    fns.append(root_port("pci0000:5d", "0000:5d:00.0", 0x8086, 0x2030, 40))
    fns.append(Function("pci0000:5d/0000:5d:00.0/0000:5e:00.0", 0x8086, 0x1572, 0x020000,
                        "i40e", 41, [(0, 0xD8000000, 0x1000000, MEM64)]))
    return fns


def amd_functions() -> list[Function]:
    fns = [
        Function("pci0000:00/0000:00:00.0", 0x1022, 0x1480, 0x060000, None, 0),
        Function("pci0000:00/0000:00:00.2", 0x1022, 0x1481, 0x080600, None, 1),
        root_port("pci0000:40", "0000:40:03.1", 0x1022, 0x1483, 20),
        Function("pci0000:40/0000:40:03.1/0000:41:00.0", 0x14E4, 0x165F, 0x020000, "tg3", 20,
                 [(0, 0xB0100000, 0x10000, MEM64_PREF)]),
        Function("pci0000:40/0000:40:08.1/0000:42:00.2", 0x1022, 0x7901, 0x010601, "ahci", 22,
                 [(5, 0xB0200000, 0x800, MEM32)]),
        root_port("pci0000:c0", "0000:c0:03.1", 0x1022, 0x1483, 40),
    ]
    fns += gpu_card("pci0000:c0", "0000:c0:03.1", 0xC1, 41, 0xF0000000, 0x27FE0000000, 0x2231)
    return fns


def iomem(fns: list[Function], head: str, tail: str) -> str:
    """A /proc/iomem whose PCI part is built from the functions' BARs (root view)."""
    by_bus: dict[tuple[str, bool], list[tuple[int, int, Function]]] = {}
    for fn in fns:
        ranges = [(s, s + n - 1) for i, s, n, f in fn.bars if f & 0x200]
        if fn.rom:
            ranges.append((fn.rom[0], fn.rom[0] + fn.rom[1] - 1))
        for start, end in ranges:
            by_bus.setdefault((fn.path.split("/")[0], start >= 1 << 32), []).append(
                (start, end, fn))
    lines: list[tuple[int, str]] = []
    for (root, _), entries in by_bus.items():
        entries.sort(key=lambda e: e[0])
        domain_bus = "0000:" + root[len("pci0000:"):]
        lines.append((entries[0][0], f"{entries[0][0]:08x}-{entries[-1][1]:08x} : "
                      f"PCI Bus {domain_bus}"))
        for start, end, fn in entries:
            is_rom = fn.rom is not None and start == fn.rom[0]
            text = f"  {start:08x}-{end:08x} : {fn.bdf}"
            if fn.driver in DRIVER_IOMEM_NAME and not is_rom:
                text += f"\n    {start:08x}-{end:08x} : {DRIVER_IOMEM_NAME[fn.driver]}"
            lines.append((entries[0][0], text))
    body = "\n".join(text for _, text in sorted(lines, key=lambda x: x[0]))
    return f"{head.rstrip()}\n{body}\n{tail.strip()}\n"


IOMEM_HEAD = """\
00000000-00000fff : Reserved
00001000-0009ffff : System RAM
000a0000-000bffff : PCI Bus 0000:00
000c0000-000c7fff : Video ROM
000e0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-5fffffff : System RAM
  1c000000-1d002681 : Kernel code
  1d200000-1dc2cfff : Kernel rodata
  1de00000-1e0a2e7f : Kernel data
  1e6d6000-1ebfffff : Kernel bss
60000000-6fffffff : Reserved
  60000000-6fffffff : PCI MMCONFIG 0000 [bus 00-ff]
"""
IOMEM_TAIL = """\
fec00000-fec003ff : IOAPIC 0
fed00000-fed003ff : HPET 0
  fed00000-fed003ff : PNP0103:00
fee00000-fee00fff : Local APIC
100000000-407fffffff : System RAM
"""


GRUB = """\
# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.
# For full documentation of the options in this file, see:
#   info -f grub -n 'Simple configuration'

GRUB_DEFAULT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="{0}"
GRUB_CMDLINE_LINUX="{1}"

# Uncomment to enable BadRAM filtering, modify to suit your needs
# This works with Linux (no patch required) and with any kernel that obtains
# the memory map information from GRUB (GNU Mach, kernel of FreeBSD ...)
#GRUB_BADRAM="0x01234567,0xfefefefe,0x89abcdef,0xefefefef"

# Uncomment to disable graphical terminal (grub-pc only)
#GRUB_TERMINAL=console
"""


@dataclass
class Node:
    name: str
    os_release: str
    cpuinfo: str
    cmdline: str
    grub: tuple[str, str]  # GRUB_CMDLINE_LINUX_DEFAULT, GRUB_CMDLINE_LINUX
    functions: list[Function]
    acpi_tables: list[str]
    modules: list[str]
    modprobe: dict[str, str]
    dmesg: str


def write(root: Path, host_path: str, text: str) -> None:
    path = root / "fs" / host_path.lstrip("/")
    if path.is_symlink() or path.is_file():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def link(root: Path, host_path: str, dest: str) -> None:
    path = root / "fs" / host_path.lstrip("/")
    if path.is_symlink() or path.is_file():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(dest, path)


def command(root: Path, argv: tuple[str, ...], stdout: str, rc: int = 0) -> None:
    path = root / "cmd" / f"{command_slug(argv)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"argv": list(argv), "rc": rc, "stdout": stdout, "stderr": ""}
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def write_pci(root: Path, fns: list[Function]) -> None:
    for fn in fns:
        dev = f"/sys/devices/{fn.path}"
        up = "../" * (dev.count("/") - 1)  # from the device's folder back to /sys
        write(root, f"{dev}/vendor", f"0x{fn.vendor:04x}\n")
        write(root, f"{dev}/device", f"0x{fn.device:04x}\n")
        write(root, f"{dev}/class", f"0x{fn.cls:06x}\n")
        write(root, f"{dev}/resource", fn.resource())
        link(root, f"{dev}/iommu_group", f"{up}kernel/iommu_groups/{fn.group}")
        link(root, f"/sys/kernel/iommu_groups/{fn.group}/devices/{fn.bdf}",
             f"../../../../devices/{fn.path}")
        link(root, f"/sys/bus/pci/devices/{fn.bdf}", f"../../../devices/{fn.path}")
        if fn.driver:
            link(root, f"{dev}/driver", f"{up}bus/pci/drivers/{fn.driver}")
            link(root, f"/sys/bus/pci/drivers/{fn.driver}/{fn.bdf}",
                 f"../../../../devices/{fn.path}")


def build(node: Node) -> Path:
    root = SNAPSHOTS / node.name
    root.mkdir(parents=True, exist_ok=True)
    meta_path = root / "snapshot.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta.update({"format": 1, "hostname": node.name, "captured_at": "2026-11-20T08:00:00Z"})
    meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    write(root, "/etc/os-release", node.os_release)
    write(root, "/proc/cpuinfo", node.cpuinfo)
    write(root, "/proc/cmdline", node.cmdline + "\n")
    write(root, "/etc/default/grub", GRUB.format(*node.grub))
    write(root, "/sys/module/kvm/parameters/ignore_msrs", "Y\n")
    shutil.rmtree(root / "fs/sys/firmware/acpi/tables", ignore_errors=True)
    for table in node.acpi_tables:
        write(root, f"/sys/firmware/acpi/tables/{table}", "")
    write_pci(root, node.functions)
    write(root, "/proc/iomem", iomem(node.functions, IOMEM_HEAD, IOMEM_TAIL))
    write(root, "/proc/modules", "".join(f"{m}\n" for m in node.modules))
    for name, text in node.modprobe.items():
        write(root, f"/etc/modprobe.d/{name}", text)
    write(root, "/proc/sys/net/ipv4/ip_forward", "1\n")
    write(root, "/proc/sys/net/bridge/bridge-nf-call-iptables", "1\n")
    write(root, "/proc/sys/net/bridge/bridge-nf-call-ip6tables", "1\n")
    write(root, "/etc/sysctl.conf", (DATA / "sysctl.conf").read_text())
    write(root, "/etc/sysctl.d/10-network-security.conf",
          "# Turn on Source Address Verification in all interfaces to\n"
          "# prevent some spoofing attacks.\n"
          "net.ipv4.conf.default.rp_filter=2\nnet.ipv4.conf.all.rp_filter=2\n")
    link(root, "/etc/sysctl.d/99-sysctl.conf", "../sysctl.conf")
    write(root, "/usr/lib/sysctl.d/50-default.conf",
          "# See sysctl.d(5) for information.\nkernel.sysrq = 16\n"
          "net.ipv4.conf.all.promote_secondaries = 1\n-net.ipv4.ping_group_range = 0 2147483647\n")
    write(root, "/etc/modules", "# /etc/modules: kernel modules to load at boot time.\n#\n"
          "# This file contains the names of kernel modules that should be loaded\n"
          "# at boot time, one per line. Lines beginning with \"#\" are ignored.\n\n")
    link(root, "/etc/modules-load.d/modules.conf", "../modules")
    write(root, "/etc/modules-load.d/br_netfilter.conf", "br_netfilter\n")
    write(root, "/dev/kvm", "")
    command(root, KVM_PROBE_ARGV, '{"exists": true, "api": 12, "error": ""}\n')
    command(root, DMESG_ARGV, node.dmesg)
    return root


def main() -> None:
    common = (DATA / "proc-modules-common.txt").read_text().splitlines()
    blacklist = (DATA / "modprobe-blacklist.conf").read_text()
    fb_blacklist = (DATA / "modprobe-blacklist-framebuffer.conf").read_text()
    intel = Node(
        name="intel-2204-4gpu",
        os_release=(DATA / "os-release-ubuntu-2204.txt").read_text(),
        cpuinfo=(DATA / "cpuinfo-intel-xeon-gold-6248r.txt").read_text(),
        cmdline="BOOT_IMAGE=/vmlinuz-5.15.0-91-generic "
                "root=UUID=6f2d1c3e-8a4b-4f7e-9c1d-2b3a4c5d6e7f ro quiet splash "
                "intel_iommu=on iommu=pt rd.driver.pre=vfio-pci quiet splash intel_iommu=on "
                "kvm.ignore_msrs=1 vfio-pci.ids=10de:2204,10de:1aef",
        grub=("quiet splash intel_iommu=on kvm.ignore_msrs=1 vfio-pci.ids=10de:2204,10de:1aef",
              "quiet splash intel_iommu=on iommu=pt rd.driver.pre=vfio-pci"),
        functions=intel_functions(),
        acpi_tables=["APIC", "BERT", "DMAR", "DSDT", "FACP", "HEST", "HPET", "MCFG", "SRAT"],
        modules=["kvm_intel 372736 0 - Live 0xffffffffc0b3e000",
                 "kvm 1036288 1 kvm_intel, Live 0xffffffffc0a2f000",
                 "i40e 487424 0 - Live 0xffffffffc09b5000", *common],
        modprobe={"blacklist.conf": blacklist, "blacklist-framebuffer.conf": fb_blacklist},
        dmesg=(DATA / "dmesg-intel-2204-clean.txt").read_text(),
    )
    amd = Node(
        name="amd-2004-1gpu",
        os_release=(DATA / "os-release-ubuntu-2004.txt").read_text(),
        cpuinfo=(DATA / "cpuinfo-amd-epyc-7302.txt").read_text(),
        cmdline="BOOT_IMAGE=/vmlinuz-5.4.0-167-generic "
                "root=/dev/mapper/ubuntu--vg-ubuntu--lv ro quiet splash amd_iommu=on "
                "iommu=pt rd.driver.pre=vfio-pci quiet splash amd_iommu=on kvm.ignore_msrs=1",
        grub=("quiet splash amd_iommu=on kvm.ignore_msrs=1",
              "quiet splash amd_iommu=on iommu=pt rd.driver.pre=vfio-pci"),
        functions=amd_functions(),
        acpi_tables=["APIC", "BERT", "CDIT", "DSDT", "FACP", "HEST", "IVRS", "MCFG", "SRAT"],
        modules=["kvm_amd 98304 0 - Live 0xffffffffc0b1c000",
                 "ccp 90112 1 kvm_amd, Live 0xffffffffc0b00000",
                 "kvm 663552 1 kvm_amd, Live 0xffffffffc0a2f000",
                 "tg3 167936 0 - Live 0xffffffffc09d1000", *common],
        modprobe={"blacklist.conf": blacklist, "blacklist-framebuffer.conf": fb_blacklist,
                  "vfio.conf": "options vfio-pci ids=10de:2231,10de:1aef\n"
                               "softdep nvidia pre: vfio-pci\n"},
        dmesg=(DATA / "dmesg-amd-2004-clean.txt").read_text(),
    )
    for node in (intel, amd):
        print(build(node))


if __name__ == "__main__":
    main()
