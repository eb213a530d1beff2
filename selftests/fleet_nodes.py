"""Nodes for the fleet selftests: this machine behind sshd servers the tests start themselves.

A node is one ``/usr/sbin/sshd -D`` with its own port, log and keys. On loopback it listens
on 127.0.0.1; in a namespace it runs inside a network namespace of its own
(``ip netns``), reached through a veth pair whose two addresses (198.18.S.1 here, 198.18.S.2
there, S a /24 nothing else here uses: the range set aside for network tests, RFC 2544) exist
only on the pair the test made. No other address is used. Each sshd logs at VERBOSE, one
``Starting session:`` line per remote command, so the tests count the round trips the node
saw.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from selftests.prereq import unavailable

SSHD = "/usr/sbin/sshd"
NET = "198.18"  # RFC 2544 benchmarking range, only on the veth pairs made here
LOCK = "/tmp/dbc-accept-fleet-subnets.lock"
# The node's own python3 (no libvirt module), as on a node set up by the install guide.
NODE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Node:
    host: str
    port: int
    key: str
    log: Path
    netns: str = ""

    @property
    def spec(self) -> str:
        return f"paramiko://root@{self.host}:{self.port}"

    @property
    def name(self) -> str:
        """The node's name in test ids."""
        return f"paramiko://{self.host}:{self.port}"

    def sessions(self) -> int:
        """Remote commands this node's sshd has started so far."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text.count("Starting session: command")


def require_root_sshd() -> None:
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        unavailable("needs openssh-server and openssh-client (apt-get install openssh-server)")
    if os.geteuid() != 0:
        unavailable("the fleet selftests start sshd servers and namespaces: run as root")


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sshd_config(folder: Path, name: str, host: str, port: int, keys: Path) -> Path:
    config = folder / f"sshd-{name}.conf"
    config.write_text(
        f"Port {port}\nListenAddress {host}\nHostKey {folder / 'host'}\n"
        f"PidFile {folder / f'sshd-{name}.pid'}\nAuthorizedKeysFile {keys}\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel VERBOSE\n"
        "MaxStartups 100\nMaxSessions 100\n"
        f"SetEnv PATH={NODE_PATH} HOME={folder}\n")
    return config


def _free_subnet() -> int | None:
    """The lowest S in 1..254 such that nothing here uses 198.18.S.0/24."""
    seen = ""
    for argv in (["ip", "-4", "-o", "addr", "show"], ["ip", "-4", "route", "show", "table", "all"]):
        seen += subprocess.run(argv, capture_output=True, text=True).stdout
    used = {int(m) for m in re.findall(rf"\b{re.escape(NET)}\.(\d+)\.", seen)}
    return next((s for s in range(1, 255) if s not in used), None)


def _wait(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace") if log.exists() else ""
                raise RuntimeError(f"sshd on {host}:{port} did not start: {text}") from None
            time.sleep(0.05)


class Fleet:
    """Start nodes; stop them all (and remove their namespaces) on :meth:`close`."""

    def __init__(self) -> None:
        require_root_sshd()
        self.folder = Path(tempfile.mkdtemp(prefix="dbc-accept-fleet-"))
        keygen(self.folder / "host")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.namespaces: list[str] = []
        self.nodes: list[Node] = []
        (self.folder / "ssh_config").write_text("Host *\n  StrictHostKeyChecking no\n")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir

    @property
    def ssh_config(self) -> str:
        return str(self.folder / "ssh_config")

    def key(self, name: str) -> str:
        path = self.folder / name
        if not path.exists():
            keygen(path)
        return str(path)

    def _start(self, name: str, host: str, port: int, key: str, netns: str = "") -> Node:
        keys = self.folder / f"authorized-{name}"
        keys.write_text(Path(key + ".pub").read_text())
        config = _sshd_config(self.folder, name, host, port, keys)
        log = self.folder / f"sshd-{name}.log"
        argv = [SSHD, "-D", "-E", str(log), "-f", str(config)]
        proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv] if netns else argv)
        self.procs.append(proc)
        _wait(host, port, proc, log)
        node = Node(host, port, key, log, netns)
        self.nodes.append(node)
        return node

    def loopback(self, key: str = "root") -> Node:
        """A node on 127.0.0.1, a free port."""
        return self._start(f"lo{len(self.nodes)}", "127.0.0.1", free_port(), self.key(key))

    def namespaced(self, count: int, key: str = "root", port: int = 22) -> list[Node]:
        """``count`` nodes, each in a network namespace of its own.

        Node K gets the /24 198.18.S: the lowest S no interface or route of this machine
        uses, chosen under a lock, so that test runs side by side (xdist) never share one.
        """
        if shutil.which("ip") is None:
            unavailable("needs iproute2 (apt-get install iproute2)")
        made = []
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            for _ in range(count):
                subnet = _free_subnet()
                if subnet is None:
                    unavailable(f"no free /24 left in {NET}.0.0/16 for a namespace node")
                k = len(self.namespaces) + 1
                made.append(self._namespace(k, subnet, self.key(key), port))
        return made

    def _namespace(self, k: int, subnet: int, key: str, port: int) -> Node:
        tag = f"{os.getpid() % 100000}x{k}"
        ns, outer, inner = f"dbcfleet-{tag}", f"dbf{tag}a", f"dbf{tag}b"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        self.namespaces.append(ns)
        steps = [
            ["ip", "link", "add", outer, "type", "veth", "peer", "name", inner],
            ["ip", "link", "set", inner, "netns", ns],
            ["ip", "addr", "add", f"{NET}.{subnet}.1/24", "dev", outer],
            ["ip", "link", "set", outer, "up"],
            ["ip", "-n", ns, "addr", "add", f"{NET}.{subnet}.2/24", "dev", inner],
            ["ip", "-n", ns, "link", "set", inner, "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
        ]
        for step in steps:
            subprocess.run(step, check=True, capture_output=True)
        return self._start(ns, f"{NET}.{subnet}.2", port + k, key, ns)

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns in self.namespaces:  # removing it removes the veth pair too
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def fleet() -> Iterator[Fleet]:
    made = Fleet()
    try:
        yield made
    finally:
        made.close()
