"""Commands in the guest through the qemu guest agent (guest-exec), without the network.

Used to put this run's SSH key into the guest before the first login, and to read the
guest's SSH host keys, which are pinned before it (:data:`HOST_KEYS_ARGV`). Arguments go to
the guest as an argv list; nothing is interpolated into a shell line.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dbc_accept.vm.libvirt_api import load_libvirt

_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# $1 user, $2 key: append the key once, with the modes sshd insists on
_SET_KEY = (
    'set -e; h=$(getent passwd "$1" | cut -d: -f6); [ -n "$h" ] || exit 3; '
    'g=$(id -gn "$1"); install -d -m 700 -o "$1" -g "$g" "$h/.ssh"; '
    'f="$h/.ssh/authorized_keys"; touch "$f"; '
    'grep -qxF -- "$2" "$f" || printf "%s\\n" "$2" >> "$f"; '
    'chown "$1:$g" "$f"; chmod 600 "$f"'
)


@dataclass(frozen=True)
class AgentResult:
    """What a command run through the guest agent gave."""

    rc: int
    stdout: str
    stderr: str


def command(dom: Any, cmd: dict[str, Any], timeout: int = 10) -> Any:
    """One guest agent command and its decoded JSON answer."""
    import libvirt_qemu

    return json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps(cmd), timeout, 0))


def run(dom: Any, argv: Sequence[str], stdin: bytes = b"",
        timeout: float = 30.0) -> AgentResult | None:
    """Run ``argv`` in the guest; None when the agent does not answer or cannot exec."""
    libvirt = load_libvirt()
    args: dict[str, Any] = {"path": argv[0], "arg": list(argv[1:]), "capture-output": True}
    if stdin:
        args["input-data"] = base64.b64encode(stdin).decode()
    try:
        pid = command(dom, {"execute": "guest-exec", "arguments": args})["return"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = command(dom, {"execute": "guest-exec-status", "arguments": pid})["return"]
            if st.get("exited"):
                out, err = (base64.b64decode(st.get(k, "")).decode(errors="replace")
                            for k in ("out-data", "err-data"))
                return AgentResult(int(st.get("exitcode", -1)), out, err)
            time.sleep(0.2)
    except (libvirt.libvirtError, KeyError, TypeError, ValueError):
        return None  # no agent, an agent without guest-exec, or a garbled answer
    return None


# The guest's SSH host public keys, read on the guest itself (not over the network).
HOST_KEYS_ARGV = ["/bin/sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub 2>/dev/null; exit 0"]


def set_key_argv(user: str, pubkey: str) -> list[str]:
    """The guest command that adds ``pubkey`` to ``user``'s authorized_keys."""
    key = pubkey.strip()
    if not _USER_RE.match(user) or not key or "\n" in key:
        raise ValueError("agent_set_key needs a plain user name and a one-line public key")
    return ["/bin/sh", "-c", _SET_KEY, "sh", user, key]
