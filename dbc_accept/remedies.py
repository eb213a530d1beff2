"""One table: check id -> what the owner should do, with the install-guide step.

Steps: (一) packages, (二) XFS /data, (三) virtualization, forwarding, vfio, (四) libvirtd, (五) the
dbc program, (六) images, (七) backups, (十一) troubleshooting, (十二)-(十五) the network. Ids are
``area.what``, one block per area; the Chinese texts are in remedies_zh.py, keyed by id.
"""

from __future__ import annotations

from dataclasses import dataclass

from dbc_accept.fix import actions as a
from dbc_accept.guide import readable
from dbc_accept.messages import current, fill


@dataclass(frozen=True)
class Remedy:
    """A fix text, its guide step, what `dbc-accept fix` does (none: a person acts)."""

    fix: str
    step: str = ""
    actions: tuple[a.Action, ...] = ()

    def text(self, lang: str = "en", fix: str = "") -> str:
        """The fix (``fix``: its text in ``lang``) with the guest's words and the guide step."""
        body = fill(fix or self.fix, lang)
        if self.step and lang == "zh":
            return f"{body}（安装指南 {self.step}）"
        return f"{body} (install guide {readable(self.step)})" if self.step else body


GRUB = ("edit GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub, then "
        "`sudo update-grub && sudo reboot`")
FB_OFF = "nofb video=vesafb:off video=efifb:off vga=off initcall_blacklist=sysfb_init"
IOMMU_PARAMS = a.KernelParams((a.IOMMU_ON, "iommu=pt"))
BLACKLIST = ("snd_hda_intel", "amd76x_edac", "vga16fb", "nouveau", "rivafb", "nvidiafb", "rivatv")
SOCKETS = ("libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket",
           "libvirtd-tls.socket", "libvirtd-tcp.socket")
BRIDGE_NF = (a.Module("br_netfilter"), a.Sysctl("net.bridge.bridge-nf-call-iptables", "1"),
             a.Sysctl("net.bridge.bridge-nf-call-ip6tables", "1"))

REMEDIES: dict[str, Remedy] = {
    # --- area: host (prerequisites of every other check) ---
    "node.reachable": Remedy(
        "check the node's address, port and key and that sshd runs there "
        "(`ssh -p PORT root@NODE true`); on a slow network raise "
        "--node-connect-timeout / --node-timeout"),
    "host.systemd": Remedy(
        "run the node on a systemd distribution (Ubuntu 20.04/22.04 server) booted normally: "
        "libvirtd and the dbc program run as systemd services", "(一)"),
    # --- area: os ---
    "os.release": Remedy("install Ubuntu 20.04 or 22.04 server", "(一)"),
    # --- area: cpu ---
    "cpu.virt_flags": Remedy(
        "enable VT-x (Intel) or SVM/AMD-V (AMD) in the BIOS/UEFI setup", "(三) 1"),
    "cpu.kvm_device": Remedy(
        "enable VT-x/AMD-V in the BIOS, then `sudo modprobe kvm_intel` (or kvm_amd); "
        "`kvm-ok` must say 'KVM acceleration can be used'", "(三) 2"),
    "cpu.ignore_msrs": Remedy(
        f"add kvm.ignore_msrs=1 to the kernel command line: {GRUB}", "(三) vfio",
        (a.KernelParams(("kvm.ignore_msrs=1",)),)),
    # --- area: iommu ---
    "iommu.firmware": Remedy(
        "enable VT-d (Intel: Processor > IIO Configuration > Intel VT for Directed I/O) or "
        "AMD-Vi/IOMMU in the BIOS/UEFI setup", "(三) 1"),
    "iommu.cmdline": Remedy(
        f"add intel_iommu=on (amd_iommu=on on AMD) iommu=pt to the kernel command line: {GRUB}",
        "(三) vfio", (IOMMU_PARAMS,)),
    "iommu.passthrough": Remedy(
        f"add iommu=pt (with intel_iommu=on, or amd_iommu=on on AMD) to the kernel command "
        f"line: {GRUB}", "(三) vfio", (IOMMU_PARAMS,)),
    "iommu.groups": Remedy(
        f"enable VT-d/AMD-Vi in the BIOS and add intel_iommu=on (or amd_iommu=on) iommu=pt: {GRUB}",
        "(三) vfio", (IOMMU_PARAMS, a.Manual())),
    # --- area: gpu ---
    "gpu.present": Remedy(
        "seat the GPUs and check `lspci -nn | grep -i nvidia`; a node without an NVIDIA GPU "
        "cannot rent GPUs", "(三) vfio"),
    "gpu.vfio_bound": Remedy(
        "give every NVIDIA id (`lspci -nn | grep NVIDIA`, e.g. 10de:2231,10de:1aef) to vfio-pci "
        "at boot: `options vfio-pci ids=...` in /etc/modprobe.d/vfio.conf and "
        "`sudo update-initramfs -u -k all` (or vfio-pci.ids=... and rd.driver.pre=vfio-pci on "
        f"the kernel command line: {GRUB}); bind now: `echo vfio-pci > "
        "/sys/bus/pci/devices/BDF/driver_override`, unbind, `echo BDF > "
        "/sys/bus/pci/drivers_probe`", "(三) vfio", (a.VfioIds(),)),
    "gpu.iommu_group": Remedy(
        "every device in a GPU's IOMMU group must go to the VM: bind it to vfio-pci too "
        "(add its id to vfio-pci.ids=), or move the GPU to a slot with its own group",
        "(三) vfio", (a.VfioIds(), a.Manual())),
    "gpu.vfio_persistent": Remedy(
        "the binding is lost at reboot: add vfio-pci.ids=<ids> to the kernel command line "
        f"({GRUB}) or `options vfio-pci ids=<ids>` in /etc/modprobe.d/vfio.conf (then "
        "`sudo update-initramfs -u -k all`)", "(三) vfio", (a.VfioIds(),)),
    # --- area: drivers ---
    "drivers.not_loaded": Remedy(
        "blacklist the driver in /etc/modprobe.d/blacklist.conf, run "
        "`sudo update-initramfs -u -k all` and reboot", "(三) vfio", (a.Blacklist(BLACKLIST),)),
    "drivers.blacklist": Remedy(
        "append to /etc/modprobe.d/blacklist.conf: blacklist snd_hda_intel, amd76x_edac, "
        "vga16fb, nouveau, rivafb, nvidiafb, rivatv (one `blacklist NAME` per line), then "
        "`sudo update-initramfs -u -k all`", "(三) vfio", (a.Blacklist(BLACKLIST),)),
    # --- area: framebuffer ---
    "fb.iomem": Remedy(
        f"a boot framebuffer holds the GPU's memory; add {FB_OFF} to the kernel command "
        f"line: {GRUB} (run `sudo update-initramfs -u -k all` first)", "(十一)",
        (a.KernelParams(tuple(FB_OFF.split()), replaces=False),)),
    "fb.bar_reserve": Remedy(
        f"vfio-pci cannot reserve a GPU BAR; add {FB_OFF} to the kernel command line: {GRUB} "
        "(run `sudo update-initramfs -u -k all` first)", "(十一)",
        (a.KernelParams(tuple(FB_OFF.split()), replaces=False),)),
    # --- area: net ---
    "net.ip_forward": Remedy(
        "`sudo sh -c 'echo net.ipv4.ip_forward=1 >> /etc/sysctl.conf' && sudo sysctl -p`",
        "(三) 3", (a.Sysctl("net.ipv4.ip_forward", "1"),)),
    "net.br_netfilter": Remedy(
        "`sudo modprobe br_netfilter && sudo sh -c 'echo br_netfilter > "
        "/etc/modules-load.d/br_netfilter.conf'`", "(三) 3", (a.Module("br_netfilter"),)),
    "net.bridge_nf": Remedy(
        "`sudo modprobe br_netfilter`, then `sudo sysctl -w net.bridge.bridge-nf-call-iptables=1 "
        "net.bridge.bridge-nf-call-ip6tables=1` and persist both in /etc/sysctl.conf",
        "(三) vfio", BRIDGE_NF),
    # --- area: storage ---
    "storage.mount": Remedy(
        "on a new, empty disk (mkfs erases DISK): `sudo mkfs.xfs -n ftype=1 -f /dev/DISK && "
        "sudo mount -o pquota /dev/DISK /data`", "(二)"),
    "storage.xfs": Remedy(
        "/data must be XFS: `sudo mkfs.xfs -n ftype=1 -f /dev/DISK` (erases DISK)", "(二)"),
    "storage.ftype": Remedy(
        "re-create the file system with `sudo mkfs.xfs -n ftype=1 -f /dev/DISK` (erases DISK)",
        "(二)"),
    "storage.pquota": Remedy(
        "mount with project quotas: `pquota` in the /etc/fstab options of /data, then "
        "`sudo umount /data && sudo mount -a` (a remount cannot turn quotas on)", "(二)",
        (a.FstabQuota(),)),
    "storage.fstab": Remedy(
        "`echo '/dev/DISK /data xfs pquota 0 1' | sudo tee -a /etc/fstab && sudo mount -a`",
        "(二)", (a.FstabQuota(),)),
    "storage.writable": Remedy("`sudo chmod 777 /data`", "(二)", (a.Chmod("/data", "777"),)),
    "storage.size": Remedy(
        "use a data disk larger than 350 GB for /data (check_env refuses smaller)", "(二)"),
    "host.memory": Remedy(
        "the node needs more than 32 GB of RAM (check_env keeps 32 GB for the host)", "(八)"),
    # --- area: libvirtd ---
    "libvirtd.conf": Remedy(
        "in /etc/libvirt/libvirtd.conf uncomment `listen_tls = 0` and `listen_tcp = 1` and set "
        '`auth_tcp = "none"`, then `sudo systemctl restart libvirtd`', "(四) 1",
        (a.LibvirtdConf("listen_tls", "0"), a.LibvirtdConf("listen_tcp", "1"),
         a.LibvirtdConf("auth_tcp", '"none"'))),
    "libvirtd.args": Remedy(
        'in /etc/default/libvirtd set `libvirtd_opts="-l"` (Ubuntu 20.04) or '
        '`LIBVIRT_ARGS="-l"` (22.04 and later), then `sudo systemctl restart libvirtd`',
        "(四) 1", (a.LibvirtdListenArg(),)),
    "libvirtd.sockets": Remedy(
        "`sudo systemctl mask libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket "
        "libvirtd-tls.socket libvirtd-tcp.socket`", "(四) 1", (a.MaskUnits(SOCKETS),)),
    "libvirtd.service": Remedy(
        "`sudo systemctl restart libvirtd.service && sudo systemctl enable libvirtd.service`",
        "(四) 2", (a.EnableUnit("libvirtd.service"),)),
    "libvirtd.listening": Remedy(
        "libvirtd must listen on TCP 16509: fix libvirtd.conf and /etc/default/libvirtd, mask "
        "the sockets, `sudo systemctl restart libvirtd && sudo systemctl enable libvirtd.service`",
        "(四) 1", (a.EnableUnit("libvirtd.service"), a.Manual())),
    "libvirtd.connect": Remedy(
        "`virsh connect qemu+tcp://localhost:16509/system` must work: check libvirtd.conf "
        "(auth_tcp = \"none\"), `systemctl status libvirtd`, and that KVM is usable", "(四) 3"),
    "libvirtd.kvm": Remedy(
        "libvirt offers no kvm domain type: enable VT-x/AMD-V in the BIOS, `sudo modprobe "
        "kvm_intel` (or kvm_amd), check `kvm-ok`, install qemu-kvm, then "
        "`sudo systemctl restart libvirtd`", "(三) 2"),
    "libvirtd.security": Remedy(
        "unauthenticated libvirt on a public address lets anyone who reaches TCP 16509 control "
        'this host: set `listen_addr = "127.0.0.1"` in /etc/libvirt/libvirtd.conf, or drop '
        "outside traffic: `sudo iptables -I INPUT -p tcp --dport 16509 ! -s 127.0.0.1 -j DROP`",
        "(四) 1"),
    # --- area: virt ---
    "virt.vhost_net": Remedy(
        "`sudo modprobe vhost_net` and add vhost_net to /etc/modules-load.d/vhost_net.conf",
        "(一)", (a.Module("vhost_net"),)),
    "virt.tun": Remedy("`sudo modprobe tun` (and tun in /etc/modules-load.d/tun.conf)", "(一)",
                       (a.Module("tun"),)),
    "virt.cgroups": Remedy(
        "enable the cgroup controller (kernel command line `cgroup_enable=...`) and reboot",
        "(一)"),
    "virt.packages": Remedy(
        "`sudo apt-get install qemu-kvm libvirt-clients libvirt-daemon-system bridge-utils "
        "virt-manager ovmf cpu-checker xfsprogs` (those missing)", "(一)", (a.Packages(),)),
    "virt.default_network": Remedy(
        "`sudo virsh net-define /usr/share/libvirt/networks/default.xml; sudo virsh net-start "
        "default; sudo virsh net-autostart default`", "(四)", (a.LibvirtNetwork("default"),)),
    "virt.ovmf": Remedy("`sudo apt-get install ovmf`", "(一)", (a.Packages(("ovmf",)),)),
    # --- area: dbc ---
    "dbc.process": Remedy(
        "start the dbc node program (see its install folder), or install it as user dbc: "
        "`./install_mining.sh [folder]`", "(五)"),
    "dbc.install_dir": Remedy(
        "install the dbc node program (`./install_mining.sh [folder]` as user dbc), or name its "
        "folder with --dbc-dir", "(五)"),
    "dbc.config": Remedy(
        "repair conf/core.conf in the dbc install folder (key=value lines), or reinstall with "
        "install_mining.sh", "(五)"),
    "dbc.ports": Remedy(
        "in conf/core.conf use net_listen_port in 5000-5100 and a different http_port; a client "
        "node on the same machine needs ports of its own; restart the dbc program", "(五)"),
    "dbc.node_dat": Remedy(
        "dat/node.dat is missing or has no node_id: restore it from your backup (a new one "
        "costs 50% of the stake)", "(七)"),
    "dbc.backup": Remedy(
        "copy dat/node.dat to a safe place (several places), then pass --node-dat-backup PATH",
        "(七)"),
    "dbc.monitor": Remedy(
        "add `dbc_monitor_server=ip:port` and `miner_monitor_server=ip:port` to conf/core.conf "
        "and restart the dbc program", "(十四)"),
    "dbc.broadcast": Remedy(
        "the dbc program must broadcast its status on UDP 255.255.255.255:55555: check that it "
        "runs and that the firewall lets the broadcast out", "(十五)"),
    "dbc.client_view": Remedy(
        "the client node does not know this node: check that the dbc program runs, that its "
        "net_listen_port is reachable, and wait a minute after start", "(十二)"),
    # --- area: images ---
    "images.template": Remedy(
        "download ubuntu.qcow2 (with the test scripts) into /data and check it with "
        "`qemu-img info /data/ubuntu.qcow2`", "(六)"),
    "images.qcow2": Remedy(
        "the image is not a usable qcow2 file (an interrupted download?): download it again "
        "and check it with `qemu-img check /data/ubuntu.qcow2`", "(六)"),
    # --- area: leftovers ---
    "leftovers.domain": Remedy(
        "a test VM is still on the node and blocks rentals: `dbc-accept cleanup` (this tool's "
        "VMs) or `./check_env --localip VM_IP` (check_env's domain_test)", "(九)"),
    "leftovers.disk": Remedy(
        "remove the stale test disk once no VM uses it, e.g. `sudo rm "
        "/data/ubuntu_domain_test.qcow2 /data/data_1_domain_test.qcow2` (check_env's), or run "
        "`dbc-accept cleanup` (this tool's)", "(九)"),
    # --- area: bench ---
    "bench.throughput": Remedy(
        "the GPU is slower than its model should be: check `nvidia-smi -q -d PERFORMANCE,POWER,"
        "TEMPERATURE,CLOCK` for throttling (power cap, heat, HW slowdown), that the card runs "
        "at its full PCIe width and generation, and that no other process uses it"),
    "bench.spread": Remedy(
        "the throughput drifts or jumps during the run: look for other work on the GPU or "
        "CPU (`nvidia-smi`, `top`), clocks that sag under load (`nvidia-smi -q -d "
        "PERFORMANCE,CLOCK`: thermal or power throttling), or a CPU too weak to feed the GPU"),
    "bench.scaling": Remedy(
        "the GPUs lose much of their speed when they train together: check the links between "
        "them (`nvidia-smi topo -m`: NV# or PIX, not SYS; `nvidia-smi nvlink -s`), that P2P "
        "works (the in-guest test_p2p_access), the PCIe width of each card, and that NCCL "
        "does not fall back to sockets (`NCCL_DEBUG=INFO`)"),
    "bench.run": Remedy(
        "the model could not run: read the error; out-of-memory at batch 1, a driver or "
        "CUDA error (`dmesg | grep -i xid`) point at the GPU or its driver"),
    "bench.missing": Remedy(
        "the benchmark probe stopped before this model: read its last error lines above "
        "(a crash, the time limit, or a GPU fault: `dmesg | grep -i xid`)"),
    "bench.software": Remedy(
        "install PyTorch and torchvision {in_guest} (`pip3 install torch torchvision`, "
        "matching its CUDA); the in-guest tests need them"),
    # --- area: guest ---
    "guest.python": Remedy(
        "install python3 (>= 3.8) {in_guest} for the in-guest tests: "
        "`sudo apt-get install python3`"),
    "guest.cpu": Remedy(
        "{guest} has too few CPU cores for its GPUs: add CPU cores to the node (the dbc "
        "program sizes a rental VM from the host's cores) or rent out fewer GPUs per machine",
        "(八)"),
    "guest.memory": Remedy(
        "{guest} has too little RAM for its GPUs: add RAM to the node (check_env gives a "
        "rental VM (host RAM - 32 GB) x its share of the GPUs)", "(八)"),
    "guest.disk": Remedy(
        "the system disk of {guest} is too small: use a larger image (`qemu-img resize`) or a "
        "larger /data so the dbc program gives VMs bigger disks", "(二)"),
    "guest.gpu_count": Remedy(
        "a GPU {guest} should show is missing: check `lspci -nn | grep -i nvidia` and "
        "`dmesg | grep -iE 'nvrm|xid'` on {guest} (for a VM also the host's vfio-pci binding "
        "and IOMMU group); reseat or replace the GPU if the host does not show it either",
        "(三) vfio"),
    "guest.gpu_model": Remedy(
        "{guest} shows another GPU model than expected: check the card itself (`lspci -nn` on "
        "the host) and, for a VM, which PCI functions it got (`virsh dumpxml`)"),
    "guest.driver": Remedy(
        "install the NVIDIA driver {in_guest} and load it (`sudo apt-get install "
        "nvidia-driver-<version>` then reboot; `nvidia-smi` must list the GPUs); with the "
        "driver installed, `dmesg | grep NVRM` says why it did not load"),
    "guest.nvml": Remedy(
        "NVML does not answer: the driver's user-space and kernel parts must match (reinstall "
        "the driver, reboot); `nvidia-smi` must work; for pynvml: `pip3 install nvidia-ml-py`"),
    "guest.cuda": Remedy(
        "install a CUDA build of PyTorch that the driver supports (`pip3 install torch` from "
        "pytorch.org's index for your CUDA version); check `nvidia-smi` first"),
    "guest.gpu_in_use": Remedy(
        "something else uses the GPU (processes, memory or compute): stop it (`nvidia-smi` "
        "lists them; `kill PID`), or rent out only GPUs nothing else uses: a GPU shared with "
        "other work gives the renter part of a GPU"),
    "guest.burn_rate": Remedy(
        "the GPU computes slower than its model: another process shares it (`nvidia-smi`), or "
        "clocks or power are held down (the burn's clocks, power and throttle reasons say "
        "which: check cooling, power cables, `nvidia-smi -q -d PERFORMANCE,POWER`)"),
    "guest.vram": Remedy(
        "the GPU shows less memory than its model has: another process holds it, or the card "
        "is faulty or a different model; compare `nvidia-smi -q -d MEMORY` with the datasheet "
        "and contact the vendor"),
    "guest.pcie": Remedy(
        "the GPU's link trains below its maximum under load: reseat the GPU, use a x16 slot "
        "at the GPU's generation (check BIOS PCIe settings and risers), clean the contacts; "
        "`nvidia-smi -q -d PCIE` shows the link"),
    "guest.ecc": Remedy(
        "turn ECC on: `sudo nvidia-smi -e 1` on the host or guest, then reset the GPU or "
        "reboot"),
    "guest.ecc_errors": Remedy(
        "the GPU's memory reports uncorrectable errors: reset the GPU or reboot, run the "
        "memory test again; if they return, replace the GPU (contact the vendor, RMA)"),
    "guest.row_remap": Remedy(
        "the GPU ran out of spare memory rows: it must be replaced (contact the vendor, RMA)"),
    "guest.remap_pending": Remedy(
        "a memory row remap or page retirement waits for a GPU reset: reboot the node (or "
        "`sudo nvidia-smi -r` on an idle GPU), then run again"),
    "guest.xid": Remedy(
        "the driver logged GPU errors (Xid): look them up in NVIDIA's Xid catalog; 48/63/64/"
        "92/94/95 are memory, 79 a GPU off the bus (reseat, check power cables and PSU), "
        "13/31/43 usually a program; reboot and run again, replace the GPU if they return"),
    "guest.throttle": Remedy(
        "the GPU slows down for heat or power: check the fans and airflow, the room "
        "temperature, the power cables and the PSU's capacity; `nvidia-smi -q -d "
        "PERFORMANCE` shows the reasons"),
    "guest.display": Remedy(
        "DBC's display check expects one display device per GPU: attach a display or a dummy "
        "HDMI/DP plug to each GPU"),
    "guest.matmul": Remedy(
        "the GPU computes wrong products: reset the GPU or reboot and run again; if it "
        "repeats, replace the GPU (contact the vendor)"),
    "guest.training": Remedy(
        "training failed or diverged on this GPU while others agree: run the stress and "
        "memory tests, check `dmesg | grep -i xid`; replace the GPU if it repeats"),
    "guest.inference": Remedy(
        "this GPU's outputs differ from the CPU's: run the stress and memory tests, check "
        "`dmesg | grep -i xid`; replace the GPU if it repeats"),
    "guest.ddp": Remedy(
        "multi-GPU training does not match one GPU: check NCCL (`NCCL_DEBUG=INFO`), the "
        "GPUs' PCIe/NVLink links (`nvidia-smi topo -m`) and the Xid lines of the kernel log"),
    "guest.p2p": Remedy(
        "GPUs cannot reach each other's memory: on bare metal enable P2P/ACS settings in the "
        "BIOS; for VMs pass the GPUs with their PCIe switch, or accept slower multi-GPU "
        "traffic through host memory (`nvidia-smi topo -m` shows the paths)"),
    "guest.allreduce": Remedy(
        "NCCL all-reduce gives wrong sums: check `nvidia-smi topo -m`, NVLink health "
        "(`nvidia-smi nvlink -e`), the Xid lines of the kernel log; replace the faulty GPU"),
    "guest.vram_pattern": Remedy(
        "GPU memory reads back wrong: reset the GPU or reboot and run again; if it repeats "
        "the GPU must be replaced (contact the vendor, RMA)"),
    "guest.vram_speed": Remedy(
        "GPU memory passes run slower than half the copy rate the GPU itself reached: check "
        "that no other process uses the GPU (`nvidia-smi`) and the clocks and throttle "
        "reasons (`nvidia-smi -q -d PERFORMANCE`), then run again"),
    "guest.stress": Remedy(
        "results changed under sustained load: check cooling and power (fans, cables, PSU) "
        "and run again; a GPU that keeps failing must be replaced"),
    "guest.transfer": Remedy(
        "copies are slow: check the PCIe slot (x16 at the GPU's generation, no riser), the "
        "BIOS (Above 4G decoding, ASPM off), the NUMA placement of the CPUs that feed the GPU, "
        "and that no other work runs on the GPU"),
    # --- area: vm ---
    "vm.gpu_busy": Remedy(
        "the GPU belongs to another VM (perhaps a renter's): choose other GPUs with --gpus, or "
        "run the test when the node is idle"),
    "vm.virt_type": Remedy(
        "run the passthrough VM with --vm-virt-type kvm (a node has VT-x/AMD-V and /dev/kvm), "
        "or test the VM without GPUs under software emulation: --vm-virt-type qemu --gpus 0"),
    "vm.gpu_returned": Remedy(
        "the GPU must be on vfio-pci before the node rents it again: `echo BDF | sudo tee "
        "/sys/bus/pci/devices/BDF/driver/unbind; echo vfio-pci | sudo tee "
        "/sys/bus/pci/devices/BDF/driver_override; echo BDF | sudo tee /sys/bus/pci/drivers_probe`"
        " for each function named, or reboot (vfio-pci.ids= binds it at boot)", "(三) vfio"),
    "vm.boot": Remedy(
        "the test VM did not come up: read the serial console log above; check the image, "
        "the `default` network (`virsh net-list --all`) and the GPU passthrough"),
    "vm.ssh": Remedy(
        "check the login of {guest}: user and password (--vm-user, --vm-password) or key "
        "(--vm-key), and that sshd runs there"),
    "vm.cleanup": Remedy(
        "run `dbc-accept cleanup` (it removes only domains tagged by this tool and their "
        "dbc-accept-*.qcow2 overlays); a domain of the same name without the tag is not this "
        "tool's: look at it with `virsh dumpxml NAME` before removing it by hand"),
}


def remedy_for(check_id: str, lang: str | None = None) -> str:
    """The fix text for a check id in ``lang`` (default: the run's language)."""
    from dbc_accept.remedies_zh import FIXES_ZH, NO_REMEDY_ZH

    zh = (lang or current()) == "zh"
    if check_id in REMEDIES:
        return REMEDIES[check_id].text("zh" if zh else "en", FIXES_ZH[check_id] if zh else "")
    return NO_REMEDY_ZH if zh else "see the install guide and the README's 'Reading a failure'"


def localized(check_id: str, fix: str, lang: str | None = None) -> str:
    """A finding's fix (kept in English) in ``lang`` when it is its check's own remedy."""
    lang = lang or current()
    return fix if lang == "en" or fix != remedy_for(check_id, "en") else remedy_for(check_id, lang)
