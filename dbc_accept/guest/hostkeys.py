"""Which SSH host keys a run accepts: pinned ones only, never the first that answers.

- The test VM: its keys are read through the qemu guest agent (a virtio channel of our own
  domain, which no other machine on the network can answer) and pinned before the first
  login (:meth:`HostKeyPin.trust`).
- ``--guest ssh://``: the keys of a known_hosts file (``--vm-known-hosts``, by default
  ``~/.ssh/known_hosts``); an unknown key is refused unless ``--vm-accept-new-host-key``
  says to pin the first one seen for the run.

A refused key ends the connection before any password or key is offered.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import paramiko


class HostKeyError(RuntimeError):
    """A host key that is not the pinned one (a base of ssh.HostKeyChanged)."""


def default_known_hosts() -> str:
    return os.path.expanduser("~/.ssh/known_hosts")


def host_id(host: str, port: int) -> str:
    """The name known_hosts files use: ``host``, or ``[host]:port`` off port 22."""
    return host if port == 22 else f"[{host}]:{port}"


class HostKeyPin:
    """The host key(s) this run accepts."""

    def __init__(self, known_hosts: str | None = None, accept_new: bool = False) -> None:
        import paramiko

        self.known_hosts = known_hosts
        self.accept_new = accept_new
        self.keys = paramiko.HostKeys()
        if known_hosts and os.path.exists(known_hosts):
            try:
                self.keys.load(known_hosts)
            except (OSError, ValueError) as exc:
                raise HostKeyError(f"cannot read known_hosts {known_hosts}: {exc}") from None

    def trust(self, name: str, lines: Iterable[str]) -> int:
        """Pin the ``ssh_host_*_key.pub`` lines read from the machine itself; how many."""
        from paramiko.hostkeys import HostKeyEntry

        count = 0
        for line in lines:
            fields = line.split()
            if len(fields) < 2:
                continue
            try:
                entry = HostKeyEntry.from_line(f"{name} {fields[0]} {fields[1]}")
            except Exception:  # paramiko raises several kinds for a garbled key
                entry = None
            if entry is not None and entry.key is not None:
                self.keys.add(name, entry.key.get_name(), entry.key)
                count += 1
        return count

    def knows(self, name: str) -> bool:
        return bool(self.keys.lookup(name))

    def apply(self, client: paramiko.SSHClient) -> None:
        """Make ``client`` accept the pinned keys only (and pin a new one if allowed)."""
        import paramiko

        store = client.get_host_keys()
        for name, by_type in self.keys.items():
            for keytype, key in by_type.items():
                store.add(name, keytype, key)
        pin = self

        class _Policy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc,unused-ignore]
            def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                                 key: paramiko.PKey) -> None:
                pin.missing(hostname, key)

        client.set_missing_host_key_policy(_Policy())

    def missing(self, hostname: str, key: paramiko.PKey) -> None:
        """A key of no pinned type for ``hostname``: pin it if allowed, else refuse."""
        if self.keys.lookup(hostname):
            raise HostKeyError(
                f"{hostname} offered a {key.get_name()} host key, but another key was pinned "
                "for it; another machine may answer on this address")
        if not self.accept_new:
            where = (f"not in {self.known_hosts}" if self.known_hosts
                     else "not the one the guest agent read from the VM")
            raise HostKeyError(
                f"{hostname} offered an unknown {key.get_name()} host key ({where}); "
                "add the machine's key to the known_hosts file (--vm-known-hosts) after "
                "checking its fingerprint, or pass --vm-accept-new-host-key to trust the "
                "first key seen for this run")
        self.keys.add(hostname, key.get_name(), key)
