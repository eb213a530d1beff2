"""What the node shows of the nested test VM, read in the node by its python3 (3.9).

Run as ``python3 - FUNCTION...`` (this file on stdin); prints one JSON object: the test VM's
domains, each running one's XML, qemu pid, open /dev/vfio files and ``info pci`` from qemu's
monitor, the functions' drivers and IOMMU groups, the run's volumes and overlay files, and
the default network's DHCP leases. Only reads; never changes anything.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

PREFIX = "dbc-accept-"


def sh(*argv: str) -> str:
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=120).stdout


def link_name(path: str) -> str | None:
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def qemu_side(name: str) -> dict[str, object]:
    """The running domain's XML, qemu pid, /dev/vfio files open in it, and ``info pci``."""
    try:
        with open(f"/run/libvirt/qemu/{name}.pid") as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        pid = 0
    fds = []
    for fd in glob.glob(f"/proc/{pid}/fd/*") if pid else []:
        try:
            fds.append(os.readlink(fd))
        except OSError:
            continue
    return {"xml": sh("virsh", "dumpxml", name), "pid": pid,
            "vfio": sorted({f for f in fds if f.startswith("/dev/vfio/")}),
            "info_pci": sh("virsh", "qemu-monitor-command", name, "--hmp", "info pci")}


def main(functions: list[str]) -> dict[str, object]:
    every = [n for n in sh("virsh", "list", "--all", "--name").split() if n.startswith(PREFIX)]
    running = [n for n in sh("virsh", "list", "--name").split() if n.startswith(PREFIX)]
    volumes = []
    for pool in sh("virsh", "pool-list", "--name").split():
        sh("virsh", "pool-refresh", pool)
        volumes += [line.split()[0] for line in sh("virsh", "vol-list", pool).splitlines()
                    if line.strip().startswith(PREFIX)]
    return {
        "domains": every,
        "running": {n: qemu_side(n) for n in running},
        "drivers": {f: link_name(f"/sys/bus/pci/devices/{f}/driver") for f in functions},
        "groups": {f: link_name(f"/sys/bus/pci/devices/{f}/iommu_group") for f in functions},
        "volumes": volumes,
        "files": sorted(glob.glob(f"/data/{PREFIX}*") + glob.glob(f"/var/lib/libvirt/*/{PREFIX}*")),
        "leases": [line for line in sh("virsh", "net-dhcp-leases", "default").splitlines()[2:]
                   if line.strip()],
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
