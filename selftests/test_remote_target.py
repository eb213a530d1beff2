"""The remote target against a real sshd on 127.0.0.1, through testinfra's paramiko backend.

The module starts its own ``/usr/sbin/sshd -D`` on a free port with a host key, config and
authorized keys made in a temporary folder. One key logs in as root; a second is forced
(``command=``) to run as ``nobody``, so that "permission denied" can be compared too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dbc_accept.facts.registry import all_gatherers
from dbc_accept.target import LocalTarget, Target, TestinfraTarget
from dbc_accept.verdict import FactError
from selftests.prereq import unavailable

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
SSHD = "/usr/sbin/sshd"
NOBODY = 65534
AS_NOBODY = (f'command="exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups '
             '/bin/sh -c \\"$SSH_ORIGINAL_COMMAND\\""')


@dataclass
class Sshd:
    port: int
    root_key: str
    nobody_key: str
    folder: Path

    @property
    def ssh_config(self) -> str:
        """A client config that accepts the throw-away host key without a warning."""
        return str(self.folder / "ssh_config")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True)


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        unavailable("needs openssh-server and openssh-client (apt-get install openssh-server)")
    if os.geteuid() != 0:
        unavailable("sshd for the remote selftests must be started as root")
    folder = Path(tempfile.mkdtemp(prefix="dbc-accept-sshd-"))
    for name in ("host", "root", "nobody"):
        _keygen(folder / name)
    keys = folder / "authorized_keys"
    keys.write_text((folder / "root.pub").read_text()
                    + f"{AS_NOBODY} {(folder / 'nobody.pub').read_text()}")
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host'}\n"
        f"PidFile {folder / 'sshd.pid'}\nAuthorizedKeysFile {keys}\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "MaxStartups 50\nMaxSessions 50\n"
        # The suite's python3 first (as LocalTarget runs it), and a HOME without the
        # .bashrc of this machine, whose pyenv set-up costs 0.2 s per command.
        f"SetEnv PATH={os.path.dirname(sys.executable)}:/usr/sbin:/usr/bin:/sbin:/bin "
        f"HOME={folder}\n")
    (folder / "ssh_config").write_text("Host *\n  StrictHostKeyChecking no\n")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    log = (folder / "sshd.log").open("wb")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((folder / "sshd.log").read_text()) from None
                time.sleep(0.05)
        yield Sshd(port, str(folder / "root"), str(folder / "nobody"), folder)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def remote(sshd: Sshd, key: str | None = None, host: str = "127.0.0.1",
           backend: str = "paramiko") -> TestinfraTarget:
    import testinfra

    spec = f"{backend}://root@{host}:{sshd.port}"
    return TestinfraTarget(testinfra.get_host(spec, ssh_identity_file=key or sshd.root_key,
                                              ssh_config=sshd.ssh_config))


# --- parity of the four operations ---------------------------------------------------


@pytest.fixture
def tree() -> Iterator[Path]:
    """A tree with every kind of path; readable by nobody except where said."""
    top = Path(tempfile.mkdtemp(prefix="dbc-accept-parity-"))
    top.chmod(0o755)
    (top / "file").write_bytes(b"line one\n\xc3\xa9t\xe9\n")  # UTF-8, then a bad byte
    (top / "empty").write_text("")
    (top / "dir").mkdir()
    (top / "dir" / "a").write_text("a")
    (top / "dir" / ".hidden").write_text("h")
    (top / "dir" / "with space").write_text("s")
    (top / "link").symlink_to("file")
    (top / "dirlink").symlink_to("dir")
    (top / "dangling").symlink_to("nowhere")
    (top / "secret").write_text("s")
    (top / "secret").chmod(0o600)
    (top / "closed").mkdir(mode=0o700)
    (top / "closed" / "inner").write_text("i")
    yield top
    shutil.rmtree(top)


PATHS = ["file", "empty", "dir", "dir/a", "dir/with space", "link", "dirlink", "dangling",
         "missing", "file/below", "secret", "closed", "closed/inner", "dirlink/a"]
COMMANDS = [
    ["sh", "-c", "echo out; echo err >&2; exit 3"],
    ["no-such-command-dbc-accept"],
    ["true"],
    ["printf", "%s|", "a b", "$HOME", "it's"],
    ["cat", "/nonexistent/dbc-accept"],
]


def _outcome(fn: Callable[[str], Any], path: str) -> list[Any]:
    try:
        return ["ok", fn(path)]
    except OSError as exc:
        return ["error", type(exc).__name__]


def outcomes(target: Target, top: str) -> dict[str, Any]:
    """What each operation gives on each path of the tree, and each command's result."""
    seen: dict[str, Any] = {}
    for rel in PATHS:
        path = f"{top}/{rel}"
        seen[f"read_text {rel}"] = _outcome(target.read_text, path)
        seen[f"read_link {rel}"] = _outcome(target.read_link, path)
        seen[f"list_dir {rel}"] = _outcome(target.list_dir, path)
    for argv in COMMANDS:
        res = target.run(argv)
        seen[f"run {argv}"] = [res.rc, res.stdout, bool(res.stderr)]
    return seen


def test_operations_match_local_as_root(sshd: Sshd, tree: Path) -> None:
    local = outcomes(LocalTarget(), str(tree))
    assert local["read_text missing"] == ["error", "FileNotFoundError"]
    assert local["run ['no-such-command-dbc-accept']"][0] == 127
    assert outcomes(remote(sshd), str(tree)) == local


def _local_as_nobody(top: str) -> dict[str, Any]:
    """``outcomes`` of LocalTarget in a forked child that runs as nobody."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, report, exit without pytest's clean-up
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            # root's PATH holds folders nobody may not search: exec would say EACCES.
            os.environ["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
            with os.fdopen(write_end, "w") as out:
                json.dump(outcomes(LocalTarget(), top), out)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as got:
        data = got.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0
    return dict(json.loads(data))


def test_operations_match_local_unprivileged(sshd: Sshd, tree: Path) -> None:
    local = _local_as_nobody(str(tree))
    assert local["read_text secret"] == ["error", "PermissionError"]
    assert local["list_dir closed"] == ["error", "PermissionError"]
    assert local["read_text closed/inner"] == ["error", "PermissionError"]
    assert outcomes(remote(sshd, key=sshd.nobody_key), str(tree)) == local


def test_operations_match_local_through_the_ssh_command(sshd: Sshd, tree: Path) -> None:
    assert outcomes(remote(sshd, backend="ssh"), str(tree)) == outcomes(LocalTarget(), str(tree))


def test_unreachable_host_through_the_ssh_command() -> None:
    import testinfra

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = TestinfraTarget(testinfra.get_host(f"ssh://root@127.0.0.1:{port}"))
    with pytest.raises(FactError, match=r"cannot connect: ssh: connect to host"):
        target.read_text("/etc/hostname")
    with pytest.raises(FactError, match="cannot connect"):
        target.list_dir("/etc")


def test_unreachable_host_fails_every_fact_at_once() -> None:
    import testinfra

    port = _free_port()  # nothing listens there
    target = TestinfraTarget(testinfra.get_host(f"paramiko://root@127.0.0.1:{port}"))
    for _ in range(3):
        start = time.monotonic()
        with pytest.raises(FactError, match=r"could not read paramiko://127\.0\.0\.1: cannot"):
            target.read_text("/etc/hostname")
        assert time.monotonic() - start < 5


# --- gatherers and whole runs --------------------------------------------------------


def _gathered(target: Target, gatherer: Callable[[Target], Any]) -> Any:
    try:
        return gatherer(target)
    except FactError as exc:
        return f"FactError: {exc}"


def test_every_gatherer_gives_the_same_facts_remotely(sshd: Sshd) -> None:
    target = remote(sshd)
    local = LocalTarget()
    steady = [g for g in all_gatherers() if not VOLATILE_FACTS.search(g.__name__)]
    differ = {g.__name__: (_gathered(local, g), _gathered(target, g))
              for g in steady if _gathered(local, g) != _gathered(target, g)}
    assert len(steady) > 10 and not differ


def _outcomes_of(junit: Path) -> dict[str, str]:
    """test id -> passed/failed/skipped/error from a JUnit XML file."""
    found: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        found[f"{case.get('classname')}::{case.get('name')}"] = kinds[0] if kinds else "passed"
    return found


def _host_run(pytester: pytest.Pytester, *args: str,
              report: tuple[str, ...] = ("--no-report",)
              ) -> tuple[pytest.RunResult, dict[str, str]]:
    junit = pytester.path / f"junit-{len(list(pytester.path.glob('junit-*')))}.xml"
    result = pytester.runpytest_subprocess(
        "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), "-m", "host",
        *report, "-p", "no:randomly", f"--junitxml={junit}", str(ROOT / "tests_host"),
        *args,
    )
    assert result.ret in (0, 1), result.stdout.str() + result.stderr.str()
    return result, _outcomes_of(junit)


# Checks of the live libvirtd, its VMs and networks, and of the process list: other test
# runs on this machine (VM selftests, fake dbc programs) change them from one second to
# the next, so two runs taken apart in time may differ there without any fault of ours.
VOLATILE = re.compile(r"test_leftovers|test_libvirt_connects|test_libvirt_offers_kvm|"
                      r"test_libvirtd_listening|test_default_network|test_dbc_|"
                      r"test_ports_distinct|test_monitor_server|test_node_dat")


VOLATILE_FACTS = re.compile(r"dbc|libvirt|listener|node_conf|monitor|domain|leftover")


def stable(outcomes: dict[str, str]) -> dict[str, str]:
    """The outcomes of the checks whose facts do not change under concurrent test runs."""
    return {k: v for k, v in outcomes.items() if not VOLATILE.search(k)}


def _by_test(found: dict[str, str], node: str) -> dict[str, str]:
    """The outcomes of one node, keyed by test id without the node's name."""
    out = {}
    for nodeid, outcome in found.items():
        head, _, params = nodeid.partition("[")
        if params.startswith(node):
            out[f"{head}[{params[len(node):]}"] = outcome
    return out


def test_host_run_on_sshd_equals_local_run(pytester: pytest.Pytester, sshd: Sshd) -> None:
    _, local = _host_run(pytester)
    spec = f"paramiko://root@127.0.0.1:{sshd.port}"
    _, far = _host_run(pytester, f"--hosts={spec}", f"--ssh-identity-file={sshd.root_key}",
                              f"--ssh-config={sshd.ssh_config}")
    node = f"paramiko://127.0.0.1:{sshd.port}"
    assert all(f"[{node}" in nodeid for nodeid in far), far
    assert stable(_by_test(far, node)) == stable(_by_test(local, "local"))
    assert len(stable(_by_test(local, "local"))) > 20, "too few host tests ran"


def test_xdist_checks_two_nodes_in_one_report(pytester: pytest.Pytester, sshd: Sshd) -> None:
    nodes = [f"paramiko://127.0.0.1:{sshd.port}", f"paramiko://localhost:{sshd.port}"]
    hosts = ",".join(n.replace("://", "://root@") for n in nodes)
    reports = pytester.path / "reports"
    result, found = _host_run(pytester, "-n", "2", f"--hosts={hosts}",
                              f"--ssh-identity-file={sshd.root_key}",
                              f"--ssh-config={sshd.ssh_config}",
                              report=(f"--report-dir={reports}",))
    first, second = (_by_test(found, n) for n in nodes)
    assert first and stable(first) == stable(second)
    assert len(found) == len(first) + len(second)  # every test id names its node
    result.stdout.fnmatch_lines(["*2 workers*"])
    assert len([ln for ln in result.stdout.lines if ln.startswith("=") and " in " in ln]) == 1
    written = list(reports.glob("*/report.html"))  # one report, by the controller
    assert len(written) == 1, list(reports.iterdir())
    html = written[0].read_text(encoding="utf-8")
    assert all(node in html for node in nodes)


def test_bad_hosts_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), "-m", "host",
        "--no-report", "--hosts=nosuchscheme://x", str(ROOT / "tests_host"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hosts nosuchscheme://x*Unknown connection type*"])


def test_ansible_inventory_without_ansible_is_a_usage_error(pytester: pytest.Pytester) -> None:
    if shutil.which("ansible-inventory"):
        pytest.skip("Ansible is installed here: the message for its absence cannot be seen")
    inventory = pytester.path / "hosts.ini"
    inventory.write_text("[nodes]\nnode1 ansible_host=127.0.0.1\n")
    result = pytester.runpytest_subprocess(
        "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), "-m", "host",
        "--no-report", f"--ansible-inventory={inventory}", str(ROOT / "tests_host"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ansible-inventory *hosts.ini: the `ansible-inventory` "
                                 "command is not installed; install Ansible*"])
