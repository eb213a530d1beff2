"""Kernel parameters now (/proc/sys) and as configured for boot (sysctl.d), and modules-load.d."""

from __future__ import annotations

from dataclasses import dataclass

from dbc_accept.facts import list_optional, read_optional
from dbc_accept.target import Target

# Read in this order by `sysctl --system` / systemd-sysctl: a file name found in an earlier
# folder hides the same name in later ones; files apply sorted by name; /etc/sysctl.conf last.
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d",
               "/usr/lib/sysctl.d", "/lib/sysctl.d")
SYSCTL_CONF = "/etc/sysctl.conf"
MODULES_LOAD_DIRS = ("/etc/modules-load.d", "/run/modules-load.d",
                     "/usr/local/lib/modules-load.d", "/usr/lib/modules-load.d",
                     "/lib/modules-load.d")
ETC_MODULES = "/etc/modules"  # Debian's own list, read by systemd-modules-load too
# The parameters the host checks read (so that a snapshot captures them).
CHECKED_KEYS = ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables",
                "net.bridge.bridge-nf-call-ip6tables")


def key_of(name: str) -> str:
    """A sysctl key in dotted form (`net/ipv4/ip_forward` -> `net.ipv4.ip_forward`)."""
    return name.strip().replace("/", ".")


def proc_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def gather_sysctl(target: Target, key: str) -> str | None:
    """A kernel parameter's current value; None when it does not exist (module not loaded)."""
    text = read_optional(target, proc_path(key))
    return " ".join(text.split()) if text is not None else None


def gather_checked_sysctls(target: Target) -> dict[str, str | None]:
    """The current values of :data:`CHECKED_KEYS`."""
    return {key: gather_sysctl(target, key) for key in CHECKED_KEYS}


def parse_sysctl_conf(text: str) -> list[tuple[str, str]]:
    """sysctl.conf(5) lines as (key, value); `#`/`;` comments, a leading `-` ignored."""
    pairs = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue  # sysctl warns and skips such a line; so do we
        pairs.append((key_of(key.lstrip("-")), value.strip()))
    return pairs


@dataclass(frozen=True)
class SysctlConfig:
    """What boot will set: key -> (value, file that sets it last)."""

    values: dict[str, tuple[str, str]]

    def get(self, key: str) -> tuple[str, str] | None:
        return self.values.get(key_of(key))


def _config_files(target: Target, dirs: tuple[str, ...]) -> list[str]:
    chosen: dict[str, str] = {}
    for folder in dirs:
        for name in list_optional(target, folder):
            if name.endswith(".conf"):
                chosen.setdefault(name, f"{folder}/{name}")
    return [chosen[name] for name in sorted(chosen)]


def gather_sysctl_config(target: Target) -> SysctlConfig:
    values: dict[str, tuple[str, str]] = {}
    for path in [*_config_files(target, SYSCTL_DIRS), SYSCTL_CONF]:
        text = read_optional(target, path)
        for key, value in parse_sysctl_conf(text or ""):
            values[key] = (value, path)
    return SysctlConfig(values)


def parse_modules_load(text: str) -> list[str]:
    """modules-load.d(5): one module name a line, `#`/`;` comments."""
    names = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith(";"):
            names.append(line.split()[0].replace("-", "_"))
    return names


def gather_modules_load(target: Target) -> dict[str, str]:
    """Modules loaded at boot: name -> the file that lists it."""
    listed: dict[str, str] = {}
    for path in [*_config_files(target, MODULES_LOAD_DIRS), ETC_MODULES]:
        text = read_optional(target, path)
        for name in parse_modules_load(text or ""):
            listed.setdefault(name, path)
    return listed


GATHERERS = [gather_checked_sysctls, gather_sysctl_config, gather_modules_load]
