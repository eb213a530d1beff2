"""The nodes of ``--hosts`` / ``--ansible-inventory`` as testinfra hosts, for plugin and CLI.

Bad input raises :class:`HostsError` with one line that names the fix; the caller turns it
into its own usage error (``pytest.UsageError``, or the CLI's exit status 2).
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import urlsplit

from dbc_accept.secrecy import paramiko_host_key_warning, url_password_error

EXAMPLE = "expected e.g. ssh://root@node1,paramiko://node2:22"


class HostsError(ValueError):
    """--hosts or --ansible-inventory cannot name nodes: the message says why and the fix."""


def host_name(host: Any) -> str:
    """testinfra's id (``paramiko://node1``), with the port when one was given."""
    name = str(host.backend.get_pytest_id())
    port = getattr(getattr(host.backend, "host", None), "port", None)
    return f"{name}:{port}" if port and str(port) != "22" else name


def hosts_error(spec: str | None, inventory: str | None, exc: Exception) -> str:
    """One line saying why testinfra could not make hosts of --hosts / --ansible-inventory."""
    if inventory and "ansible-inventory: not found" in str(exc):
        return (f"--ansible-inventory {inventory}: the `ansible-inventory` command is not "
                "installed; install Ansible (pip install ansible-core) or name the nodes "
                "with --hosts")
    if inventory and not spec:
        why = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
        return f"--ansible-inventory {inventory}: {why[:300]}"
    return f"--hosts {spec or ''}: {exc} ({EXAMPLE})"


def bad_host_spec(name: str) -> str | None:
    """Why a --hosts entry is not a host address (None: it reads as one)."""
    try:
        port = urlsplit(name if "://" in name else f"ssh://{name}").port
    except ValueError as exc:
        return str(exc)
    return None if port is None or 0 < port < 65536 else f"port {port} out of range"


def _names(spec: str | None, inventory: str | None) -> list[str]:
    names = [h.strip() for h in (spec or "").split(",") if h.strip()] or ["ansible://all"]
    for name in names:
        why = bad_host_spec(name)
        if why:
            raise HostsError(f"--hosts {name}: {why} ({EXAMPLE})")
    bare = [n for n in names if "://" not in n]
    if inventory and bare:  # testinfra would take "all" for a host named all
        raise HostsError(
            f"--hosts {spec}: with --ansible-inventory name the inventory's hosts and groups "
            f"as --hosts=ansible://{bare[0]} (ansible://all, ansible://GROUP, ansible://HOST)")
    return names


def testinfra_hosts(spec: str | None, inventory: str | None, *,
                    warn: Callable[[str], None], **backend: Any) -> list[tuple[str, Any]]:
    """(name, testinfra host) for each node of ``--hosts`` / ``--ansible-inventory``.

    ``backend`` goes to ``testinfra.get_hosts`` as it is (connection, ssh_config,
    ssh_identity_file, sudo, sudo_user, force_ansible, timeout); ``warn`` is told of a
    paramiko host that will accept any host key. The same node named twice comes once.
    """
    if not spec and not inventory:
        return []
    refused = url_password_error("--hosts", spec)
    if refused:
        raise HostsError(refused)
    lax = paramiko_host_key_warning(spec)
    if lax:
        warn(lax)
    names = _names(spec, inventory)
    try:
        import testinfra  # imported here: costs start-up time only when hosts are asked for
    except ImportError:
        raise HostsError("--hosts needs pytest-testinfra: pip install pytest-testinfra") \
            from None
    try:
        hosts = list(testinfra.get_hosts(names, ansible_inventory=inventory, **backend))
    except Exception as exc:  # testinfra raises many kinds; all are a bad --hosts
        raise HostsError(hosts_error(spec, inventory, exc)) from None
    found: dict[str, Any] = {}
    for host in hosts:
        found.setdefault(host_name(host), host)
    return list(found.items())
