"""(二) /data: a mounted XFS file system with ftype=1 and project quotas, in fstab,
writable, larger than 350 GiB; and more than 32 GiB of RAM (check_env's thresholds)."""
from __future__ import annotations

import pytest

from dbc_accept.facts import HostFacts
from dbc_accept.facts.storage import (
    DATA,
    GIB,
    Mount,
    gather_fstab,
    gather_memory,
    gather_mounts,
    gather_size,
    gather_write_probe,
    gather_xfs_info,
    mount_of,
)
from dbc_accept.verdict import check, fail, observe

pytestmark = pytest.mark.host

MIN_DATA_GIB = 350  # check_env: "disk total size too short" at 350 GiB or less
MIN_RAM_GIB = 32  # check_env keeps 32 GiB for the host and refuses at or below it
QUOTA_OPTIONS = {"prjquota", "pquota", "pqnoenforce"}


def _data_mount(node: HostFacts) -> Mount:  # or fails storage.mount
    mount = mount_of(node.get(gather_mounts), DATA)
    if mount is None:
        fail("storage.mount", observed=f"no file system is mounted on {DATA}",
             expected=f"a data disk mounted on {DATA}")
    return mount


def test_data_is_a_mount_point(node: HostFacts) -> None:
    mount = _data_mount(node)
    observe(source=mount.source, fstype=mount.fstype)


def test_data_is_xfs(node: HostFacts) -> None:
    mount = _data_mount(node)
    check(mount.fstype == "xfs", "storage.xfs", observed=f"{DATA} is {mount.fstype} "
          f"({mount.source})", expected="xfs")


def test_data_xfs_ftype(node: HostFacts) -> None:
    mount = _data_mount(node)
    check(mount.fstype == "xfs", "storage.xfs", observed=f"{DATA} is {mount.fstype}, which has "
          "no ftype", expected="xfs with ftype=1")
    info = node.get(gather_xfs_info, DATA)
    check(info.ftype == 1, "storage.ftype", observed=f"`xfs_info {DATA}`: ftype={info.ftype}",
          expected="ftype=1 (mkfs.xfs -n ftype=1)")


def test_data_project_quota(node: HostFacts) -> None:
    mount = _data_mount(node)
    found = QUOTA_OPTIONS.intersection(mount.all_options)
    check(bool(found), "storage.pquota",
          observed=f"{DATA} mounted with {','.join(mount.all_options)}",
          expected="prjquota (mount -o pquota)")


def test_data_in_fstab(node: HostFacts) -> None:
    entries = [e for e in node.get(gather_fstab) if e.mount_point == DATA]
    check(bool(entries), "storage.fstab", observed=f"no /etc/fstab line mounts {DATA}",
          expected=f"a line like `/dev/sdb {DATA} xfs pquota 0 1`")
    observe(fstab=entries[-1].line)
    check(bool(QUOTA_OPTIONS.intersection(entries[-1].options)), "storage.fstab",
          observed=f"/etc/fstab: {entries[-1].line}", expected="pquota among the options")


def test_data_writable(node: HostFacts) -> None:
    _data_mount(node)
    probe = node.get(gather_write_probe, DATA)
    check(probe.written, "storage.writable",
          observed=f"creating a file in {DATA} failed: {probe.error}",
          expected=f"{DATA} writable")
    # The guide runs `chmod 777 /data` so that the dbc user can write there too.
    world_writable = probe.mode[-1:] in ("2", "3", "6", "7")
    check(world_writable, "storage.writable", level="warn",
          observed=f"{DATA} has mode {probe.mode or '?'} (owner {probe.owner or '?'})",
          expected="mode 777, as the guide sets")


def test_data_size(node: HostFacts) -> None:
    _data_mount(node)  # the size of whatever holds an unmounted /data means nothing
    size = node.get(gather_size, DATA)
    observe(data_bytes=size)
    check(size // GIB > MIN_DATA_GIB, "storage.size",
          observed=f"{DATA} is {size / GIB:.0f} GiB", expected=f"more than {MIN_DATA_GIB} GiB")


def test_host_memory(node: HostFacts) -> None:
    total = node.get(gather_memory)
    observe(mem_total_bytes=total)
    check(total > MIN_RAM_GIB * GIB, "host.memory", observed=f"{total / GIB:.1f} GiB of RAM",
          expected=f"more than {MIN_RAM_GIB} GiB")
