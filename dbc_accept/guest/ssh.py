"""A guest reached over SSH (paramiko): the test VM, or an existing machine.

Host keys: only pinned ones are accepted (:mod:`dbc_accept.guest.hostkeys`): the test VM's,
read through the guest agent, or those of a known_hosts file. A lost connection raises
:class:`GuestConnectionLost` within seconds (TCP user timeout plus keepalives, and an
optional ``alive`` callback that asks libvirt whether the VM still runs) instead of hanging.
Passwords and keys never appear in messages: every text we raise goes through :func:`redact`.
"""

from __future__ import annotations

import errno
import os
import shlex
import socket
import stat
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from dbc_accept.guest import PassedGpu
from dbc_accept.guest.hostkeys import HostKeyError, HostKeyPin, default_known_hosts
from dbc_accept.guest.linefeed import LineFeed as _LineFeed
from dbc_accept.secrecy import mask_url, mask_values
from dbc_accept.target import TIMEOUT_RC, CommandResult

if TYPE_CHECKING:
    import paramiko

    from dbc_accept.guest.process import GuestProcess

KEEPALIVE_S = 5
# A dead peer (a destroyed VM sends no RST) is noticed when sent data stays unacknowledged
# this long; keepalives make sure something is always being sent.
TCP_USER_TIMEOUT_MS = 20_000
POLL_S = 0.05
ALIVE_EVERY_S = 2.0

AliveCheck = Callable[[], "str | None"]  # returns why the guest is gone, or None


class GuestError(RuntimeError):
    """The guest could not be reached or used; the message says why and what to do."""


class GuestConnectionLost(GuestError):
    """The SSH connection broke (guest crashed, destroyed, network gone)."""


class GuestAuthError(GuestError):
    """The guest refused the credentials."""


class HostKeyChanged(GuestError, HostKeyError):
    """The guest presented a host key other than the pinned one."""


@dataclass(frozen=True)
class Credentials:
    """User and secret(s); the secrets are kept out of ``repr``."""

    user: str
    password: str | None = field(default=None, repr=False)
    key_path: str | None = None
    pkey: Any = field(default=None, repr=False)  # a paramiko.PKey made for this run

    def describe(self) -> str:
        ways = [w for w, v in (("key", self.pkey or self.key_path),
                               ("password", self.password)) if v]
        return " or ".join(ways) or "no credentials"

    def secrets(self) -> list[str]:
        return [s for s in (self.password,) if s]


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret (and a URL's password) replaced by ``***``."""
    return mask_url(mask_values(text, secrets))


class SshGuest:
    """A :class:`~dbc_accept.guest.Guest` over SSH, with uploads over SFTP."""

    def __init__(self, host: str, port: int, creds: Credentials, *,
                 pin: HostKeyPin | None = None, connect_timeout: float = 15.0,
                 passed_gpus: list[PassedGpu] | None = None,
                 alive: AliveCheck | None = None) -> None:
        self.host = host
        self.port = port
        self.creds = creds
        self.pin = pin or HostKeyPin(default_known_hosts())
        self.connect_timeout = connect_timeout
        self.passed_gpus = passed_gpus
        self.alive = alive
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._workdir: str | None = None

    @property
    def name(self) -> str:
        return f"ssh://{self.creds.user}@{self.host}:{self.port}"

    @property
    def workdir(self) -> str:
        if self._workdir is None:
            raise GuestError(f"{self.name}: not connected (no work folder yet)")
        return self._workdir

    def _msg(self, text: str) -> str:
        return redact(text, self.creds.secrets())

    # --- connection ---------------------------------------------------------------------

    def connect(self) -> SshGuest:
        """Log in, pin the host key, make the private work folder; raise GuestError if not."""
        self._client = self._open_client()
        made = self.run(["mktemp", "-d", "/tmp/dbc-accept.XXXXXX"])
        if not made.ok or not made.stdout.strip():
            raise GuestError(self._msg(f"{self.name}: cannot make a work folder: "
                                       f"{made.describe()}"))
        self._workdir = made.stdout.strip()
        return self

    def _open_client(self) -> paramiko.SSHClient:
        import paramiko

        client = paramiko.SSHClient()
        self.pin.apply(client)
        kwargs: dict[str, Any] = {
            "hostname": self.host, "port": self.port, "username": self.creds.user,
            "timeout": self.connect_timeout, "banner_timeout": self.connect_timeout,
            "auth_timeout": self.connect_timeout, "allow_agent": False,
            "look_for_keys": False,
        }
        if self.creds.pkey is not None:
            kwargs["pkey"] = self.creds.pkey
        if self.creds.key_path:
            kwargs["key_filename"] = self.creds.key_path
        if self.creds.password:
            kwargs["password"] = self.creds.password
        try:
            client.connect(**kwargs)
        except HostKeyError as exc:  # refused before any credential was offered
            client.close()
            raise HostKeyChanged(f"{self.name}: {exc}") from None
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyChanged(
                f"{self.name}: the host key changed during the run (pinned "
                f"{exc.expected_key.get_name()} {exc.expected_key.get_base64()[:16]}..., got "
                f"{exc.key.get_name()} {exc.key.get_base64()[:16]}...); another machine may "
                "answer on this address") from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise GuestAuthError(self._msg(
                f"{self.name}: authentication as {self.creds.user} with "
                f"{self.creds.describe()} failed ({type(exc).__name__}); check --vm-user, "
                "--vm-password (DBC_VM_PASSWORD) or --vm-key")) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise GuestError(self._msg(
                f"{self.name}: cannot connect: {type(exc).__name__}: {exc}")) from None
        transport = client.get_transport()
        if transport is None:
            raise GuestError(f"{self.name}: no SSH transport after login")
        transport.set_keepalive(KEEPALIVE_S)
        sock = transport.sock
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, TCP_USER_TIMEOUT_MS)
        return client

    def close(self, remove_workdir: bool = True) -> None:
        """Remove the work folder (when the guest still answers) and disconnect."""
        try:
            if remove_workdir and self._workdir and self._client and self._active():
                self.run(["rm", "-rf", "--", self._workdir], timeout=15)
        except GuestError:
            pass  # the guest is gone: its folder went with it
        finally:
            if self._sftp is not None:
                self._sftp.close()
            if self._client is not None:
                self._client.close()
            self._sftp = self._client = None
            self._workdir = None

    def __enter__(self) -> SshGuest:
        return self.connect() if self._client is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _active(self) -> bool:
        transport = self._client.get_transport() if self._client else None
        return bool(transport and transport.is_active())

    def _lost(self, doing: str, why: str = "") -> GuestConnectionLost:
        gone = self.alive() if self.alive else None
        reason = "; ".join(r for r in (gone, why) if r) or "the connection closed"
        return GuestConnectionLost(self._msg(
            f"{self.name}: lost the SSH connection while {doing}: {reason}"))

    def _transport(self, doing: str) -> paramiko.Transport:
        if self._client is None:
            raise GuestError(f"{self.name}: not connected")
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise self._lost(doing)
        return transport

    def _sftp_client(self, doing: str) -> paramiko.SFTPClient:
        if self._sftp is None:
            import paramiko

            try:
                self._sftp = paramiko.SFTPClient.from_transport(self._transport(doing))
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise self._lost(doing, f"{type(exc).__name__}: {exc}") from None
            if self._sftp is None:
                raise self._lost(doing, "the SFTP subsystem did not start")
            channel = self._sftp.get_channel()
            if channel is not None:
                channel.settimeout(TCP_USER_TIMEOUT_MS / 1000)
        return self._sftp

    # --- Target -------------------------------------------------------------------------

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        """Run argv (quoted with shlex) under ``timeout`` in the guest; rc 124 on time-out."""
        return self._exec(argv, timeout, None)

    def stream(self, argv: Sequence[str], timeout: float,
               on_line: Callable[[str], None]) -> CommandResult:
        """As ``run``, also calling ``on_line`` with each line of stdout as it arrives (a
        long probe's progress); the result still holds all of stdout."""
        return self._exec(argv, timeout, on_line)

    def open_process(self, argv: Sequence[str]) -> GuestProcess:
        """Start argv with its stdin and stdout as pipes (the probe worker)."""
        from dbc_accept.guest.sshprocess import SshProcess

        return SshProcess.start(self, argv)

    def _exec(self, argv: Sequence[str], timeout: float,
              on_line: Callable[[str], None] | None) -> CommandResult:
        import paramiko

        doing = f"running `{shlex.join(argv)}`"
        secs = max(1, int(timeout))
        # coreutils timeout ends the remote command too; our own deadline covers a stuck link.
        line = f"LC_ALL=C LANG=C timeout -k 5 {secs} {shlex.join(argv)}"
        try:
            chan = self._transport(doing).open_session(timeout=self.connect_timeout)
            chan.exec_command(line)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost(doing, f"{type(exc).__name__}: {exc}") from None
        out, err = bytearray(), bytearray()
        lines = _LineFeed(on_line)
        deadline = time.monotonic() + secs + 10
        next_alive = time.monotonic() + ALIVE_EVERY_S
        try:
            while True:
                self._drain(chan, out, err)
                lines.feed(out)
                if chan.exit_status_ready() and not chan.recv_ready():
                    break
                now = time.monotonic()
                if now > deadline:
                    return CommandResult(tuple(argv), TIMEOUT_RC, out.decode(errors="replace"),
                                         f"timed out after {timeout:g} s")
                if chan.closed or not self._active():
                    raise self._lost(doing)
                if self.alive and now > next_alive:
                    gone = self.alive()
                    if gone:
                        raise self._lost(doing)
                    next_alive = now + ALIVE_EVERY_S
                time.sleep(POLL_S)
            self._drain(chan, out, err)
            lines.feed(out, final=True)
            rc = chan.recv_exit_status()
        finally:
            chan.close()
        if rc == -1:  # the channel closed without an exit status
            rc = self._no_exit_status(doing, err)
        return CommandResult(tuple(argv), rc, out.decode(errors="replace"),
                             err.decode(errors="replace"))

    def _no_exit_status(self, doing: str, err: bytearray) -> int:
        """A dropped link raises; a command ended by a signal gets rc 255, as ssh(1) gives."""
        for _ in range(20):
            if not self._active():
                raise self._lost(doing)
            time.sleep(POLL_S)
        gone = self.alive() if self.alive else None
        if gone:
            raise self._lost(doing)
        err += b"\n(the command ended without an exit status: killed by a signal)"
        return 255

    @staticmethod
    def _drain(chan: paramiko.Channel, out: bytearray, err: bytearray) -> None:
        while chan.recv_ready():
            out += chan.recv(65536)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)

    def _sftp_call(self, doing: str, fn: Callable[[paramiko.SFTPClient], Any]) -> Any:
        sftp = self._sftp_client(doing)
        try:
            return fn(sftp)
        except OSError:
            if not self._active():
                raise self._lost(doing) from None
            raise
        except EOFError:
            raise self._lost(doing) from None

    def read_text(self, path: str) -> str:
        def read(sftp: paramiko.SFTPClient) -> str:
            with sftp.open(path, "rb") as fh:
                data: bytes = fh.read()
            return data.decode("utf-8", errors="replace")

        st = self._stat(path, follow=True)
        if stat.S_ISDIR(st.st_mode or 0):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        text: str = self._sftp_call(f"reading {path}", read)
        return text

    def read_link(self, path: str) -> str:
        st = self._stat(path, follow=False)
        if not stat.S_ISLNK(st.st_mode or 0):
            raise OSError(errno.EINVAL, "Invalid argument: not a symbolic link", path)
        target = self._sftp_call(f"reading link {path}", lambda s: s.readlink(path))
        if target is None:
            raise OSError(errno.EINVAL, "Invalid argument", path)
        return str(target)

    def list_dir(self, path: str) -> list[str]:
        st = self._stat(path, follow=True)
        if not stat.S_ISDIR(st.st_mode or 0):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
        names: list[str] = self._sftp_call(f"listing {path}", lambda s: s.listdir(path))
        return sorted(names)

    def _stat(self, path: str, follow: bool) -> paramiko.SFTPAttributes:
        def do(sftp: paramiko.SFTPClient) -> paramiko.SFTPAttributes:
            return sftp.stat(path) if follow else sftp.lstat(path)

        attrs: paramiko.SFTPAttributes = self._sftp_call(f"reading {path}", do)
        return attrs

    def put(self, local_path: str, remote_path: str) -> None:
        """Copy a local file into the guest (keeps its permission bits)."""
        mode = os.stat(local_path).st_mode & 0o777

        def upload(sftp: paramiko.SFTPClient) -> None:
            sftp.put(local_path, remote_path)
            sftp.chmod(remote_path, mode)

        self._sftp_call(f"uploading {local_path} to {remote_path}", upload)

    # --- testinfra ----------------------------------------------------------------------

    @property
    def testinfra_host(self) -> Any:
        """A testinfra Host (paramiko backend) on this guest's live, pinned connection."""
        import testinfra.backend
        import testinfra.host

        self._transport("making a testinfra host")
        spec = f"paramiko://{self.creds.user}@{self.host}:{self.port}"
        backend = testinfra.backend.get_backend(spec)
        # The backend would open its own client (no pin, password in the URL): give it ours.
        backend.__dict__["client"] = self._client
        host = testinfra.host.Host(backend)
        backend.set_host(host)
        return host


def parse_ssh_url(url: str) -> tuple[str, str, int]:
    """``ssh://user@host:port`` -> (user, host, port); ValueError with the fix if not."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "ssh" or not parsed.hostname:
        raise ValueError(f"{url!r} is not ssh://user@host[:port]")
    if parsed.password:
        raise ValueError("put no password in the URL; use --vm-password or DBC_VM_PASSWORD")
    try:
        port = parsed.port or 22
    except ValueError:
        raise ValueError(f"{url!r}: the port is not a number") from None
    return parsed.username or "", parsed.hostname, port


__all__ = ["Credentials", "GuestAuthError", "GuestConnectionLost", "GuestError",
           "HostKeyChanged", "HostKeyPin", "SshGuest", "parse_ssh_url", "redact"]
