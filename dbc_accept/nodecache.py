"""A remote node read in a handful of round trips: the declared set, then what it names.

:class:`NodeReadTarget` wraps the target of a node (over SSH, or this machine in the
selftests). :meth:`~NodeReadTarget.prefetch` asks the node for everything the host checks
read (:func:`declared`: the files, links, folders and commands of ``docs/snapshot.md``) in
one command, then for the files of the dbc install folders the first answer names, in a
second. Every read is then served from the answers, with the outcome the node gave (a
missing file is missing, without asking again). A read the set does not hold goes to the
node as before and is counted in :attr:`~NodeReadTarget.misses`.

The cache travels: :meth:`~NodeReadTarget.export` gives plain JSON data that
:meth:`~NodeReadTarget.load` takes back, so that under pytest-xdist the controller reads
each node once and every worker replays its answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dbc_accept import inline
from dbc_accept.facts import (
    NodeOptions,
    cpu,
    dbcnode,
    images,
    kernel,
    libvirtd,
    pci,
    storage,
    sysctl,
    sysinfo,
    virt,
)
from dbc_accept.facts.libvirtconn import DEFAULT_URI
from dbc_accept.noderead import READER, decode_reply, encode_request
from dbc_accept.secrecy import register_node_dat
from dbc_accept.target import CommandResult, Target
from dbc_accept.verdict import FactError

FILES = [
    "/etc/os-release", "/usr/lib/os-release", cpu.CPUINFO, cpu.IGNORE_MSRS, kernel.CMDLINE,
    kernel.MODULES, kernel.GRUB_DEFAULT, "/proc/iomem", "/proc/self/mountinfo", "/etc/fstab",
    "/proc/meminfo", libvirtd.CONF, libvirtd.DEFAULTS, virt.DPKG_STATUS,
    "/sys/fs/cgroup/cgroup.controllers", "/proc/cgroups", sysctl.SYSCTL_CONF,
    sysctl.ETC_MODULES, "/proc/net/tcp", "/proc/net/tcp6",
    *(sysctl.proc_path(key) for key in sysctl.CHECKED_KEYS), sysinfo.KERNEL_RELEASE,
    "/proc/sys/kernel/hostname",
]
LINKS = [*(f"/etc/systemd/system/{name}" for name in libvirtd.SOCKETS), libvirtd.WANTS_LINK]
LISTS = ["/dev", "/dev/net", pci.ACPI_TABLES, pci.IOMMU_GROUPS, storage.DATA, *virt.OVMF_DIRS]
UNDER = [*([folder, r".*\.conf$"] for folder in
           (kernel.MODPROBE_D, *sysctl.SYSCTL_DIRS, *sysctl.MODULES_LOAD_DIRS)),
         [f"{kernel.GRUB_DEFAULT}.d", r".*\.cfg$"]]
EACH = (
    ["/proc", r"^[0-9]+$", "comm", dbcnode.PROGRAM, ["cmdline"], ["exe"]],
    [pci.PCI_DEVICES, r"^[0-9a-fA-F]", "", "", ["vendor", "device", "class", "resource"],
     ["driver", "iommu_group"]],
)
READER_TIMEOUT = 90.0  # the slowest command of the set is the libvirt probe (60 s)


def declared(options: NodeOptions) -> dict[str, Any]:
    """Everything the host checks read on a node with these options (the first round)."""
    uri = options.libvirt_uri or DEFAULT_URI
    image_paths = sorted({images.TEMPLATE, options.vm_image or images.TEMPLATE})
    cmds: list[tuple[Sequence[str], float]] = [
        (inline.argv("kvm"), 30.0), (kernel.DMESG_ARGV, 30.0),
        (["systemctl", "is-active", libvirtd.SERVICE], 30.0),
        (["systemctl", "is-enabled", libvirtd.SERVICE], 30.0),
        (["xfs_info", storage.DATA], 30.0),
        (["df", "-B1", "--output=size,target", storage.DATA], 30.0),
        (inline.argv("data-write", "sh", storage.DATA), 30.0),
        (inline.argv("libvirt", uri), 60.0), (inline.argv("libvirt-virsh", uri), 60.0),
        (sysinfo.GPU_QUERY, 20.0), (["nvidia-smi"], 20.0),  # for the report
    ]
    cmds += [(["od", "-An", "-v", "-tx1", "-N", str(images.HEADER_BYTES), "--", p], 30.0)
             for p in image_paths]
    lists = LISTS + sorted({p.rpartition("/")[0] or "/" for p in image_paths})
    return {"files": list(FILES), "links": list(LINKS), "lists": lists,
            "under": [list(u) for u in UNDER], "each": [list(e) for e in EACH],
            "cmds": [[list(argv), timeout] for argv, timeout in cmds]}


def dbc_folders(target: Target, options: NodeOptions) -> dict[str, Any]:
    """The second round: the install folders of the dbc programs the first one found."""
    processes = dbcnode.gather_dbc_processes(target)
    folders = {p.folder for p in processes}
    own = dbcnode.install_folder(processes, options.dbc_dir)
    if own is not None:
        folders.add(own)
    files = [f"{f}/{name}" for f in sorted(folders) for name in ("conf/core.conf", "dat/node.dat")]
    return {"files": files, "lists": sorted(folders)}


class NodeReadTarget:
    """Serves a node's reads from the answers of a few batched commands (see the module)."""

    def __init__(self, inner: Target, options: NodeOptions | None = None) -> None:
        self.inner = inner
        self.name: str = inner.name
        self.options = options or NodeOptions()
        self.files: dict[str, list[Any]] = {}
        self.links: dict[str, list[Any]] = {}
        self.lists: dict[str, list[Any]] = {}
        self.cmds: dict[tuple[str, ...], list[Any]] = {}
        self.misses: list[str] = []
        self.error: FactError | None = None
        self.fetched = False

    # --- filling the cache ------------------------------------------------------------

    def prefetch(self) -> None:
        """The two rounds; a node that cannot be read keeps its FactError for every read."""
        if self.fetched:
            return
        self.fetched = True
        try:
            self._ask(declared(self.options))
            self._ask(dbc_folders(self, self.options))
        except FactError as exc:
            self.error = exc

    def _ask(self, request: dict[str, Any]) -> None:
        cmds = [tuple(argv) for argv, _ in request.get("cmds", [])]
        out = self.inner.run(["python3", "-c", READER, encode_request(request)],
                             timeout=READER_TIMEOUT)
        if not out.ok:
            raise FactError(f"the node ({self.name}) with one python3 command", out.describe())
        try:
            reply = decode_reply(out.stdout)
        except ValueError as exc:
            raise FactError(f"the node's answer ({self.name})", str(exc), verb="parse") from None
        self.files.update(reply["files"])
        self._register_secrets()
        self.links.update(reply["links"])
        self.lists.update(reply["lists"])
        self.cmds.update(zip(cmds, reply["cmds"]))

    def _register_secrets(self) -> None:
        """Every node.dat answered: its secrets known before anything is written."""
        for path, found in self.files.items():
            if path.endswith("/node.dat") and found and found[0]:
                register_node_dat(str(found[1]))

    def resolve_paths(self, paths: list[str]) -> None:
        """Read, in one command, every link met on resolving these paths (for a snapshot)."""
        if self.error is None:
            self._ask({"walk": sorted(set(paths))})

    def export(self) -> dict[str, Any]:
        """The answers as JSON data (for xdist's workers)."""
        error = None if self.error is None else [self.error.source, self.error.why]
        return {"files": self.files, "links": self.links, "lists": self.lists,
                "cmds": [[list(k), v] for k, v in self.cmds.items()], "error": error}

    def load(self, data: dict[str, Any]) -> None:
        """Take the answers another process read (see :meth:`export`)."""
        self.files = dict(data["files"])
        self._register_secrets()
        self.links = dict(data["links"])
        self.lists = dict(data["lists"])
        self.cmds = {tuple(argv): list(v) for argv, v in data["cmds"]}
        error = data.get("error")
        self.error = FactError(error[0], error[1]) if error else None
        self.fetched = True

    # --- the Target operations --------------------------------------------------------

    def _answer(self, table: dict[str, list[Any]], path: str) -> list[Any] | None:
        if not self.fetched:
            self.prefetch()
        if self.error is not None:
            raise FactError(self.error.source, self.error.why)  # a fresh one: no growing traceback
        found = table.get(path)
        if found is None:
            self.misses.append(path)
        return found

    @staticmethod
    def _value(found: list[Any], path: str) -> Any:
        if found[0]:
            return found[1]
        raise OSError(found[1], found[2], path)  # errno 2 makes a FileNotFoundError, ...

    def read_text(self, path: str) -> str:
        found = self._answer(self.files, path)
        return self.inner.read_text(path) if found is None else str(self._value(found, path))

    def read_link(self, path: str) -> str:
        found = self._answer(self.links, path)
        return self.inner.read_link(path) if found is None else str(self._value(found, path))

    def list_dir(self, path: str) -> list[str]:
        found = self._answer(self.lists, path)
        if found is None:
            return self.inner.list_dir(path)
        return [str(n) for n in self._value(found, path)]

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        key = tuple(argv)
        if not self.fetched:
            self.prefetch()
        if self.error is not None:
            raise FactError(self.error.source, self.error.why)
        found = self.cmds.get(key)
        if found is None:
            self.misses.append(" ".join(key)[:80])
            return self.inner.run(argv, timeout)
        rc, stdout, stderr = found
        return CommandResult(key, int(rc), str(stdout), str(stderr))
