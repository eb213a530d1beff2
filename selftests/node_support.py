"""The node in miniature for the selftests: build (cached), start, SSH, copy the repo, stop.

The node is scripts/build-node-image.sh's image started by scripts/start-node.sh under
software emulation; see docs/node-in-miniature.md. Commands run in it through the OpenSSH
client with the image's throw-away key.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAND_IN_IDS = "8086:10d3"  # the e1000e of each stand-in slot counts as the GPU
STAND_IN = "0000:01:00.0"  # first slot: the GPU the tests pass through
STAND_IN_AUDIO = "0000:01:00.1"
RENTER_STAND_IN = "0000:02:00.0"  # second slot: a renter's
NODE_REPO = "/root/dbc-accept"
WHEELS = "/opt/dbc-accept-wheels"
VENV = "/opt/dbc-accept-venv"  # the dependencies, installed when the image was built
BOOT_LIMIT = 600.0
BOOT_ARGS = "root=/dev/vda rw console=ttyS0"  # as scripts/build-node-image.sh puts them first
# What update-grub would put on the kernel line: GRUB_CMDLINE_LINUX then ..._DEFAULT.
GRUB_LINE = '. /etc/default/grub; echo "$GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT"'


def node_images() -> dict[str, str]:
    """DBC_NODE_DIR and DBC_NODE_KEY, building the images when they are not cached."""
    out = subprocess.run([str(REPO / "scripts" / "build-node-image.sh")], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    """One running node: its run folder (overlays, console, monitor) and SSH port."""

    variant: str
    run_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    timings: dict[str, float] = field(default_factory=dict)
    copied: bool = False  # the checkout is in NODE_REPO

    @property
    def key(self) -> str:
        return self.env["DBC_NODE_KEY"]

    def start(self) -> None:
        env = dict(os.environ, **self.env)
        subprocess.run([str(REPO / "scripts" / "start-node.sh"), self.variant,
                        str(self.run_dir), str(self.port)], check=True, env=env)

    def ssh_argv(self, command: str) -> list[str]:
        return ["ssh", "-i", self.key, "-p", str(self.port), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "root@127.0.0.1", command]

    def ssh(self, command: str, timeout: float = 600.0,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run a shell command in the node: (rc, stdout+stderr)."""
        return subprocess.run(self.ssh_argv(command), input=stdin.decode("latin-1")
                              if stdin is not None else None, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)

    def wait_ssh(self, limit: float = BOOT_LIMIT) -> float:
        """Seconds from now until `true` runs over SSH; AssertionError with the console."""
        start = time.monotonic()
        while time.monotonic() - start < limit:
            try:
                if self.ssh("systemctl is-system-running --wait >/dev/null 2>&1; true",
                            timeout=120).returncode == 0:
                    return time.monotonic() - start
            except subprocess.TimeoutExpired:
                pass
            if not self.running() or "Kernel panic" in self.console():
                break
            time.sleep(3)
        raise AssertionError(f"the {self.variant} node did not answer SSH within {limit:.0f} s;"
                             f" console:\n{self.console()[-3000:]}")

    def console(self) -> str:
        path = self.run_dir / "serial.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pid(self) -> int | None:
        try:
            return int((self.run_dir / "qemu.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False

    def copy_repo(self) -> None:
        """The checkout's files (tracked and new, not ignored) to NODE_REPO."""
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"],
                               cwd=REPO, check=True, stdout=subprocess.PIPE).stdout
        names = [n for n in files.decode().split("\0") if n and (REPO / n).is_file()
                 and not n.startswith("selftests/data/")]
        tar = subprocess.run(["tar", "-C", str(REPO), "-cf", "-", *names], check=True,
                             stdout=subprocess.PIPE).stdout
        put = subprocess.run(self.ssh_argv(f"rm -rf {NODE_REPO} && mkdir -p {NODE_REPO} && "
                                           f"tar -C {NODE_REPO} -xf -"), input=tar,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        assert put.returncode == 0, put.stdout.decode(errors="replace")
        self.copied = True

    def stop(self) -> None:
        """Power off (or kill after 60 s); the run folder stays for a later start."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.ssh("systemctl poweroff --no-block", timeout=30)
        deadline = time.monotonic() + 60
        while self.running() and time.monotonic() < deadline:
            time.sleep(1)
        if self.running():
            os.kill(pid, signal.SIGKILL)
            time.sleep(1)
        (self.run_dir / "qemu.pid").unlink(missing_ok=True)

    def reboot(self, limit: float = BOOT_LIMIT) -> float:
        """Boot again as GRUB would now: the node's kernel line and initrd; seconds to SSH.

        qemu boots the kernel directly, so what update-grub and update-initramfs wrote in the
        node is copied out first: the line from /etc/default/grub to RUN_DIR/cmdline, the
        running kernel's initrd to RUN_DIR/initrd.img (start-node.sh boots both).
        """
        line = self.ssh(GRUB_LINE, timeout=60)
        assert line.returncode == 0, line.stdout
        initrd = subprocess.run(self.ssh_argv('cat "/boot/initrd.img-$(uname -r)"'),
                                capture_output=True, timeout=300)
        assert initrd.returncode == 0 and initrd.stdout, initrd.stderr.decode(errors="replace")
        self.ssh("sync", timeout=120)
        self.stop()
        (self.run_dir / "cmdline").write_text(f"{BOOT_ARGS} {line.stdout.strip()}\n")
        (self.run_dir / "initrd.img").write_bytes(initrd.stdout)
        (self.run_dir / "serial.log").unlink(missing_ok=True)
        self.start()
        return self.wait_ssh(limit)

    def monitor(self, command: str) -> str:
        """One command of qemu's human monitor, its answer."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.run_dir / "monitor.sock"))
            s.settimeout(10)
            s.sendall(command.encode() + b"\n")
            time.sleep(1)
            out = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    out += chunk
                    if len(chunk) < 65536:
                        break
            except socket.timeout:
                pass
        return out.decode(errors="replace")


# Nodes left running by booted(keep=True) for the next test module of the same variant
# (the configured node of test_node_e2e.py serves test_node_passthrough.py: one boot, and
# libvirtd's first probe of QEMU made once); stopped by the last user or at session end.
_KEPT: dict[str, Node] = {}


@contextlib.contextmanager
def booted(variant: str, run_dir: Path, copy: bool = True, keep: bool = False) -> Iterator[Node]:
    """A node of ``variant`` booted, the checkout copied in (``copy``); stopped afterwards.

    A node an earlier module kept (``keep``) is used again when it still runs; with ``keep``
    this one is left running for the next module instead of being stopped.
    """
    node = _KEPT.pop(variant, None)
    started = node is None or not node.running()
    if started:
        t0 = time.monotonic()
        node = Node(variant, run_dir, node_images())
        node.timings["images_s"] = time.monotonic() - t0
        node.start()
    kept = False
    try:
        if started:
            node.timings["boot_s"] = node.wait_ssh()
        if copy and not node.copied:
            t0 = time.monotonic()
            node.copy_repo()
            node.timings["copy_s"] = time.monotonic() - t0
        yield node
        kept = keep
    finally:
        if kept:
            _KEPT[variant] = node
        else:
            node.stop()
        print(f"{variant} node timings: {node.timings}", file=sys.stderr)


def stop_kept() -> None:
    """Stop every node a module kept for a next one that did not come (session end)."""
    while _KEPT:
        _KEPT.popitem()[1].stop()


def controller_argv(node: Node, folder: Path) -> list[str]:
    """The options that reach ``node`` from here over SSH (a throw-away ssh_config in folder)."""
    config = folder / "ssh_config"
    config.write_text("Host 127.0.0.1\n  StrictHostKeyChecking no\n"
                      "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
    return [f"--hosts=ssh://root@127.0.0.1:{node.port}", f"--ssh-identity-file={node.key}",
            f"--ssh-config={config}"]


def host_run_from_here(node: Node, folder: Path) -> dict[str, str]:
    """``pytest -m host --hosts=ssh://NODE`` from this machine: test id -> outcome."""
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pytest", "-m", "host", "-q", "-p", "no:cacheprovider",
            *controller_argv(node, folder), f"--gpu-ids={STAND_IN_IDS}",
            f"--report-dir={folder}", "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"),
            str(REPO / "tests_host")]
    run = subprocess.run(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=1200)
    assert run.returncode in (0, 1), run.stdout[-4000:]
    results = sorted(folder.glob("*/results.json"))
    assert results, run.stdout[-4000:]
    return outcomes(results[-1].read_text())


def outcomes(results_json: str) -> dict[str, str]:
    """Test id (without the node's name) -> outcome, from a run's results.json text."""
    data = json.loads(results_json)
    rows = data["tests"] if isinstance(data, dict) and "tests" in data else data
    found = {}
    for row in rows:
        found[strip_node(str(row["id"]))] = str(row["outcome"])
    return found


def strip_node(test_id: str) -> str:
    """``tests_host/test_os.py::test_x[local-a]`` -> ``test_os.py::test_x[a]``."""
    test_id = test_id.split("tests_host/", 1)[-1]
    head, sep, param = test_id.partition("[")
    if not sep:
        return test_id
    param = param[:-1]
    for marker in ("local", "ssh://", "paramiko://"):
        if param.startswith(marker):
            _name, dash, rest = param.partition("-") if marker == "local" else _after_host(param)
            return f"{head}[{rest}]" if dash else head
    return test_id


def _after_host(param: str) -> tuple[str, str, str]:
    """``ssh://root@127.0.0.1:2222-0000:01:00.0`` -> (host, '-', '0000:01:00.0')."""
    host_end = param.find("-", param.find("//") + 2)
    if host_end < 0:
        return param, "", ""
    return param[:host_end], "-", param[host_end + 1:]


def quoted(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
