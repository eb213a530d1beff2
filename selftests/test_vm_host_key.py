"""The test VM's host key is read through the guest agent and pinned before any login."""

from __future__ import annotations

from typing import Any

import pytest

from dbc_accept.guest import vmguest
from dbc_accept.guest.hostkeys import HostKeyPin
from dbc_accept.guest.ssh import Credentials
from dbc_accept.guest.vmguest import NO_HOST_KEY, VmRecord, _Boot, _Login
from dbc_accept.vm.agent import HOST_KEYS_ARGV, AgentResult
from selftests.test_guest_fixture import FakeVm

# a syntactically valid ed25519 public key (32 zero bytes)
PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA root@g"


class AgentVm(FakeVm):
    keys: str | None = None

    def agent_exec(self, argv: Any, stdin: bytes = b"", timeout: float = 30) -> Any:
        self.calls.append("agent " + argv[-1][:20])
        if self.keys is None:
            return None  # no agent
        assert list(argv) == HOST_KEYS_ARGV
        return AgentResult(0, self.keys, "")


class Tried(Exception):
    """Raised by the SshGuest stand-in: a login was tried."""


@pytest.fixture
def tried(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []

    class NoLogin:
        def __init__(self, host: str, port: int, creds: Any, pin: Any, **kw: Any) -> None:
            seen.append((host, pin))
            raise Tried

    monkeypatch.setattr(vmguest, "SshGuest", NoLogin)
    return seen


def _boot(keys: str | None, accept_new: bool = False) -> _Boot:
    vm = AgentVm(None)  # type: ignore[arg-type]
    vm.keys = keys
    login = _Login(Credentials("dbc", password="p"), HostKeyPin(accept_new=accept_new))
    return _Boot(vm, VmRecord(), login, timeout=1.5, gpus=[])


def test_without_the_agent_no_login_is_tried(tried: list[Any]) -> None:
    with pytest.raises(vmguest.VmBootError, match="could not be read through the qemu guest"):
        _boot(None).ssh("192.0.2.9")
    assert tried == []  # the password was never offered to whoever answers there
    assert "--vm-accept-new-host-key" in NO_HOST_KEY


def test_the_agents_key_is_pinned_before_the_first_login(tried: list[Any]) -> None:
    with pytest.raises(Tried):
        _boot(PUB + "\n").ssh("192.0.2.9")
    host, pin = tried[0]
    assert host == "192.0.2.9" and pin.knows("192.0.2.9") and not pin.accept_new


def test_opting_in_logs_in_without_the_agent(tried: list[Any]) -> None:
    with pytest.raises(Tried):
        _boot(None, accept_new=True).ssh("192.0.2.9")
    assert not tried[0][1].knows("192.0.2.9")
