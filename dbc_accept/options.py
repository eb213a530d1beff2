"""Every command-line option of the plugin, declared once, in one group.

Options of pytest-testinfra (``--hosts``, ``--ansible-inventory``, ``--connection``,
``--ssh-config``, ``--ssh-identity-file``, ``--sudo``) are used as testinfra declares them.
Ini-file equivalents are not offered: a node's run is configured on the command line.
"""

from __future__ import annotations

import pytest

from dbc_accept.bench.profiles import PROFILES

# Declared where they are used (facts/ imports no pytest); imported here under their old names.
from dbc_accept.facts.images import TEMPLATE as DEFAULT_IMAGE
from dbc_accept.facts.libvirtconn import DEFAULT_URI

__all__ = ["DEFAULT_IMAGE", "DEFAULT_URI", "add_options", "guest_profiles"]


def guest_profiles() -> list[str]:
    """The names --profile accepts (dbc_accept/data/profiles.json)."""
    from dbc_accept.guest.thresholds import all_thresholds

    return sorted(all_thresholds())


def add_options(parser: pytest.Parser) -> None:
    g = parser.getgroup("dbc-accept", "DBC node acceptance")
    # where host facts come from
    g.addoption("--snapshot", dest="dbc_snapshot", metavar="DIR", default=None,
                help="replay the host checks on a snapshot folder (see `dbc-accept snapshot`)")
    g.addoption("--dbc-dir", dest="dbc_dir", metavar="DIR", default=None,
                help="the dbc node program's install folder (default: found from its process)")
    g.addoption("--node-dat-backup", dest="dbc_node_dat_backup", metavar="PATH", default=None,
                help="a backup of dat/node.dat to compare with the node's")
    # libvirt and the test VM
    g.addoption("--libvirt-uri", dest="dbc_libvirt_uri", metavar="URI", default=DEFAULT_URI,
                help=f"libvirt connection (default: {DEFAULT_URI}, what the dbc program uses)")
    g.addoption("--vm-image", dest="dbc_vm_image", default=DEFAULT_IMAGE, metavar="PATH",
                help=f"template image of the test VM, never written (default: {DEFAULT_IMAGE})")
    g.addoption("--gpus", dest="dbc_gpus", metavar="GPUS", default="all",
                help="GPUs for the test VM: 'all', a count, or PCI addresses "
                     "(0000:01:00.0,0000:02:00.0)")
    g.addoption("--gpu-ids", dest="dbc_gpu_ids", default=None, metavar="VENDOR:DEVICE,...",
                help="PCI ids that count as GPUs, for a stand-in device (default: NVIDIA "
                     "display controllers and their card's functions; or set "
                     "DBC_ACCEPT_GPU_IDS)")
    g.addoption("--vm-virt-type", dest="dbc_vm_virt_type", default="kvm",
                choices=("kvm", "qemu"),
                help="kvm (default) or qemu (software emulation; passes through only a "
                     "--gpu-ids stand-in)")
    g.addoption("--vm-memory", dest="dbc_vm_memory", metavar="MiB", type=int, default=None,
                help="test VM memory in MiB (default: sized as check_env does)")
    g.addoption("--vm-vcpus", dest="dbc_vm_vcpus", metavar="N", type=int, default=None,
                help="test VM vCPUs (default: sized as check_env does)")
    g.addoption("--vm-network", dest="dbc_vm_network", metavar="NETWORK", default="default",
                help="libvirt network of the test VM's NIC (default: default)")
    g.addoption("--vm-uefi", dest="dbc_vm_uefi", action="store_true",
                help="boot the test VM with UEFI (OVMF)")
    g.addoption("--vm-kernel", dest="dbc_vm_kernel", default=None, metavar="PATH",
                help="direct kernel boot: kernel file (with --vm-initrd and --vm-cmdline)")
    g.addoption("--vm-initrd", dest="dbc_vm_initrd", default=None, metavar="PATH",
                help="direct kernel boot: initrd file")
    g.addoption("--vm-cmdline", dest="dbc_vm_cmdline", metavar="CMDLINE", default=None,
                help="direct kernel boot: kernel command line")
    g.addoption("--vm-boot-timeout", dest="dbc_vm_boot_timeout", type=float, default=300.0,
                metavar="SECONDS", help="time for the test VM to reach SSH (default: 300)")
    g.addoption("--vm-user", dest="dbc_vm_user", metavar="USER", default="dbc",
                help="guest user (default: dbc)")
    g.addoption("--vm-password-file", dest="dbc_vm_password_file", default=None,
                metavar="PATH", help="file holding the guest password (or set DBC_VM_PASSWORD)")
    g.addoption("--vm-password", dest="dbc_vm_password", metavar="PASSWORD", default=None,
                help="guest password on the command line (visible in the process list: "
                     "prefer --vm-password-file or DBC_VM_PASSWORD); masked in reports")
    g.addoption("--vm-key", dest="dbc_vm_key", default=None, metavar="PATH",
                help="private key for the guest user")
    g.addoption("--vm-known-hosts", dest="dbc_vm_known_hosts", default=None, metavar="PATH",
                help="known_hosts file whose keys an ssh:// guest must present "
                     "(default: ~/.ssh/known_hosts)")
    g.addoption("--vm-accept-new-host-key", dest="dbc_vm_accept_new_host_key",
                action="store_true",
                help="trust the first host key seen for this run when it is not known (the "
                     "ssh:// guest not in known_hosts, or a test VM without a guest agent)")
    g.addoption("--keep-vm", dest="dbc_keep_vm", action="store_true",
                help="keep the test VM after the run (prints how to remove it)")
    g.addoption("--guest", dest="dbc_guest", default="vm", metavar="WHERE",
                help="where in-guest tests run: vm (default), ssh://user@host:port, or local")
    # in-guest tests
    g.addoption("--profile", dest="dbc_profile", default="dbc", choices=guest_profiles(),
                help="thresholds of the in-guest unit tests (default: dbc)")
    g.addoption("--expect-gpus", dest="dbc_expect_gpus", metavar="N", type=int, default=None,
                help="number of GPUs the guest must show (default: those passed through)")
    g.addoption("--stress-seconds", dest="dbc_stress_seconds", metavar="SECONDS", type=float,
                default=60.0,
                help="length of the GEMM burn per GPU (default: 60)")
    # benchmarks
    g.addoption("--bench-profile", dest="dbc_bench_profile", metavar="NAME", default="default",
                choices=PROFILES,
                help="CNN benchmark profile (default: default)")
    g.addoption("--bench-min-ratio", dest="dbc_bench_min_ratio", metavar="RATIO", type=float,
                default=0.85,
                help="fail a model below this share of its reference (default: 0.85)")
    # the node on the network
    g.addoption("--listen-broadcast", dest="dbc_listen_broadcast", type=float, default=None,
                metavar="SECONDS", help="listen this long for the node's UDP status broadcast")
    g.addoption("--dbc-client", dest="dbc_client", default=None, metavar="URL",
                help="a dbc client node's HTTP API to ask whether it knows this node")
    # reports
    g.addoption("--report-dir", dest="dbc_report_dir", default="reports", metavar="DIR",
                help="where the run's result folder goes (default: reports/)")
    g.addoption("--no-report", dest="dbc_no_report", action="store_true",
                help="write no result folder")
    g.addoption("--lang", dest="dbc_lang", default=None, choices=("en", "zh"),
                help="language of the verdict, the fixes' headings and the report's "
                     "headings: en or zh (default: from the locale); check ids stay the same")
