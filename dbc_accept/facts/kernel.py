"""The kernel: its command line, loaded modules, modprobe configuration and log."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from dbc_accept.facts import list_optional, read, read_optional
from dbc_accept.target import Target
from dbc_accept.verdict import FactError

CMDLINE = "/proc/cmdline"
MODULES = "/proc/modules"
MODPROBE_D = "/etc/modprobe.d"
DMESG_ARGV = ("dmesg",)
GRUB_DEFAULT = "/etc/default/grub"


@dataclass(frozen=True)
class KernelCmdline:
    """The kernel's parameters, in order; a bare flag (``nofb``) has the value None."""

    raw: str
    params: tuple[tuple[str, str | None], ...]

    def get(self, name: str) -> str | None:
        """The last value given to ``name`` (the kernel keeps the last one); None if absent."""
        found = [v for k, v in self.params if k == name]
        return found[-1] if found else None

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.params)

    def values(self, name: str) -> list[str]:
        """Every comma-separated value given to ``name`` (``intel_iommu=on,sm_on``)."""
        return [part for k, v in self.params if k == name and v
                for part in v.split(",") if part]


def parse_cmdline(text: str) -> KernelCmdline:
    """Split /proc/cmdline as the kernel does: spaces, double quotes; ``--`` ends its part."""
    raw = text.strip()
    try:
        words = shlex.split(raw, posix=True)
    except ValueError:  # an unbalanced quote: drop quotes, split on spaces
        words = raw.replace('"', "").split()
    params: list[tuple[str, str | None]] = []
    for word in words:
        if word == "--":
            break
        key, sep, value = word.partition("=")
        # The kernel treats '-' and '_' alike in parameter names (vfio-pci.ids, vfio_pci.ids).
        params.append((key.replace("-", "_"), value if sep else None))
    return KernelCmdline(raw, tuple(params))


def gather_cmdline(target: Target) -> KernelCmdline:
    return parse_cmdline(read(target, CMDLINE))


def parse_modules(text: str) -> frozenset[str]:
    """Names of the loaded modules from /proc/modules (`name size refs deps state addr`)."""
    names = set()
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) < 3 or not fields[1].isdigit():
            raise ValueError(f"not a /proc/modules line: {line[:60]!r}")
        names.add(fields[0].replace("-", "_"))
    return frozenset(names)


def gather_loaded_modules(target: Target) -> frozenset[str]:
    """Loaded modules; none when the kernel has no module support (no /proc/modules)."""
    text = read_optional(target, MODULES)
    if text is None:
        return frozenset()
    try:
        return parse_modules(text)
    except ValueError as exc:
        raise FactError(MODULES, str(exc), verb="parse") from None


@dataclass(frozen=True)
class ModprobeConfig:
    """The `blacklist` and `options` lines of /etc/modprobe.d/*.conf."""

    blacklist: dict[str, str]  # module -> file that blacklists it
    options: tuple[tuple[str, str, str], ...]  # (module, "key=value ...", file)

    def module_options(self, module: str) -> list[str]:
        """Every ``key=value`` word given to ``module`` (`vfio-pci` and `vfio_pci` alike)."""
        want = module.replace("-", "_")
        return [word for mod, text, _ in self.options if mod == want for word in text.split()]


def parse_modprobe_conf(text: str) -> list[tuple[str, list[str]]]:
    """modprobe.d(5) lines as (command, words); `#` comments, `\\` continues a line."""
    lines: list[tuple[str, list[str]]] = []
    pending = ""
    for raw in text.splitlines():
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        words = line.split("#", 1)[0].split()
        if words:
            lines.append((words[0], words[1:]))
    return lines


def gather_modprobe_config(target: Target) -> ModprobeConfig:
    blacklist: dict[str, str] = {}
    options: list[tuple[str, str, str]] = []
    for name in list_optional(target, MODPROBE_D):
        if not name.endswith(".conf"):
            continue  # modprobe reads only *.conf here
        path = f"{MODPROBE_D}/{name}"
        text = read_optional(target, path)
        for command, words in parse_modprobe_conf(text or ""):
            if command == "blacklist" and words:
                blacklist.setdefault(words[0].replace("-", "_"), path)
            elif command == "options" and len(words) >= 2:
                options.append((words[0].replace("-", "_"), " ".join(words[1:]), path))
    return ModprobeConfig(blacklist, tuple(options))


def _id_pairs(spec: str) -> set[str]:
    """`10de:2204,10de:1aef:ffffffff:ffffffff` -> {"10de:2204", "10de:1aef"}."""
    pairs = set()
    for entry in spec.split(","):
        fields = entry.strip().lower().split(":")
        if len(fields) >= 2 and all(re.fullmatch(r"[0-9a-f]{1,8}", f) for f in fields[:2]):
            pairs.add(f"{int(fields[0], 16):04x}:{int(fields[1], 16):04x}")
    return pairs


_GRUB_VARS = ("GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT")
_GRUB_ASSIGN = re.compile(r"^\s*(?:export\s+)?(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=(.*)$")


def parse_grub_default(text: str, values: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel command line variables of /etc/default/grub (a shell file, sourced).

    Only the two variables update-grub puts on the kernel's line are read; `$VAR` and
    `${VAR}` of those two are expanded, as a grub.d file appending to them needs.
    """
    found = dict(values or {})
    for line in text.splitlines():
        m = _GRUB_ASSIGN.match(line)
        if not m:
            continue
        raw = re.sub(r"\$\{?(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)\}?",
                     lambda v: found.get(v.group(1), ""), m.group(2))
        try:
            words = shlex.split(raw, comments=True)
        except ValueError:
            raise ValueError(f"unbalanced quotes: {line.strip()[:60]!r}") from None
        found[m.group(1)] = " ".join(words)
    return found


def gather_grub_cmdline(target: Target) -> KernelCmdline:
    """The command line the next boot gets from /etc/default/grub (and grub.d/*.cfg)."""
    values: dict[str, str] = {}
    paths = [GRUB_DEFAULT] + [f"{GRUB_DEFAULT}.d/{n}"
                              for n in list_optional(target, f"{GRUB_DEFAULT}.d")
                              if n.endswith(".cfg")]
    for path in paths:
        text = read_optional(target, path)
        try:
            values = parse_grub_default(text or "", values)
        except ValueError as exc:
            raise FactError(path, str(exc), verb="parse") from None
    return parse_cmdline(" ".join(values.get(v, "") for v in _GRUB_VARS))


def persisted_vfio_ids(cmdline: KernelCmdline, modprobe: ModprobeConfig,
                       grub: KernelCmdline | None = None) -> set[str]:
    """The vendor:device ids vfio-pci claims at boot: `vfio-pci.ids=` on this boot's or the
    next boot's (GRUB) command line, or `options vfio-pci ids=` in modprobe.d."""
    ids = set()
    for line in (cmdline, grub or parse_cmdline("")):
        for spec in line.values("vfio_pci.ids"):
            ids |= _id_pairs(spec)
    for word in modprobe.module_options("vfio-pci"):
        key, _, value = word.partition("=")
        if key == "ids":
            ids |= _id_pairs(value)
    return ids


@dataclass(frozen=True)
class BarReserveError:
    """A `vfio-pci BDF: BAR N: can't reserve [mem A-B]` line of the kernel log."""

    bdf: str
    bar: int
    range: str
    line: str


_CANT_RESERVE = re.compile(
    r"vfio-pci (?P<bdf>[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]): "
    r"BAR (?P<bar>\d+)\b.*?can't reserve(?: (?P<range>\[[^\]]*\]))?")
_RANGE_BEFORE = re.compile(r"BAR \d+ (\[[^\]]*\])")


def parse_bar_reserve_errors(text: str) -> list[BarReserveError]:
    """The distinct `can't reserve` errors of vfio-pci in a kernel log (dmesg)."""
    seen: dict[tuple[str, int], BarReserveError] = {}
    for line in text.splitlines():
        m = _CANT_RESERVE.search(line)
        if not m:
            continue
        before = _RANGE_BEFORE.search(line)  # newer kernels: "BAR 1 [mem ...]: can't reserve"
        rng = m.group("range") or (before.group(1) if before else "")
        key = (m.group("bdf").lower(), int(m.group("bar")))
        seen.setdefault(key, BarReserveError(key[0], key[1], rng, line.strip()))
    return list(seen.values())


def gather_bar_reserve_errors(target: Target) -> list[BarReserveError]:
    result = target.run(DMESG_ARGV)
    if not result.ok:
        why = result.describe()
        if "ermitted" in why:
            why += " (run as root)"
        raise FactError("the kernel log (dmesg)", why)
    return parse_bar_reserve_errors(result.stdout)


GATHERERS = [gather_cmdline, gather_grub_cmdline, gather_loaded_modules,
             gather_modprobe_config, gather_bar_reserve_errors]
