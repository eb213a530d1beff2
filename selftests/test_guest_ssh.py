"""SshGuest against a private sshd on 127.0.0.1 (real paramiko, real OpenSSH)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dbc_accept.guest import Guest
from dbc_accept.guest.hostkeys import host_id
from dbc_accept.guest.ssh import (
    Credentials,
    GuestAuthError,
    GuestConnectionLost,
    GuestError,
    HostKeyChanged,
    HostKeyPin,
    SshGuest,
    parse_ssh_url,
    redact,
)
from selftests.prereq import unavailable

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
if not os.path.exists(SSHD) or os.geteuid() != 0:
    unavailable("needs OpenSSH's sshd and root (sshd changes user)", module=True)


# Kills the nearest sshd ancestor (this connection's session process), then waits.
KILL_SSHD_SESSION = """
import os, signal, time
pid = os.getppid()
while pid > 1:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    with open(f"/proc/{pid}/comm") as fh:
        comm = fh.read().strip()
    if comm.startswith("sshd"):
        os.kill(pid, signal.SIGKILL)
        break
    pid = int(fields[1])
time.sleep(20)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sshd:
    port: int
    client_key: Path
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, host_key: Path) -> None:
        cfg = self.dir / "sshd_config"
        cfg.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"AuthorizedKeysFile {self.dir}/authorized_keys\nPasswordAuthentication no\n"
            f"PidFile {self.dir}/sshd.pid\nStrictModes no\nUsePAM no\n"
            "PermitRootLogin yes\nSubsystem sftp internal-sftp\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)],
                                     stderr=subprocess.DEVNULL)
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("sshd did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True)
    return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    d = tmp_path_factory.mktemp("sshd")
    key = _keygen(d / "client")
    (d / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    server = Sshd(_free_port(), key, d)
    server.start(_keygen(d / "host1"))
    yield server
    server.stop()


def _guest(sshd: Sshd, pin: HostKeyPin | None = None, **kw: object) -> SshGuest:
    creds = Credentials("root", key_path=str(sshd.client_key))
    pin = pin or HostKeyPin(accept_new=True)  # these tests are about the session, not the key
    return SshGuest("127.0.0.1", sshd.port, creds, pin=pin, connect_timeout=5, **kw)  # type: ignore[arg-type]


@pytest.fixture()
def guest(sshd: Sshd) -> Iterator[SshGuest]:
    with _guest(sshd) as g:
        yield g


def test_is_a_guest_with_private_workdir(guest: SshGuest) -> None:
    assert isinstance(guest, Guest)
    assert guest.workdir.startswith("/tmp/dbc-accept.")
    assert guest.list_dir(guest.workdir) == []
    assert guest.name.startswith("ssh://root@127.0.0.1:")


def test_workdir_removed_at_close(sshd: Sshd) -> None:
    g = _guest(sshd).connect()
    workdir = g.workdir
    g.close()
    assert not os.path.exists(workdir)


def test_target_operations_follow_os_conventions(guest: SshGuest, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("héllo\n")
    os.symlink("f", tmp_path / "l")
    assert guest.read_text(str(tmp_path / "f")) == "héllo\n"
    assert guest.read_link(str(tmp_path / "l")) == "f"
    assert guest.list_dir(str(tmp_path)) == ["f", "l"]
    with pytest.raises(FileNotFoundError):
        guest.read_text(str(tmp_path / "missing"))
    with pytest.raises(NotADirectoryError):
        guest.list_dir(str(tmp_path / "f"))
    with pytest.raises(OSError):
        guest.read_link(str(tmp_path / "f"))
    with pytest.raises(IsADirectoryError):
        guest.read_text(str(tmp_path))


def test_run_quotes_argv_and_reports_rc(guest: SshGuest) -> None:
    res = guest.run(["sh", "-c", 'printf "%s|" "$@"; echo err >&2; exit 3', "_", "a b", "$HOME;x"])
    assert (res.rc, res.stdout, res.stderr.strip()) == (3, "a b|$HOME;x|", "err")
    assert guest.run(["no-such-command-xyz"]).rc == 127


def test_run_times_out_with_rc_124(guest: SshGuest) -> None:
    start = time.monotonic()
    res = guest.run(["sleep", "30"], timeout=1)
    assert res.rc == 124
    assert time.monotonic() - start < 10


def test_stream_hands_over_each_line_as_it_arrives(guest: SshGuest) -> None:
    # the CNN probe's progress: a line must reach the host while the command still runs
    seen: list[tuple[str, float]] = []
    start = time.monotonic()
    res = guest.stream(["sh", "-c", "echo one; echo two; sleep 2; printf 'three\\nlast'"],
                       30, lambda line: seen.append((line, time.monotonic() - start)))
    assert res.rc == 0 and res.stdout == "one\ntwo\nthree\nlast"
    assert [line for line, _ in seen] == ["one", "two", "three", "last"]
    ended = time.monotonic() - start
    assert seen[0][1] < ended - 1.5  # before the sleep, not at the end
    assert seen[2][1] >= 2.0


def _gone(pid: int) -> bool:
    """True once ``pid`` has ended (a zombie counts as ended), within 5 s."""
    for _ in range(50):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def test_open_process_talks_line_by_line_and_kill_ends_its_group(guest: SshGuest) -> None:
    proc = guest.open_process(["sh", "-c", 'sleep 300 & echo "$!"; while read x; do '
                                           'echo "got $x"; echo "err $x" >&2; done'])
    child = int(proc.read_line(10) or "0")
    proc.send("a b")
    assert proc.read_line(10) == "got a b"
    assert proc.read_line(0.2) is None  # nothing more yet: it waits for input
    for _ in range(50):
        if "err a b" in proc.stderr_tail():
            break
        time.sleep(0.1)
    assert proc.stderr_tail() == "err a b"
    proc.kill()
    assert _gone(child)  # the whole group, not only the command
    with pytest.raises(EOFError):
        proc.read_line(5)


WORKER_PROBES = {
    "crash": "def collect(_args):\n    sys.stderr.write('leaving now\\n')\n    "
             "sys.stderr.flush()\n    os._exit(9)\n",
    "hang": "def collect(_args):\n    time.sleep(300)\n",
}


def test_probe_worker_over_ssh(guest: SshGuest, tmp_path: Path) -> None:
    from dbc_accept.guest.probe import ProbeError, ProbeRunner

    with ProbeRunner(guest, worker=True) as probes:
        for name, body in WORKER_PROBES.items():
            (tmp_path / f"{name}.py").write_text(
                "import os, sys, time\nsys.path.insert(0, os.path.dirname(__file__))\n"
                "import dbcprobe\n" + body)
            probes.ship(name, tmp_path / f"{name}.py")
        first = probes.run("sysinfo")
        assert probes.run("sysinfo") == first and probes.worker_starts == 1
        assert probes._worker is not None
        pid = probes._worker.pid
        assert isinstance(pid, int)
        with pytest.raises(ProbeError, match=r"died while running it \(exit status 9\).*"
                                             "leaving now"):
            probes.run("crash")
        assert _gone(pid)
        probes.run("sysinfo")
        assert probes._worker is not None
        hung = probes._worker.pid
        with pytest.raises(ProbeError, match="hung: no answer within 2 s"):
            probes.run("hang", timeout=2)
        assert _gone(int(hung or 0))
        probes.run("sysinfo")
        assert probes.worker_starts == 3 and probes._worker is not None
        last = probes._worker.pid
        assert os.path.exists(f"/proc/{last}")
    assert _gone(last)  # closed with the runner


def test_put_uploads_with_mode(guest: SshGuest, tmp_path: Path) -> None:
    src = tmp_path / "probe.py"
    src.write_text("print('ok')\n")
    src.chmod(0o755)
    dest = f"{guest.workdir}/probe.py"
    guest.put(str(src), dest)
    assert guest.run(["python3", dest]).stdout == "ok\n"
    assert os.stat(dest).st_mode & 0o777 == 0o755


def test_testinfra_host_shares_the_connection(guest: SshGuest) -> None:
    host = guest.testinfra_host
    assert host.run("echo %s", "a b").stdout == "a b\n"
    assert host.file(guest.workdir).is_directory


def test_wrong_key_fails_clearly_without_secret(sshd: Sshd, tmp_path: Path) -> None:
    other = _keygen(tmp_path / "other")
    creds = Credentials("root", password="s3cret-pass", key_path=str(other))
    with pytest.raises(GuestAuthError) as err:
        SshGuest("127.0.0.1", sshd.port, creds, pin=HostKeyPin(accept_new=True),
                 connect_timeout=5).connect()
    assert "authentication as root" in str(err.value)
    assert "s3cret-pass" not in str(err.value)
    assert "s3cret-pass" not in repr(creds)


def test_changed_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    pin = HostKeyPin(accept_new=True)
    _guest(sshd, pin).connect().close()  # pins the first key seen
    _guest(sshd, pin).connect().close()  # same key: fine
    sshd.stop()
    try:
        sshd.start(_keygen(tmp_path / "host2"))
        with pytest.raises(HostKeyChanged, match="host key changed"):
            _guest(sshd, pin).connect()
    finally:
        sshd.stop()
        sshd.start(sshd.dir / "host1")


def test_known_hosts_without_the_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    with pytest.raises(HostKeyChanged, match="not in"):
        _guest(sshd, HostKeyPin(str(known))).connect()


def test_an_unknown_key_is_refused_unless_accepted(sshd: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "empty_known_hosts"
    with pytest.raises(HostKeyChanged, match=r"unknown ssh-ed25519 host key.*"
                                             r"--vm-accept-new-host-key"):
        _guest(sshd, HostKeyPin(str(known))).connect()
    _guest(sshd, HostKeyPin(str(known), accept_new=True)).connect().close()
    assert not known.exists()  # nothing is written to the user's file


def _pub_line(sshd: Sshd, name: str) -> str:
    return Path(f"{sshd.dir / name}.pub").read_text().strip()


@pytest.mark.parametrize("how", ["known_hosts", "guest agent"])
def test_a_second_server_answering_with_another_key_gets_no_password(
        sshd: Sshd, tmp_path: Path, how: str) -> None:
    name = host_id("127.0.0.1", sshd.port)
    if how == "known_hosts":
        known = tmp_path / "known_hosts"
        known.write_text(f"{name} {_pub_line(sshd, 'host1')}\n")
        pin = HostKeyPin(str(known))
    else:  # the test VM: the key read through the guest agent is pinned before login
        pin = HostKeyPin()
        assert pin.trust(name, [_pub_line(sshd, "host1") + " root@guest"]) == 1
    _guest(sshd, pin).connect().close()  # the real machine: accepted
    sshd.stop()
    try:  # another machine answers first on the same address, with a key of its own
        sshd.start(_keygen(tmp_path / "impostor"))
        creds = Credentials("root", password="pw-for-the-real-guest-only")
        with pytest.raises(HostKeyChanged) as err:
            SshGuest("127.0.0.1", sshd.port, creds, pin=pin, connect_timeout=5).connect()
        assert "pw-for-the-real-guest-only" not in str(err.value)
    finally:
        sshd.stop()
        sshd.start(sshd.dir / "host1")


def test_unreachable_port_fails_fast(tmp_path: Path) -> None:
    creds = Credentials("root", password="x")
    start = time.monotonic()
    with pytest.raises(GuestError, match="cannot connect"):
        SshGuest("127.0.0.1", _free_port(), creds, connect_timeout=3).connect()
    assert time.monotonic() - start < 5


def test_lost_connection_raises(sshd: Sshd) -> None:
    g = _guest(sshd).connect()
    try:
        # End this session's sshd process from inside: the connection drops mid-command.
        with pytest.raises(GuestConnectionLost, match="lost the SSH connection"):
            g.run(["python3", "-c", KILL_SSHD_SESSION], timeout=30)
    finally:
        g.close()


def test_alive_callback_ends_a_wait_on_a_dead_guest(sshd: Sshd) -> None:
    g = _guest(sshd, alive=lambda: "the domain is shut off (destroyed)").connect()
    try:
        start = time.monotonic()
        with pytest.raises(GuestConnectionLost, match="destroyed"):
            g.run(["sleep", "20"], timeout=30)
        assert time.monotonic() - start < 5
    finally:
        g.alive = None
        g.close()


def test_alive_callback_ends_a_read_from_a_process_of_a_dead_guest(sshd: Sshd) -> None:
    g = _guest(sshd, alive=lambda: "the domain is shut off (destroyed)").connect()
    try:
        proc = g.open_process(["sleep", "20"])
        start = time.monotonic()
        with pytest.raises(GuestConnectionLost, match="destroyed"):
            proc.read_line(30)
        assert time.monotonic() - start < 5
        g.alive = None
        proc.kill()
    finally:
        g.alive = None
        g.close()


def test_parse_ssh_url() -> None:
    assert parse_ssh_url("ssh://dbc@10.0.0.5:2222") == ("dbc", "10.0.0.5", 2222)
    assert parse_ssh_url("ssh://n1") == ("", "n1", 22)
    for bad in ("http://x", "ssh://", "ssh://u:pw@h", "ssh://h:port"):
        with pytest.raises(ValueError):
            parse_ssh_url(bad)


def test_redact() -> None:
    assert redact("login pw=hunter2 failed", ["hunter2", ""]) == "login pw=*** failed"
