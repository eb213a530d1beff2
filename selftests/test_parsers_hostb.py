"""Parsers of /data, libvirtd, virt parity, the dbc node and images on captured real data."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbc_accept.facts.dbcnode import (
    parse_core_conf,
    parse_node_dat,
    redact_node_dat,
    role_of,
)
from dbc_accept.facts.images import parse_od_bytes, parse_qcow2_header, stale_disks
from dbc_accept.facts.libvirtconn import parse_probe, version_text
from dbc_accept.facts.libvirtd import (
    args_variables,
    has_listen_flag,
    parse_libvirt_conf,
    parse_shell_vars,
)
from dbc_accept.facts.listeners import parse_proc_net_tcp
from dbc_accept.facts.storage import (
    mount_of,
    parse_df_size,
    parse_fstab,
    parse_meminfo_total,
    parse_mountinfo,
    parse_write_probe,
    parse_xfs_info,
)
from dbc_accept.facts.virt import (
    Cgroups,
    parse_cgroup_controllers,
    parse_dpkg_status,
    parse_proc_cgroups,
)
from dbc_accept.secrecy import HMAC_PREFIX, snapshot_text

DATA = Path(__file__).parent / "data" / "hostb"


def text(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


# --- storage -------------------------------------------------------------------------

def test_mountinfo_ubuntu_data_on_xfs_with_prjquota() -> None:
    mounts = parse_mountinfo(text("mountinfo.ubuntu2204"))
    data = mount_of(mounts, "/data")
    assert data is not None
    assert (data.fstype, data.source) == ("xfs", "/dev/sdb")
    assert "prjquota" in data.super_options and "rw" in data.options
    assert mount_of(mounts, "/mnt/with space") is not None  # \040 unescaped


def test_mountinfo_debian_has_no_data() -> None:
    mounts = parse_mountinfo(text("mountinfo.debian12"))
    assert mount_of(mounts, "/data") is None
    assert mount_of(mounts, "/").fstype == "ext4"  # type: ignore[union-attr]


def test_mountinfo_garbage() -> None:
    with pytest.raises(ValueError, match="separator"):
        parse_mountinfo("1 2 3:4 / /x rw shared:1 xfs /dev/sdb rw")


def test_fstab_finds_the_guide_line() -> None:
    entries = [e for e in parse_fstab(text("fstab.ubuntu2204")) if e.mount_point == "/data"]
    assert [e.line for e in entries] == ["/dev/sdb /data     xfs pquota 0 1"]
    assert entries[0].options == ("pquota",)


def test_xfs_info_ftype() -> None:
    one = parse_xfs_info(text("xfs_info-ftype1.xfsprogs6"))
    assert (one.ftype, one.block_size, one.data_blocks) == (1, 4096, 102400)
    assert parse_xfs_info(text("xfs_info-ftype0.xfsprogs6")).ftype == 0
    with pytest.raises(ValueError):
        parse_xfs_info("xfs_info: /data is not a mounted XFS filesystem")


def test_df_size_and_meminfo() -> None:
    assert parse_df_size("   1B-blocks Mounted on\n2000398934016 /data\n") == 2000398934016
    with pytest.raises(ValueError):
        parse_df_size("Filesystem 1K-blocks\n/dev/sdb 12\n")
    assert parse_meminfo_total("MemTotal:       24684096 kB\nMemFree: 1 kB\n") == 24684096 * 1024
    with pytest.raises(ValueError):
        parse_meminfo_total("MemFree: 1 kB\n")


def test_write_probe_outcomes() -> None:
    ok = parse_write_probe("mode=777 owner=root\nwritten=1\n", 0, "")
    assert ok.written and ok.mode == "777"
    ro = parse_write_probe("mode=777 owner=root\n", 3,
                           "mktemp: failed to create file via template "
                           "'/data/.dbc-accept-write.XXXXXX': Read-only file system\n")
    assert not ro.written and ro.error.endswith("Read-only file system")


# --- libvirtd ------------------------------------------------------------------------

def test_libvirtd_conf_as_shipped_is_all_comments() -> None:
    assert parse_libvirt_conf(text("libvirtd.conf.debian12")) == {}


def test_libvirtd_conf_after_the_guide() -> None:
    conf = parse_libvirt_conf(text("libvirtd.conf.dbc"))
    assert conf == {"listen_tls": 0, "listen_tcp": 1, "auth_tcp": "none"}


def test_libvirt_conf_syntax() -> None:
    conf = parse_libvirt_conf(
        'a = 1 # one\nb = "x # not a comment"\nc = [ "r", \'s\',\n  # gap\n  3 ]\n'
        'd = -2;\ne = """multi\nline"""\nf=[]\n')
    assert conf == {"a": 1, "b": "x # not a comment", "c": ["r", "s", 3], "d": -2,
                    "e": "multi\nline", "f": []}
    for bad in ('a = "open', "a 1", "a = [1, 2", "a = yes", "a = 1 2", "1a = 2"):
        with pytest.raises(ValueError, match="line"):
            parse_libvirt_conf(bad)


def test_default_libvirtd_per_release() -> None:
    focal = parse_shell_vars(text("default-libvirtd.ubuntu2004"))
    assert focal["libvirtd_opts"] == "-l" and args_variables("20.04") == ("libvirtd_opts",)
    jammy = parse_shell_vars(text("default-libvirtd.ubuntu2204"))
    assert jammy == {"LIBVIRT_ARGS": "-l"}
    assert "LIBVIRT_ARGS" in args_variables("22.04")
    assert parse_shell_vars(text("default-libvirtd.debian12")) == {}
    assert has_listen_flag("--timeout 120 --listen") and has_listen_flag("-d -l")
    assert not has_listen_flag("--timeout 120") and not has_listen_flag("")


def test_proc_net_tcp() -> None:
    v4 = parse_proc_net_tcp(text("proc-net-tcp.debian12"))
    assert ("127.0.0.1", 16509) in {(s.address, s.port) for s in v4}
    assert all(s.port != 0 for s in v4)
    v6 = {(s.address, s.port, s.loopback) for s in parse_proc_net_tcp(
        text("proc-net-tcp6.listening"))}
    assert v6 == {("::1", 16510, True), ("::", 5091, False), ("::", 5092, False)}
    assert parse_proc_net_tcp(text("proc-net-tcp6.debian12")) == []


def test_libvirt_probe_document() -> None:
    probe = parse_probe('{"connected": true, "domain_types": ["kvm", "qemu"], '
                        '"lib_version": 9000000, "hv_version": 7002022, "hv_type": "QEMU", '
                        '"domains": [{"name": "domain_test", "state": "running", '
                        '"tagged": false, "hostdevs": ["0000:01:00.0"]}], '
                        '"networks": [{"name": "default", "active": true, "autostart": false}]}')
    assert probe.connected and "kvm" in probe.domain_types
    assert probe.domains[0].hostdevs == ("0000:01:00.0",)
    assert probe.network("default").autostart is False  # type: ignore[union-attr]
    assert version_text(probe.hv_version) == "7.2.22"
    refused = parse_probe('{"connected": false, "error_code": 38, "error": "refused"}')
    assert (refused.connected, refused.error_code) == (False, 38)


# --- virt parity ---------------------------------------------------------------------

def test_dpkg_status() -> None:
    pkgs = parse_dpkg_status(text("dpkg-status.debian12"))
    assert pkgs["qemu-system-x86"].installed and pkgs["xfsprogs"].installed
    assert "qemu-kvm" not in pkgs
    removed = parse_dpkg_status("Package: ovmf\nStatus: deinstall ok config-files\n")
    assert not removed["ovmf"].installed


def test_cgroups_v1_and_v2() -> None:
    v1 = parse_proc_cgroups("#subsys_name\thierarchy\tnum_cgroups\tenabled\n"
                            "cpuset\t3\t1\t1\nmemory\t0\t1\t0\n")
    assert v1 == frozenset({"cpuset"})
    v2 = Cgroups(2, frozenset(["cpuset", "cpu", "io", "memory", "hugetlb", "pids"]))
    assert all(v2.has(c) for c in ("cpuacct", "blkio", "devices", "memory"))
    assert not Cgroups(2, frozenset({"memory"})).has("blkio")
    assert parse_cgroup_controllers("cpuset cpu io memory hugetlb pids rdma misc\n") == \
        frozenset(["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"])
    with pytest.raises(ValueError):
        parse_cgroup_controllers("cpu {garbage}")


# --- the dbc node --------------------------------------------------------------------

def test_core_conf_shipped() -> None:
    conf = parse_core_conf(text("core.conf.mining"))
    assert (conf.port("net_listen_port"), conf.port("http_port")) == (5001, 5002)
    assert conf.values["dbc_chain_domain"] == ["httpinfo.dbcwallet.io:443",
                                               "httpinfo2.dbcwallet.io:7788"]
    assert parse_core_conf("version=1\n").port("http_port") == 5050  # the program's default
    for bad in ("net_listen_port=50o1\n", "just words\n"):
        with pytest.raises(ValueError):
            parse_core_conf(bad)


def test_node_dat_and_redaction() -> None:
    raw = text("node.dat")
    dat = parse_node_dat(raw)
    key = raw.split("node_private_key=")[1].strip()
    assert dat.key_digests == {"node_private_key": hashlib.sha256(key.encode()).hexdigest()}
    snap_key = b"k" * 32
    redacted = redact_node_dat(raw, snap_key)
    assert key not in redacted and HMAC_PREFIX in redacted
    # a snapshot compares with a backup hashed under the snapshot's key
    assert parse_node_dat(redacted) == parse_node_dat(raw, snap_key)
    assert snapshot_text("/x/dat/node.dat", raw, snap_key) == redacted  # the capture agrees
    old = parse_node_dat(text("node.dat.old-format"))
    assert set(old.key_digests) == {"node_private_key", "priv_key"}
    with pytest.raises(ValueError, match="node_id"):
        parse_node_dat("node_private_key=abc\n")


def test_roles() -> None:
    assert role_of(("/home/dbc/x/shell/../dbc", "--compute", "-d", "-n", "h")) == "compute"
    assert role_of(("/home/dbc/c/dbc", "--client", "-d")) == "client"
    assert role_of(("/home/dbc/x/dbc", "-a", "-d")) == "compute"


# --- images --------------------------------------------------------------------------

def test_qcow2_headers_from_qemu_img() -> None:
    v3 = parse_qcow2_header((DATA / "qcow2-v3-20G.head").read_bytes())
    assert (v3.version, v3.virtual_size, v3.backing_file) == (3, 20 * 1024**3, None)
    v2 = parse_qcow2_header((DATA / "qcow2-v2-1G.head").read_bytes())
    assert (v2.version, v2.virtual_size, v2.incompatible) == (2, 1024**3, ())
    overlay = parse_qcow2_header((DATA / "qcow2-v3-overlay.head").read_bytes())
    assert overlay.backing_file == "/data/ubuntu.qcow2"
    with pytest.raises(ValueError, match="not a qcow2"):
        parse_qcow2_header((DATA / "raw.head").read_bytes())


def test_qcow2_corrupt_bit_and_od_roundtrip() -> None:
    head = bytearray((DATA / "qcow2-v3-20G.head").read_bytes())
    head[79] |= 0b10
    assert parse_qcow2_header(bytes(head)).incompatible == ("corrupt",)
    od = " 51 46 49 fb 00 00\n 00 03\n"
    assert parse_od_bytes(od) == b"QFI\xfb\x00\x00\x00\x03"


def test_stale_disk_names() -> None:
    names = ["ubuntu.qcow2", "ubuntu_domain_test.qcow2", "data_1_domain_test.qcow2",
             "dbc-accept-run1.qcow2", "data_1_task42.qcow2"]
    assert stale_disks(names) == ["/data/ubuntu_domain_test.qcow2",
                                  "/data/data_1_domain_test.qcow2", "/data/dbc-accept-run1.qcow2"]


# --- fuzz: garbage in, ValueError (or a result) out, never another exception ---------

TEXT_PARSERS = [parse_mountinfo, parse_fstab, parse_xfs_info, parse_df_size, parse_meminfo_total,
                parse_libvirt_conf, parse_shell_vars, parse_proc_net_tcp, parse_dpkg_status,
                parse_proc_cgroups, parse_cgroup_controllers, parse_core_conf, parse_node_dat,
                parse_probe, parse_od_bytes]
LINES = st.lists(st.sampled_from([
    "", "#", "a = 1", 'b = "x"', "[", "]", "=", "sl local", "0: 0100007F:407D 00:0 0A",
    "- xfs", "Package: x", "Status: install ok installed", "node_id=1", "MemTotal: 5 kB",
    "meta-data=", "ftype=x", "1B-blocks", '"""', "'", "[1,", "12 34 - xfs /dev rw", "\t"]),
    max_size=12).map("\n".join)


@pytest.mark.parametrize("parser", TEXT_PARSERS, ids=lambda p: p.__name__)
@settings(max_examples=150, deadline=None)
@given(data=st.one_of(st.text(max_size=300), LINES))
def test_text_parsers_raise_only_value_error(parser, data: str) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(ValueError):
        parser(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
        st.sampled_from(["connected", "domains", "networks", "name", "domain_types",
                         "lib_version", "hv_version", "hostdevs", "error_code"]), kids,
        max_size=6), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(doc=JSON)
def test_probe_parser_on_odd_documents(doc: object) -> None:
    with contextlib.suppress(ValueError):
        parse_probe(json.dumps(doc))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600))
def test_qcow2_parser_on_random_bytes(data: bytes) -> None:
    for blob in (data, b"QFI\xfb" + data):
        with contextlib.suppress(ValueError):
            parse_qcow2_header(blob)
