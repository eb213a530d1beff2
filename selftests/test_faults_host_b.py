"""One fault per part B check, each a mutation of a known-good base snapshot.

Each case says exactly which tests fail and which warn (every other test of the part B
files passes) and that each message carries the fix of the check concerned.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dbc_accept.facts.libvirtconn import DEFAULT_URI, PROBE
from dbc_accept.facts.storage import WRITE_PROBE
from dbc_accept.remedies import REMEDIES
from selftests.make_snapshots_hostb import (
    DATA,
    DBC_DIR,
    DBC_PID,
    NODES,
    od_argv,
    od_output,
    probe_doc,
    proc_net_tcp,
)
from selftests.snapshot_harness import Snapshot, copy_snapshot

FILES = ("test_storage.py", "test_libvirtd.py", "test_virt_parity.py", "test_dbc_node.py",
         "test_images.py", "test_leftovers.py", "test_security.py")
BACKUP = ["--node-dat-backup", str(DATA / "node.dat")]
PROBE_ARGV = ["python3", "-c", PROBE, DEFAULT_URI]
IMG = "/data/ubuntu.qcow2"
S, L, V, D, IM = ("test_storage.py::", "test_libvirtd.py::", "test_virt_parity.py::",
                 "test_dbc_node.py::", "test_images.py::")
TCP_OK = [("127.0.0.53", 53), ("0.0.0.0", 22), ("127.0.0.1", 16509), ("0.0.0.0", 5001),
          ("127.0.0.1", 5002)]


@dataclass
class Fault:
    name: str
    mutate: Callable[[Snapshot], object]
    failed: dict[str, str]  # test id -> the check id whose fix its message must name
    warned: dict[str, str] = field(default_factory=dict)
    skipped: frozenset[str] = frozenset()  # tests that skip behind the failure they depend on
    base: str = "intel-2204-4gpu"
    args: list[str] = field(default_factory=lambda: list(BACKUP))


def probe(snap: Snapshot, **changes: object) -> None:
    node = NODES[snap.root.name]
    snap.command(PROBE_ARGV, json.dumps(probe_doc(node, **changes)) + "\n")


def no_data(snap: Snapshot) -> None:
    snap.replace("/proc/self/mountinfo", "57 29 8:16 / /data rw,relatime shared:33 - xfs /dev/sdb "
                 "rw,attr2,inode64,logbufs=8,logbsize=32k,prjquota\n", "")
    snap.delete("/data")
    snap.command(["xfs_info", "/data"], rc=1,
                 stderr="xfs_info: /data is not a mounted XFS filesystem\n")


def ext4(snap: Snapshot) -> None:
    snap.replace("/proc/self/mountinfo", "- xfs /dev/sdb rw,attr2,inode64,logbufs=8,"
                 "logbsize=32k,prjquota", "- ext4 /dev/sdb rw")
    snap.command(["xfs_info", "/data"], rc=1,
                 stderr="xfs_info: /data is not a mounted XFS filesystem\n")


def xfs_info(snap: Snapshot) -> str:
    return snap.command_output(["xfs_info", "/data"])


def dbc_gone(snap: Snapshot) -> None:
    snap.delete(f"/proc/{DBC_PID}")
    snap.write("/proc/net/tcp", proc_net_tcp(TCP_OK[:3]))


def client_node_clash(snap: Snapshot) -> None:
    client = "/home/dbc/dbc_client"
    snap.write("/proc/3100/comm", "dbc\n")
    snap.write("/proc/3100/cmdline", f"{client}/shell/../dbc\0--client\0-d\0-n\0node\0")
    snap.link("/proc/3100/exe", f"{client}/dbc")
    snap.write(f"{client}/conf/core.conf", "net_listen_port=5005\nhttp_port=5001\n")


def conf_line(old: str, new: str) -> Callable[[Snapshot], object]:
    return lambda snap: snap.replace("/etc/libvirt/libvirtd.conf", old, new)


def core_conf(old: str, new: str) -> Callable[[Snapshot], object]:
    return lambda snap: snap.replace(f"{DBC_DIR}/conf/core.conf", old, new)


def public_libvirtd(snap: Snapshot) -> None:
    snap.replace("/etc/libvirt/libvirtd.conf", 'listen_addr = "127.0.0.1"', "")
    snap.write("/proc/net/tcp", proc_net_tcp([a if a[1] != 16509 else ("0.0.0.0", 16509)
                                              for a in TCP_OK]))


IMAGE_TESTS = {f"{IM}test_image_present[{IMG}]": "images.template",
               f"{IM}test_image_is_qcow2[{IMG}]": "images.template"}
DBC_ALL = {f"{D}test_dbc_install_folder": "dbc.install_dir"}
DBC_BEHIND = frozenset(f"{D}{t}" for t in (
    "test_dbc_core_conf", "test_dbc_port[net_listen_port]", "test_dbc_port[http_port]",
    "test_node_dat", "test_node_dat_backup"))
PROBE_TESTS = (f"{L}test_libvirt_connects", f"{L}test_libvirt_offers_kvm",
               f"{V}test_default_network", "test_leftovers.py::test_no_test_domain")

FAULTS = [
    Fault("data-missing", no_data, {
        **{f"{S}{t}": "storage.mount" for t in (
            "test_data_is_a_mount_point", "test_data_is_xfs", "test_data_xfs_ftype",
            "test_data_project_quota", "test_data_writable", "test_data_size")},
        **IMAGE_TESTS}),
    Fault("data-ext4", ext4, {f"{S}test_data_is_xfs": "storage.xfs",
                              f"{S}test_data_xfs_ftype": "storage.xfs",
                              f"{S}test_data_project_quota": "storage.pquota"}),
    Fault("ftype-0", lambda s: s.command(["xfs_info", "/data"], xfs_info(s).replace(
        "ftype=1", "ftype=0")), {f"{S}test_data_xfs_ftype": "storage.ftype"}),
    Fault("no-pquota", lambda s: s.replace("/proc/self/mountinfo", ",prjquota\n", "\n"),
          {f"{S}test_data_project_quota": "storage.pquota"}),
    Fault("not-in-fstab", lambda s: s.replace("/etc/fstab", "/dev/sdb /data     xfs pquota 0 1\n",
                                              ""), {f"{S}test_data_in_fstab": "storage.fstab"}),
    Fault("fstab-without-pquota", lambda s: s.replace(
        "/etc/fstab", "/dev/sdb /data     xfs pquota 0 1", "/dev/sdb /data xfs defaults 0 1"),
        {f"{S}test_data_in_fstab": "storage.fstab"}),
    Fault("read-only", lambda s: s.command(
        ["sh", "-c", WRITE_PROBE, "sh", "/data"], "mode=777 owner=root\n", rc=3,
        stderr="mktemp: failed to create file via template '/data/.dbc-accept-write.XXXXXX': "
               "Read-only file system\n"), {f"{S}test_data_writable": "storage.writable"}),
    Fault("data-too-small", lambda s: s.command(["df", "-B1", "--output=size,target", "/data"],
                                                "   1B-blocks Mounted on\n375809638400 /data\n"),
          {f"{S}test_data_size": "storage.size"}),
    Fault("ram-16g", lambda s: s.write("/proc/meminfo", "MemTotal:       16365420 kB\n"),
          {f"{S}test_host_memory": "host.memory"}),
    Fault("listen-tcp-commented", conf_line("\nlisten_tcp = 1", "\n#listen_tcp = 1"),
          {f"{L}test_libvirtd_conf[listen_tcp]": "libvirtd.conf"}),
    Fault("auth-tcp-sasl", conf_line('auth_tcp = "none"', 'auth_tcp = "sasl"'),
          {f"{L}test_libvirtd_conf[auth_tcp]": "libvirtd.conf"}),
    Fault("conf-garbage", conf_line("listen_tls = 0", "listen_tls = 0 0"), {
        **{f"{L}test_libvirtd_conf[{k}]": "libvirtd.conf" for k in (
            "listen_tls", "listen_tcp", "auth_tcp")},
        "test_security.py::test_libvirtd_not_open_to_the_network": "libvirtd.conf"}),
    Fault("no-listen-arg-2204", lambda s: s.replace("/etc/default/libvirtd", 'LIBVIRT_ARGS="-l"',
                                                    'LIBVIRT_ARGS=""'),
          {f"{L}test_libvirtd_listen_arg": "libvirtd.args"}),
    Fault("no-listen-arg-2004", lambda s: s.replace("/etc/default/libvirtd", 'libvirtd_opts="-l"',
                                                    'libvirtd_opts=""'),
          {f"{L}test_libvirtd_listen_arg": "libvirtd.args"}, base="amd-2004-1gpu"),
    Fault("socket-not-masked", lambda s: s.delete("/etc/systemd/system/libvirtd-tcp.socket"),
          {f"{L}test_libvirtd_socket_masked[libvirtd-tcp.socket]": "libvirtd.sockets"}),
    Fault("service-inactive", lambda s: s.command(["systemctl", "is-active", "libvirtd.service"],
                                                  "inactive\n", rc=3),
          {f"{L}test_libvirtd_active": "libvirtd.service"}),
    Fault("service-disabled", lambda s: (
        s.command(["systemctl", "is-enabled", "libvirtd.service"], "disabled\n", rc=1),
        s.delete("/etc/systemd/system/multi-user.target.wants/libvirtd.service")),
        {f"{L}test_libvirtd_enabled": "libvirtd.service"}),
    Fault("nothing-on-16509", lambda s: s.write("/proc/net/tcp", proc_net_tcp(
        [a for a in TCP_OK if a[1] != 16509])), {f"{L}test_libvirtd_listening":
                                                 "libvirtd.listening"}),
    Fault("connection-refused", lambda s: s.command(PROBE_ARGV, json.dumps({
        "connected": False, "error_code": 38, "error": "unable to connect to server at "
        "'localhost:16509': Connection refused"})), {PROBE_TESTS[0]: "libvirtd.connect"},
        skipped=frozenset(PROBE_TESTS[1:])),  # behind test_libvirt_connects (prereqs.py)
    Fault("no-kvm-domain-type", lambda s: probe(s, domain_types=["qemu"]),
          {f"{L}test_libvirt_offers_kvm": "libvirtd.kvm"}),
    Fault("package-missing", lambda s: s.replace(
        "/var/lib/dpkg/status", "Package: virt-manager\nStatus: install ok installed",
        "Package: virt-manager\nStatus: deinstall ok config-files"),
        {f"{V}test_package_installed[virt-manager]": "virt.packages"}),
    Fault("default-network-inactive", lambda s: probe(s, networks=[
        {"name": "default", "active": False, "autostart": True}]),
        {f"{V}test_default_network": "virt.default_network"}),
    Fault("no-tun", lambda s: s.delete("/dev/net/tun"), {f"{V}test_tun": "virt.tun"}),
    Fault("no-vhost-net", lambda s: s.delete("/dev/vhost-net"), {},
          warned={f"{V}test_vhost_net": "virt.vhost_net"}),
    Fault("no-io-controller", lambda s: s.write("/sys/fs/cgroup/cgroup.controllers",
                                                "cpuset cpu memory pids\n"), {},
          warned={f"{V}test_cgroup_controller[blkio]": "virt.cgroups"}),
    Fault("no-ovmf", lambda s: s.delete("/usr/share/OVMF"), {f"{V}test_ovmf": "virt.ovmf"}),
    Fault("dbc-not-running", dbc_gone, {f"{D}test_dbc_running": "dbc.process", **DBC_ALL},
          skipped=DBC_BEHIND),
    Fault("dbc-not-running-dir-given", dbc_gone, {
        f"{D}test_dbc_running": "dbc.process", f"{D}test_dbc_port[net_listen_port]": "dbc.ports",
        f"{D}test_dbc_port[http_port]": "dbc.ports"}, args=[*BACKUP, "--dbc-dir", DBC_DIR]),
    Fault("core-conf-garbage", core_conf("max_connect_count=1024", "max connect count: 1024"), {
        f"{D}{t}": "dbc.config" for t in ("test_dbc_core_conf", "test_dbc_port[net_listen_port]",
                                          "test_dbc_port[http_port]")}),
    Fault("port-clash", core_conf("http_port=5002", "http_port=5001"), {
        f"{D}test_dbc_port[net_listen_port]": "dbc.ports",
        f"{D}test_dbc_port[http_port]": "dbc.ports"}),
    Fault("client-node-port-clash", client_node_clash, {
        f"{D}test_dbc_port[net_listen_port]": "dbc.ports"}),
    Fault("port-out-of-range", lambda s: (
        core_conf("net_listen_port=5001", "net_listen_port=6001")(s),
        s.write("/proc/net/tcp", proc_net_tcp([*TCP_OK, ("0.0.0.0", 6001)]))),
        {f"{D}test_dbc_port[net_listen_port]": "dbc.ports"}),
    Fault("node-dat-missing", lambda s: s.delete(f"{DBC_DIR}/dat/node.dat"), {
        f"{D}test_node_dat": "dbc.node_dat", f"{D}test_node_dat_backup": "dbc.node_dat"}),
    Fault("backup-differs", lambda s: None, {},
          warned={f"{D}test_node_dat_backup": "dbc.backup"},
          args=["--node-dat-backup", str(DATA / "node.dat.old-format")]),
    Fault("backup-key-differs", lambda s: None, {},
          warned={f"{D}test_node_dat_backup": "dbc.backup"},
          args=["--node-dat-backup", str(DATA / "node.dat.other-key")]),
    Fault("no-backup-named", lambda s: None, {},
          warned={f"{D}test_node_dat_backup": "dbc.backup"}, args=[]),
    Fault("template-missing", lambda s: s.delete(IMG), IMAGE_TESTS),
    Fault("template-not-qcow2", lambda s: s.command(od_argv(IMG), od_output(
        (DATA / "raw.head").read_bytes())), {f"{IM}test_image_is_qcow2[{IMG}]": "images.qcow2"}),
    Fault("domain-test-left", lambda s: probe(s, domains=[{
        "name": "domain_test", "state": "running", "tagged": False,
        "hostdevs": ["0000:17:00.0", "0000:17:00.1"]}]),
        {"test_leftovers.py::test_no_test_domain": "leftovers.domain"}),
    Fault("own-vm-left", lambda s: probe(s, domains=[{
        "name": "dbc-accept-20261120-0800", "state": "shutoff", "tagged": True,
        "hostdevs": []}]), {"test_leftovers.py::test_no_test_domain": "leftovers.domain"}),
    Fault("stale-disk", lambda s: s.write("/data/ubuntu_domain_test.qcow2", ""),
          {"test_leftovers.py::test_no_stale_disk": "leftovers.disk"}),
    Fault("public-unauthenticated", public_libvirtd, {},
          warned={"test_security.py::test_libvirtd_not_open_to_the_network":
                  "libvirtd.security"}),
]


@pytest.mark.parametrize("base", sorted(NODES))
def test_base_passes_every_part_b_check(base: str, tmp_path: Path) -> None:
    results = copy_snapshot(base, tmp_path).run(*FILES, extra_args=BACKUP)
    assert len(results) > 40
    assert not results.not_passed, results.summary()


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_fault(fault: Fault, tmp_path: Path) -> None:
    snap = copy_snapshot(fault.base, tmp_path)
    fault.mutate(snap)
    results = snap.run(*FILES, extra_args=fault.args)
    assert results.failed == set(fault.failed), results.summary()
    assert results.warned == set(fault.warned), results.summary()
    assert not results.errors and results.skipped == set(fault.skipped), results.summary()
    for test_id, check_id in {**fault.failed, **fault.warned}.items():
        message = results.message(test_id)
        assert f"[{check_id}]" in message and REMEDIES[check_id].fix in message, message


def test_every_fault_of_the_brief_is_here() -> None:
    assert len(FAULTS) >= 28 and len({f.name for f in FAULTS}) == len(FAULTS)


GARBAGE = "\x00\x7f}{ = [ \"\n\tnot:a=valid ] line 0A\n"


def test_garbage_everywhere_fails_checks_not_the_run(tmp_path: Path) -> None:
    snap = copy_snapshot("intel-2204-4gpu", tmp_path)
    for path in ("/proc/self/mountinfo", "/etc/fstab", "/proc/meminfo", "/etc/default/libvirtd",
                 "/etc/libvirt/libvirtd.conf", "/proc/net/tcp", "/proc/cgroups",
                 "/var/lib/dpkg/status", f"{DBC_DIR}/conf/core.conf", f"{DBC_DIR}/dat/node.dat",
                 f"/proc/{DBC_PID}/cmdline", "/sys/fs/cgroup/cgroup.controllers"):
        snap.write(path, GARBAGE)
    for argv in (["xfs_info", "/data"], ["df", "-B1", "--output=size,target", "/data"],
                 ["sh", "-c", WRITE_PROBE, "sh", "/data"], od_argv(IMG), PROBE_ARGV,
                 ["systemctl", "is-active", "libvirtd.service"]):
        snap.command(argv, GARBAGE)
    results = snap.run(*FILES, extra_args=BACKUP)
    assert not results.errors, results.summary()
    assert len(results.failed) > 20, results.summary()
    for test_id in results.failed:
        message = results.message(test_id)
        assert "Traceback" not in message and "Error:" not in message.split("\n")[0], message
        assert "could not" in message or "fix:" in message, message
