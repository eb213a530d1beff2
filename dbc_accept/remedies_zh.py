"""The fixes of dbc_accept.remedies in Chinese, keyed by the same check ids.

The words follow the install guide ("安装 DBC 算力节点"). Commands, paths, option names and
code in backticks are byte for byte those of the English text (a selftest compares them);
{guest} and {in_guest} are filled in as in English (dbc_accept.messages.fill).
"""

from __future__ import annotations

from dbc_accept.remedies import FB_OFF

GRUB = ("编辑 /etc/default/grub 中的 GRUB_CMDLINE_LINUX_DEFAULT，然后执行 "
        "`sudo update-grub && sudo reboot`")
INITRAMFS = "`sudo update-initramfs -u -k all`"

NO_REMEDY_ZH = "请查阅安装指南和 README 中的 “Reading a failure” 一节"

FIXES_ZH: dict[str, str] = {
    # --- host ---
    "node.reachable": (
        "检查节点的地址、端口和密钥，以及节点上 sshd 是否在运行（`ssh -p PORT root@NODE true`）；"
        "网络较慢时调大 --node-connect-timeout / --node-timeout"),
    "host.systemd": (
        "节点须运行以 systemd 正常启动的发行版（Ubuntu 20.04/22.04 server）：libvirtd 和 dbc "
        "程序都作为 systemd 服务运行"),
    "os.release": "安装 Ubuntu 20.04 或 22.04 server 版本",
    # --- cpu ---
    "cpu.virt_flags": "在 BIOS/UEFI 设置中开启 VT-x（Intel）或 SVM/AMD-V（AMD）",
    "cpu.kvm_device": (
        "在 BIOS 中开启 VT-x/AMD-V，然后执行 `sudo modprobe kvm_intel`（AMD 平台为 kvm_amd）；"
        "`kvm-ok` 须显示 'KVM acceleration can be used'"),
    "cpu.ignore_msrs": f"在内核启动参数中添加 kvm.ignore_msrs=1：{GRUB}",
    # --- iommu ---
    "iommu.firmware": (
        "在 BIOS/UEFI 设置中开启 VT-d（Intel：Processor > IIO Configuration > Intel VT for "
        "Directed I/O）或 AMD-Vi/IOMMU"),
    "iommu.cmdline": (
        f"在内核启动参数中添加 intel_iommu=on（AMD 平台为 amd_iommu=on）iommu=pt：{GRUB}"),
    "iommu.passthrough": (
        "在内核启动参数中添加 iommu=pt（同时需要 intel_iommu=on，AMD 平台为 "
        f"amd_iommu=on）：{GRUB}"),
    "iommu.groups": (
        f"在 BIOS 中开启 VT-d/AMD-Vi，并添加 intel_iommu=on（或 amd_iommu=on）iommu=pt：{GRUB}"),
    # --- gpu ---
    "gpu.present": (
        "安装好显卡并用 `lspci -nn | grep -i nvidia` 检查；没有 NVIDIA 显卡的节点无法出租显卡"),
    "gpu.vfio_bound": (
        "开机时把每个 NVIDIA 显卡 id（`lspci -nn | grep NVIDIA`，例如 10de:2231,10de:1aef）交给 "
        "vfio-pci：在 /etc/modprobe.d/vfio.conf 中写入 `options vfio-pci ids=...` 并执行 "
        f"`sudo update-initramfs -u -k all`（或在内核启动参数中添加 vfio-pci.ids=... 和 "
        f"rd.driver.pre=vfio-pci：{GRUB}）；立即绑定：`echo vfio-pci > "
        "/sys/bus/pci/devices/BDF/driver_override`，解绑后执行 `echo BDF > "
        "/sys/bus/pci/drivers_probe`"),
    "gpu.iommu_group": (
        "显卡所在 IOMMU 组中的每个设备都必须交给虚拟机：同样绑定到 vfio-pci（把它的 id 加入 "
        "vfio-pci.ids=），或把显卡换到独占一个 IOMMU 组的插槽"),
    "gpu.vfio_persistent": (
        "重启后绑定会丢失：在内核启动参数中添加 vfio-pci.ids=<ids>"
        f"（{GRUB}），或在 /etc/modprobe.d/vfio.conf 中写入 `options vfio-pci ids=<ids>`"
        f"（然后执行 {INITRAMFS}）"),
    # --- drivers ---
    "drivers.not_loaded": (
        f"在 /etc/modprobe.d/blacklist.conf 中把该驱动加入黑名单，执行 {INITRAMFS} 后重启"),
    "drivers.blacklist": (
        "在 /etc/modprobe.d/blacklist.conf 末尾添加黑名单：snd_hda_intel、amd76x_edac、vga16fb、"
        "nouveau、rivafb、nvidiafb、rivatv（每行一条 `blacklist NAME`），然后执行 "
        f"{INITRAMFS}"),
    # --- framebuffer ---
    "fb.iomem": (
        f"开机帧缓冲（framebuffer）占用了显卡的内存；在内核启动参数中添加 {FB_OFF}：{GRUB}"
        f"（先执行 {INITRAMFS}）"),
    "fb.bar_reserve": (
        f"vfio-pci 无法保留显卡的 BAR；在内核启动参数中添加 {FB_OFF}：{GRUB}"
        f"（先执行 {INITRAMFS}）"),
    # --- net ---
    "net.ip_forward": (
        "开启 ip_forward 转发："
        "`sudo sh -c 'echo net.ipv4.ip_forward=1 >> /etc/sysctl.conf' && sudo sysctl -p`"),
    "net.br_netfilter": (
        "加载 br_netfilter 并设为开机加载："
        "`sudo modprobe br_netfilter && sudo sh -c 'echo br_netfilter > "
        "/etc/modules-load.d/br_netfilter.conf'`"),
    "net.bridge_nf": (
        "执行 `sudo modprobe br_netfilter`，然后执行 `sudo sysctl -w "
        "net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1`，"
        "并把这两项写入 /etc/sysctl.conf 持久保存"),
    # --- storage ---
    "storage.mount": (
        "在一块新的空硬盘上（mkfs 会清空 DISK）：`sudo mkfs.xfs -n ftype=1 -f /dev/DISK && "
        "sudo mount -o pquota /dev/DISK /data`"),
    "storage.xfs": "/data 必须是 XFS：`sudo mkfs.xfs -n ftype=1 -f /dev/DISK`（会清空 DISK）",
    "storage.ftype": "重新创建文件系统：`sudo mkfs.xfs -n ftype=1 -f /dev/DISK`（会清空 DISK）",
    "storage.pquota": (
        "以项目配额挂载：在 /etc/fstab 中 /data 的挂载选项里加上 `pquota`，然后执行 "
        "`sudo umount /data && sudo mount -a`（remount 无法开启配额）"),
    "storage.fstab": (
        "把 /data 写入 /etc/fstab："
        "`echo '/dev/DISK /data xfs pquota 0 1' | sudo tee -a /etc/fstab && sudo mount -a`"),
    "storage.writable": "让 /data 可写：`sudo chmod 777 /data`",
    "storage.size": "/data 请使用大于 350 GB 的数据盘（更小的数据盘 check_env 会拒绝）",
    "host.memory": "节点需要 32 GB 以上内存（check_env 为宿主机保留 32 GB）",
    # --- libvirtd ---
    "libvirtd.conf": (
        "在 /etc/libvirt/libvirtd.conf 中去掉 `listen_tls = 0` 和 `listen_tcp = 1` 开头的 #，"
        '并设置 `auth_tcp = "none"`，然后执行 `sudo systemctl restart libvirtd`'),
    "libvirtd.args": (
        '在 /etc/default/libvirtd 中设置 `libvirtd_opts="-l"`（Ubuntu 20.04）或 '
        '`LIBVIRT_ARGS="-l"`（22.04 及以上版本），然后执行 `sudo systemctl restart libvirtd`'),
    "libvirtd.sockets": (
        "屏蔽（mask）libvirtd 的各个 socket：`sudo systemctl mask libvirtd.socket "
        "libvirtd-ro.socket libvirtd-admin.socket "
        "libvirtd-tls.socket libvirtd-tcp.socket`"),
    "libvirtd.service": (
        "重启 libvirtd 服务并设置开机自启："
        "`sudo systemctl restart libvirtd.service && sudo systemctl enable libvirtd.service`"),
    "libvirtd.listening": (
        "libvirtd 必须监听 TCP 16509：改好 libvirtd.conf 和 /etc/default/libvirtd，mask 各个 "
        "socket，然后执行 `sudo systemctl restart libvirtd && sudo systemctl enable "
        "libvirtd.service`"),
    "libvirtd.connect": (
        "`virsh connect qemu+tcp://localhost:16509/system` 必须能连上：检查 libvirtd.conf"
        '（auth_tcp = "none"）、`systemctl status libvirtd`，以及 KVM 是否可用'),
    "libvirtd.kvm": (
        "libvirt 不提供 kvm 类型的虚拟机：在 BIOS 中开启 VT-x/AMD-V，执行 `sudo modprobe "
        "kvm_intel`（AMD 平台为 kvm_amd），用 `kvm-ok` 检查，安装 qemu-kvm，然后执行 "
        "`sudo systemctl restart libvirtd`"),
    "libvirtd.security": (
        "在公网地址上开放无认证的 libvirt，任何能访问 TCP 16509 的人都能控制这台主机：在 "
        '/etc/libvirt/libvirtd.conf 中设置 `listen_addr = "127.0.0.1"`，或丢弃外部流量：'
        "`sudo iptables -I INPUT -p tcp --dport 16509 ! -s 127.0.0.1 -j DROP`"),
    # --- virt ---
    "virt.vhost_net": (
        "执行 `sudo modprobe vhost_net`，并把 vhost_net 写入 /etc/modules-load.d/vhost_net.conf"),
    "virt.tun": "执行 `sudo modprobe tun`（并把 tun 写入 /etc/modules-load.d/tun.conf）",
    "virt.cgroups": "开启该 cgroup 控制器（内核启动参数 `cgroup_enable=...`）并重启",
    "virt.packages": (
        "`sudo apt-get install qemu-kvm libvirt-clients libvirt-daemon-system bridge-utils "
        "virt-manager ovmf cpu-checker xfsprogs`（安装缺少的软件包）"),
    "virt.default_network": (
        "定义并启动 libvirt 的 default 网络，设为自动启动："
        "`sudo virsh net-define /usr/share/libvirt/networks/default.xml; sudo virsh net-start "
        "default; sudo virsh net-autostart default`"),
    "virt.ovmf": "安装 OVMF（虚拟机的 UEFI 固件）：`sudo apt-get install ovmf`",
    # --- dbc ---
    "dbc.process": (
        "启动 dbc 功能节点程序（见其安装目录），或以 dbc 用户安装："
        "`./install_mining.sh [folder]`"),
    "dbc.install_dir": (
        "以 dbc 用户安装 dbc 功能节点程序（`./install_mining.sh [folder]`），或用 --dbc-dir "
        "指定其安装目录"),
    "dbc.config": (
        "修复 dbc 安装目录下的 conf/core.conf（每行 key=value），或用 install_mining.sh 重新安装"),
    "dbc.ports": (
        "在 conf/core.conf 中把 net_listen_port 设在 5000-5100 之间，http_port 用另一个端口；"
        "同一台机器上的客户端节点需要自己的端口；然后重启 dbc 程序"),
    "dbc.node_dat": (
        "dat/node.dat 缺失或没有 node_id：从备份恢复（重新生成会损失 50% 的质押币）"),
    "dbc.backup": (
        "把 dat/node.dat 复制到安全的位置（多处备份），然后加上 --node-dat-backup PATH"),
    "dbc.monitor": (
        "在 conf/core.conf 中添加 `dbc_monitor_server=ip:port` 和 `miner_monitor_server=ip:port`，"
        "然后重启 dbc 程序"),
    "dbc.broadcast": (
        "dbc 程序必须在 UDP 255.255.255.255:55555 上广播状态：检查它是否在运行，以及防火墙是否"
        "放行该广播"),
    "dbc.client_view": (
        "客户端节点不认识这个节点：检查 dbc 程序是否在运行、其 net_listen_port 是否可访问，"
        "启动后请等待一分钟"),
    # --- images ---
    "images.template": (
        "把 ubuntu.qcow2（带测试脚本的版本）下载到 /data，并用 "
        "`qemu-img info /data/ubuntu.qcow2` 检查"),
    "images.qcow2": (
        "该镜像不是可用的 qcow2 文件（下载中断？）：重新下载，并用 "
        "`qemu-img check /data/ubuntu.qcow2` 检查"),
    # --- leftovers ---
    "leftovers.domain": (
        "节点上还留有测试虚拟机，会妨碍出租：执行 `dbc-accept cleanup`（本工具的虚拟机）或 "
        "`./check_env --localip VM_IP`（check_env 的 domain_test）"),
    "leftovers.disk": (
        "确认没有虚拟机使用后删除残留的测试磁盘，例如 `sudo rm "
        "/data/ubuntu_domain_test.qcow2 /data/data_1_domain_test.qcow2`（check_env 的），"
        "或执行 `dbc-accept cleanup`（本工具的）"),
    # --- bench ---
    "bench.throughput": (
        "显卡比同型号应有的速度慢：用 `nvidia-smi -q -d PERFORMANCE,POWER,TEMPERATURE,CLOCK` "
        "检查是否降频（功率上限、过热、HW slowdown），显卡是否以满 PCIe 宽度和代数运行，"
        "以及有没有其他进程在使用它"),
    "bench.spread": (
        "运行期间吞吐量漂移或跳变：检查显卡或 CPU 上是否有其他任务（`nvidia-smi`、`top`），"
        "负载下时钟是否下降（`nvidia-smi -q -d PERFORMANCE,CLOCK`：过热或功率降频），或 CPU "
        "太弱喂不饱显卡"),
    "bench.scaling": (
        "多卡一起训练时每张卡损失了很多速度：检查卡间连接（`nvidia-smi topo -m`：应为 NV# 或 "
        "PIX，而不是 SYS；`nvidia-smi nvlink -s`）、P2P 是否可用（in-guest 测试 "
        "test_p2p_access）、每张卡的 PCIe 宽度，以及 NCCL 有没有退回到 socket 通信"
        "（`NCCL_DEBUG=INFO`）"),
    "bench.run": (
        "模型无法运行：阅读错误信息；batch 为 1 时显存不足、驱动或 CUDA 错误"
        "（`dmesg | grep -i xid`）都指向显卡或其驱动"),
    "bench.missing": (
        "基准测试探针在这个模型之前就停止了：阅读上面最后的错误行"
        "（崩溃、超时或显卡故障：`dmesg | grep -i xid`）"),
    "bench.software": (
        "{in_guest}安装 PyTorch 和 torchvision（`pip3 install torch torchvision`，与其 CUDA "
        "版本匹配）；in-guest 测试需要它们"),
    # --- guest ---
    "guest.python": (
        "{in_guest}安装 python3（>= 3.8）供 in-guest 测试使用：`sudo apt-get install python3`"),
    "guest.cpu": (
        "{guest}的 CPU 核数相对其显卡数量不足：给节点增加 CPU 核（dbc 程序按宿主机的核数分配"
        "租用虚拟机的 vCPU），或每台机器出租更少的显卡"),
    "guest.memory": (
        "{guest}的内存相对其显卡数量不足：给节点加内存（check_env 给租用虚拟机的内存为"
        "（宿主机内存 - 32 GB）× 其所占显卡的比例）"),
    "guest.disk": (
        "{guest}的系统盘太小：使用更大的镜像（`qemu-img resize`）或更大的 /data，"
        "让 dbc 程序给虚拟机分配更大的磁盘"),
    "guest.gpu_count": (
        "{guest}应有的一张显卡不见了：在{guest}上检查 `lspci -nn | grep -i nvidia` 和 "
        "`dmesg | grep -iE 'nvrm|xid'`（虚拟机还要检查宿主机上的 vfio-pci 绑定和 IOMMU 组）；"
        "如果宿主机上也看不到这张卡，请重新插好或更换显卡"),
    "guest.gpu_model": (
        "{guest}显示的显卡型号与预期不同：检查显卡本身（在宿主机上执行 `lspci -nn`），"
        "若是虚拟机，再检查它分到了哪些 PCI 功能（`virsh dumpxml`）"),
    "guest.driver": (
        "{in_guest}安装并加载 NVIDIA 驱动（`sudo apt-get install nvidia-driver-<version>` 后"
        "重启；`nvidia-smi` 须列出显卡）；已安装驱动时，`dmesg | grep NVRM` 会说明未加载的原因"),
    "guest.nvml": (
        "NVML 无响应：驱动的用户态和内核部分必须一致（重装驱动并重启）；`nvidia-smi` 须能运行；"
        "pynvml 需要：`pip3 install nvidia-ml-py`"),
    "guest.cuda": (
        "安装驱动所支持的 CUDA 版 PyTorch（从 pytorch.org 对应 CUDA 版本的源执行 "
        "`pip3 install torch`）；先检查 `nvidia-smi`"),
    "guest.gpu_in_use": (
        "有其他程序在使用显卡（进程、显存或算力）：停掉它们（`nvidia-smi` 会列出；"
        "`kill PID`），或只出租没有其他任务使用的显卡：与其他任务共用的显卡只能给租户一部分算力"),
    "guest.burn_rate": (
        "显卡计算速度低于同型号应有水平：有其他进程共用它（`nvidia-smi`），或时钟、功率被压低"
        "（压力测试给出的时钟、功率和降频原因会说明：检查散热、电源线，"
        "`nvidia-smi -q -d PERFORMANCE,POWER`）"),
    "guest.vram": (
        "显卡显示的显存少于该型号应有的容量：有其他进程占用，或显卡有故障、型号不同；把 "
        "`nvidia-smi -q -d MEMORY` 与规格书对比，并联系供应商"),
    "guest.pcie": (
        "显卡在负载下的链路低于其最高规格：重新插好显卡，使用符合显卡代数的 x16 插槽"
        "（检查 BIOS 的 PCIe 设置和转接卡），清洁金手指；`nvidia-smi -q -d PCIE` 可查看链路"),
    "guest.ecc": "开启 ECC：在宿主机或虚拟机中执行 `sudo nvidia-smi -e 1`，然后重置显卡或重启",
    "guest.ecc_errors": (
        "显卡显存报告了不可纠正的错误：重置显卡或重启后再跑一次显存测试；如果错误再次出现，"
        "请更换显卡（联系供应商，RMA）"),
    "guest.row_remap": "显卡的备用显存行已用完：必须更换（联系供应商，RMA）",
    "guest.remap_pending": (
        "显存行重映射或页退役正等待显卡重置：重启节点（或对空闲显卡执行 "
        "`sudo nvidia-smi -r`），然后再运行一次"),
    "guest.xid": (
        "驱动记录了显卡错误（Xid）：在 NVIDIA 的 Xid 列表中查询；48/63/64/92/94/95 是显存问题，"
        "79 表示显卡掉卡（重新插好，检查电源线和电源），13/31/43 通常是程序问题；"
        "重启后再运行一次，如果错误再次出现请更换显卡"),
    "guest.throttle": (
        "显卡因过热或功率而降频：检查风扇和风道、机房温度、电源线和电源容量；"
        "`nvidia-smi -q -d PERFORMANCE` 会显示原因"),
    "guest.display": (
        "DBC 的显示检查要求每张显卡有一个显示设备：给每张显卡接上显示器或 HDMI/DP 诱骗器"
        "（假负载）"),
    "guest.matmul": (
        "显卡算出的乘积有误：重置显卡或重启后再运行一次；如果仍然出错，请更换显卡（联系供应商）"),
    "guest.training": (
        "这张显卡上的训练失败或发散，而其他显卡结果一致：运行压力和显存测试，检查 "
        "`dmesg | grep -i xid`；如果反复出现请更换显卡"),
    "guest.inference": (
        "这张显卡的输出与 CPU 的不同：运行压力和显存测试，检查 `dmesg | grep -i xid`；"
        "如果反复出现请更换显卡"),
    "guest.ddp": (
        "多卡训练的结果与单卡不一致：检查 NCCL（`NCCL_DEBUG=INFO`）、显卡之间的 PCIe/NVLink 连接"
        "（`nvidia-smi topo -m`）以及内核日志中的 Xid 行"),
    "guest.p2p": (
        "显卡之间无法直接访问彼此的显存：裸机上在 BIOS 中开启 P2P/ACS 相关设置；虚拟机要连同 "
        "PCIe 交换芯片一起直通，或接受多卡通信经宿主机内存中转而变慢"
        "（`nvidia-smi topo -m` 显示通路）"),
    "guest.allreduce": (
        "NCCL all-reduce 求和结果错误：检查 `nvidia-smi topo -m`、NVLink 健康状况"
        "（`nvidia-smi nvlink -e`）和内核日志中的 Xid 行；更换有故障的显卡"),
    "guest.vram_pattern": (
        "显存读回的数据有误：重置显卡或重启后再运行一次；如果仍然出错，必须更换显卡"
        "（联系供应商，RMA）"),
    "guest.vram_speed": (
        "显存读写速度不到显卡自身拷贝速度的一半：检查是否有其他进程使用显卡（`nvidia-smi`）"
        "以及时钟和降频原因（`nvidia-smi -q -d PERFORMANCE`），然后再运行一次"),
    "guest.stress": (
        "持续负载下计算结果发生变化：检查散热和供电（风扇、电源线、电源）后再运行一次；"
        "一直出错的显卡必须更换"),
    "guest.transfer": (
        "拷贝速度慢：检查 PCIe 插槽（符合显卡代数的 x16，不用转接卡）、BIOS（开启 Above 4G "
        "decoding，关闭 ASPM）、为显卡供数的 CPU 的 NUMA 位置，以及显卡上是否有其他任务"),
    # --- vm ---
    "vm.gpu_busy": (
        "这张显卡属于另一台虚拟机（可能是租户的）：用 --gpus 选择其他显卡，或在节点空闲时测试"),
    "vm.virt_type": (
        "直通显卡的虚拟机请用 --vm-virt-type kvm 运行（节点有 VT-x/AMD-V 和 /dev/kvm），"
        "或在软件模拟下测试不带显卡的虚拟机：--vm-virt-type qemu --gpus 0"),
    "vm.gpu_returned": (
        "节点再次出租前，显卡必须回到 vfio-pci：对列出的每个 PCI 功能执行 `echo BDF | sudo tee "
        "/sys/bus/pci/devices/BDF/driver/unbind; echo vfio-pci | sudo tee "
        "/sys/bus/pci/devices/BDF/driver_override; echo BDF | sudo tee /sys/bus/pci/drivers_probe`"
        "，或重启（vfio-pci.ids= 会在开机时绑定）"),
    "vm.boot": (
        "测试虚拟机没有启动起来：阅读上面的串口控制台日志；检查镜像、`default` 网络"
        "（`virsh net-list --all`）和显卡直通"),
    "vm.ssh": (
        "检查{guest}的登录信息：用户名和密码（--vm-user、--vm-password）或密钥（--vm-key），"
        "以及那里的 sshd 是否在运行"),
    "vm.cleanup": (
        "执行 `dbc-accept cleanup`（它只删除本工具标记的虚拟机及其 dbc-accept-*.qcow2 "
        "overlay 磁盘）；同名但没有标记的虚拟机不属于本工具：先用 `virsh dumpxml NAME` "
        "查看，再手动删除"),
}
