"""Add the files of /data, libvirtd, virt parity, the dbc node and images to the base snapshots.

Run `python selftests/make_snapshots_hostb.py` after changing what those host checks read
(a command's argv changes its file name under cmd/). It writes only the files listed here
into selftests/data/snapshots/{intel-2204-4gpu,amd-2004-1gpu}; the other areas' files are
left alone. Both nodes are correct: /data is a 2 TB XFS disk with prjquota, libvirtd is set
up as the guide says (plus listen_addr 127.0.0.1), the dbc compute node runs from
/home/dbc/dbc_repo, ubuntu.qcow2 is in /data and nothing is left over. node.dat holds
redaction markers, as a captured snapshot does; selftests/data/hostb/node.dat is its backup.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from dbc_accept.facts.dbcnode import PRIVATE_KEYS
from dbc_accept.facts.images import HEADER_BYTES
from dbc_accept.facts.libvirtconn import DEFAULT_URI, PROBE
from dbc_accept.facts.libvirtd import SOCKETS
from dbc_accept.facts.storage import WRITE_PROBE
from dbc_accept.secrecy import SHA256_PREFIX
from dbc_accept.snapshot import command_slug

HERE = Path(__file__).parent
DATA = HERE / "data" / "hostb"
SNAPSHOTS = HERE / "data" / "snapshots"
DBC_DIR = "/home/dbc/dbc_repo"
DBC_PID = 2417
TB2 = 2_000_263_643_136  # a 2 TB disk as XFS reports it
LISTEN = "0A"

PACKAGE_STANZA = """\
Package: {name}
Status: install ok installed
Priority: optional
Section: {section}
Installed-Size: 1024
Maintainer: Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>
Architecture: {arch}
Version: {version}
Description: {name}
"""


@dataclass
class NodeB:
    name: str
    version_id: str
    mem_kb: int
    cgroup_v2: bool
    libvirt_version: int
    qemu_version: int
    packages: dict[str, str]  # name -> version


def fs_path(root: Path, host_path: str) -> Path:
    return root / "fs" / host_path.lstrip("/")


def write(root: Path, host_path: str, data: str | bytes) -> None:
    path = fs_path(root, host_path)
    if path.is_symlink() or path.is_file():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")


def link(root: Path, host_path: str, dest: str) -> None:
    path = fs_path(root, host_path)
    if path.is_symlink() or path.is_file():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(dest, path)


def command(root: Path, argv: list[str], stdout: str, rc: int = 0, stderr: str = "") -> None:
    path = root / "cmd" / f"{command_slug(argv)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"argv": argv, "rc": rc, "stdout": stdout, "stderr": stderr}
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def tcp_line(n: int, addr: str, port: int, state: str = LISTEN, inode: int = 0) -> str:
    octets = [int(o) for o in addr.split(".")]
    hex_addr = "".join(f"{o:02X}" for o in reversed(octets))
    return (f"{n:4d}: {hex_addr}:{port:04X} 00000000:0000 {state} 00000000:00000000 "
            f"00:00000000 00000000     0        0 {inode or 30000 + n} 1 0000000000000000 "
            "100 0 0 10 0\n")


TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   "
              "uid  timeout inode\n")
TCP6_HEADER = ("  sl  local_address                         remote_address                        "
               "st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")


def proc_net_tcp(listeners: list[tuple[str, int]]) -> str:
    return TCP_HEADER + "".join(tcp_line(i, a, p) for i, (a, p) in enumerate(listeners))


def od_output(data: bytes) -> str:
    """What `od -An -v -tx1` prints for ``data``."""
    rows = [data[i:i + 16] for i in range(0, len(data), 16)]
    return "".join(" " + " ".join(f"{b:02x}" for b in row) + "\n" for row in rows)


def od_argv(path: str) -> list[str]:
    return ["od", "-An", "-v", "-tx1", "-N", str(HEADER_BYTES), "--", path]


def probe_doc(node: NodeB, **changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "connected": True, "domain_types": ["kvm", "qemu"], "lib_version": node.libvirt_version,
        "hv_version": node.qemu_version, "hv_type": "QEMU", "domains": [],
        "networks": [{"name": "default", "active": True, "autostart": True}]}
    doc.update(changes)
    return doc


def set_probe(root: Path, doc: dict[str, object]) -> None:
    command(root, ["python3", "-c", PROBE, DEFAULT_URI], json.dumps(doc) + "\n")


V1_CGROUPS = "".join(
    f"{40 + i} 33 0:{40 + i} / /sys/fs/cgroup/{c} rw,nosuid,nodev,noexec,relatime shared:{20 + i}"
    f" - cgroup cgroup rw,{c}\n" for i, c in enumerate(
        ["cpuset", "cpu,cpuacct", "blkio", "memory", "devices", "freezer", "pids"]))


def mountinfo(node: NodeB) -> str:
    text = (DATA / "mountinfo.ubuntu2204").read_text()
    if node.cgroup_v2:
        return text
    v2_line = next(line for line in text.splitlines(keepends=True) if " cgroup2 " in line)
    v1 = ("33 24 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs "
          "ro,mode=755,inode64\n")
    return text.replace(v2_line, v1 + V1_CGROUPS)


def write_storage(root: Path, node: NodeB) -> None:
    write(root, "/proc/self/mountinfo", mountinfo(node))
    write(root, "/etc/fstab", (DATA / "fstab.ubuntu2204").read_text())
    xfs = (DATA / "xfs_info-ftype1.xfsprogs6").read_text().replace(
        "blocks=102400,", f"blocks={TB2 // 4096},")
    command(root, ["xfs_info", "/data"], xfs.replace("meta-data=/dev/sdb  ", "meta-data=/dev/sdb"))
    command(root, ["sh", "-c", WRITE_PROBE, "sh", "/data"], "mode=777 owner=root\nwritten=1\n")
    command(root, ["df", "-B1", "--output=size,target", "/data"],
            f"    1B-blocks Mounted on\n{TB2} /data\n")
    write(root, "/proc/meminfo", f"MemTotal:       {node.mem_kb} kB\n"
          f"MemFree:        {node.mem_kb // 2} kB\nMemAvailable:   {node.mem_kb // 2} kB\n")


def write_libvirtd(root: Path, node: NodeB) -> None:
    conf = (DATA / "libvirtd.conf.dbc").read_text().replace(
        '#listen_addr = "192.168.0.1"', 'listen_addr = "127.0.0.1"')
    write(root, "/etc/libvirt/libvirtd.conf", conf)
    default = "default-libvirtd.ubuntu2004" if node.version_id == "20.04" else \
        "default-libvirtd.ubuntu2204"
    write(root, "/etc/default/libvirtd", (DATA / default).read_text())
    for name in SOCKETS:
        link(root, f"/etc/systemd/system/{name}", "/dev/null")
    link(root, "/etc/systemd/system/multi-user.target.wants/libvirtd.service",
         "/lib/systemd/system/libvirtd.service")
    command(root, ["systemctl", "is-active", "libvirtd.service"], "active\n")
    command(root, ["systemctl", "is-enabled", "libvirtd.service"], "enabled\n")
    set_probe(root, probe_doc(node))


def write_virt(root: Path, node: NodeB) -> None:
    write(root, "/dev/vhost-net", "")
    write(root, "/dev/net/tun", "")
    if node.cgroup_v2:
        write(root, "/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma "
              "misc\n")
    write(root, "/proc/cgroups", "#subsys_name\thierarchy\tnum_cgroups\tenabled\n" + "".join(
        f"{c}\t{0 if node.cgroup_v2 else i + 2}\t1\t1\n" for i, c in enumerate(
            ["cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer", "pids"])))
    stanzas = [PACKAGE_STANZA.format(name=n, version=v, section="admin", arch="amd64")
               for n, v in sorted(node.packages.items())]
    write(root, "/var/lib/dpkg/status", "\n".join(stanzas))
    for name in ("OVMF_CODE.fd", "OVMF_VARS.fd", "OVMF_CODE.ms.fd"):
        write(root, f"/usr/share/OVMF/{name}", "")


def sha256_marked(text: str) -> str:
    """node.dat as the first format-1 writers kept it (``redacted:sha256:``), which readers
    still accept: these stored snapshots keep testing that."""
    out = []
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and key.strip() in PRIVATE_KEYS and value.strip():
            digest = hashlib.sha256(value.strip().encode()).hexdigest()
            line = f"{key.strip()}={SHA256_PREFIX}{digest}"
        out.append(line)
    return "\n".join(out) + "\n"


def write_dbc(root: Path) -> None:
    pid = f"/proc/{DBC_PID}"
    write(root, f"{pid}/comm", "dbc\n")
    write(root, f"{pid}/cmdline", "\0".join([f"{DBC_DIR}/shell/../dbc", "--compute", "-d",
                                             "-n", "gpu-node-01"]) + "\0")
    link(root, f"{pid}/exe", f"{DBC_DIR}/dbc")
    write(root, f"{DBC_DIR}/dbc", "")
    write(root, f"{DBC_DIR}/conf/core.conf", (DATA / "core.conf.mining").read_text())
    write(root, f"{DBC_DIR}/dat/node.dat", sha256_marked((DATA / "node.dat").read_text()))
    write(root, "/proc/net/tcp", proc_net_tcp([
        ("127.0.0.53", 53), ("0.0.0.0", 22), ("127.0.0.1", 16509), ("0.0.0.0", 5001),
        ("127.0.0.1", 5002)]))
    write(root, "/proc/net/tcp6", TCP6_HEADER)


def write_images(root: Path) -> None:
    write(root, "/data/ubuntu.qcow2", "")
    header = (DATA / "qcow2-v3-20G.head").read_bytes()
    command(root, od_argv("/data/ubuntu.qcow2"), od_output(header[:HEADER_BYTES]))


def populate(root: Path, node: NodeB) -> None:
    write_storage(root, node)
    write_libvirtd(root, node)
    write_virt(root, node)
    write_dbc(root)
    write_images(root)


FOCAL_PACKAGES = {"qemu-kvm": "1:4.2-3ubuntu6.27", "qemu-system-x86": "1:4.2-3ubuntu6.27",
                  "libvirt-clients": "6.0.0-0ubuntu8.16", "libvirt-daemon-system":
                  "6.0.0-0ubuntu8.16", "bridge-utils": "1.6-2ubuntu1", "virt-manager":
                  "1:2.2.1-3ubuntu2.2", "ovmf": "0~20191122.bd85bf54-2ubuntu3.5",
                  "cpu-checker": "0.7-1.1", "xfsprogs": "5.3.0-1ubuntu2"}
JAMMY_PACKAGES = {"qemu-system-x86": "1:6.2+dfsg-2ubuntu6.15", "libvirt-clients":
                  "8.0.0-1ubuntu7.8", "libvirt-daemon-system": "8.0.0-1ubuntu7.8",
                  "bridge-utils": "1.7-1ubuntu3", "virt-manager": "1:4.0.0-1",
                  "ovmf": "2022.02-3ubuntu0.22.04.1", "cpu-checker": "0.7-1.3build1",
                  "xfsprogs": "5.13.0-1ubuntu2"}
NODES = {
    "intel-2204-4gpu": NodeB("intel-2204-4gpu", "22.04", 263_682_312, True, 8_000_000,
                             6_002_000, JAMMY_PACKAGES),
    "amd-2004-1gpu": NodeB("amd-2004-1gpu", "20.04", 131_841_156, False, 6_000_000,
                           4_002_000, FOCAL_PACKAGES),
}


def main() -> None:
    for name, node in NODES.items():
        root = SNAPSHOTS / name
        if not (root / "snapshot.json").exists():
            raise SystemExit(f"{root}: no snapshot.json; run selftests/make_snapshots.py first")
        populate(root, node)
        print(root)


if __name__ == "__main__":
    main()
