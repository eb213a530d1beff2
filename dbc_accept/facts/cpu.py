"""The CPU and KVM: /proc/cpuinfo, /dev/kvm's API version, kvm.ignore_msrs."""

from __future__ import annotations

import json
from dataclasses import dataclass

from dbc_accept import inline
from dbc_accept.facts import read, read_optional
from dbc_accept.facts.kernel import gather_cmdline
from dbc_accept.target import NOT_FOUND_RC, Target
from dbc_accept.verdict import FactError

CPUINFO = "/proc/cpuinfo"
IGNORE_MSRS = "/sys/module/kvm/parameters/ignore_msrs"
KVM_API_VERSION = 12  # what every Linux since 2.6.22 answers to KVM_GET_API_VERSION

# The KVM probe (dbc_accept.inline) opens /dev/kvm and asks KVM_GET_API_VERSION; snapshots
# know it by name and version, whatever its text.
KVM_PROBE = inline.PROBES["kvm"].text
KVM_PROBE_ARGV = inline.argv("kvm")


@dataclass(frozen=True)
class CpuInfo:
    """What the checks need of /proc/cpuinfo (the first processor stands for all)."""

    vendor: str  # GenuineIntel, AuthenticAMD
    model_name: str
    flags: frozenset[str]
    processors: int

    @property
    def is_intel(self) -> bool:
        return self.vendor == "GenuineIntel"

    @property
    def is_amd(self) -> bool:
        return self.vendor in ("AuthenticAMD", "HygonGenuine")

    @property
    def virt_flags(self) -> frozenset[str]:
        return self.flags & {"vmx", "svm"}


def _processors(text: str, *, strict: bool = True) -> list[dict[str, str]]:
    """The processor entries of /proc/cpuinfo (`key<TAB>: value` lines, a blank line between
    processors); ValueError for a line without ':' when ``strict``, or for no processor."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if not sep:
            if strict:
                raise ValueError(f"line without ':': {line[:60]!r}")
            continue
        current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    cpus = [b for b in blocks if "processor" in b]
    if not cpus:
        raise ValueError("no 'processor' entry")
    return cpus


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse /proc/cpuinfo (x86 layout: `key<TAB>: value`, a blank line between processors)."""
    cpus = _processors(text)
    first = cpus[0]
    if "flags" not in first:
        raise ValueError("no 'flags' line (not an x86 /proc/cpuinfo)")
    return CpuInfo(
        vendor=first.get("vendor_id", ""),
        model_name=first.get("model name", ""),
        flags=frozenset(first["flags"].split()),
        processors=len(cpus),
    )


def gather_cpuinfo(target: Target) -> CpuInfo:
    text = read_optional(target, CPUINFO)
    if text is None:
        raise FactError(CPUINFO, "no such file")
    try:
        return parse_cpuinfo(text)
    except ValueError as exc:
        raise FactError(CPUINFO, str(exc), verb="parse") from None


@dataclass(frozen=True)
class CpuCount:
    """Logical processors and physical cores (a guest's CPU threshold counts either)."""

    logical: int
    physical: int


def parse_cpu_count(text: str) -> CpuCount:
    """Logical processors and physical cores (distinct physical id/core id) of /proc/cpuinfo.

    Without topology lines (some hypervisors, non-x86) each processor counts as a core.
    """
    cpus = _processors(text, strict=False)
    cores = {(c["physical id"], c["core id"]) for c in cpus
             if "physical id" in c and "core id" in c}
    return CpuCount(len(cpus), len(cores) or len(cpus))


def gather_cpu_count(target: Target) -> CpuCount:
    try:
        return parse_cpu_count(read(target, CPUINFO))
    except ValueError as exc:
        raise FactError(CPUINFO, str(exc), verb="parse") from None


@dataclass(frozen=True)
class KvmState:
    """Whether /dev/kvm exists and what it answers to KVM_GET_API_VERSION."""

    exists: bool
    api_version: int | None
    error: str

    @property
    def usable(self) -> bool:
        return self.api_version == KVM_API_VERSION


def parse_kvm_probe(text: str) -> KvmState:
    """Parse the JSON line printed by :data:`KVM_PROBE`."""
    try:
        data = json.loads(text.strip().splitlines()[-1] if text.strip() else "")
    except ValueError:
        raise ValueError(f"not the probe's JSON: {text.strip()[:80]!r}") from None
    if not isinstance(data, dict) or "exists" not in data:
        raise ValueError(f"not the probe's JSON: {text.strip()[:80]!r}")
    api = data.get("api")
    return KvmState(
        exists=bool(data["exists"]),
        api_version=api if isinstance(api, int) and not isinstance(api, bool) else None,
        error=str(data.get("error") or ""),
    )


def gather_kvm(target: Target) -> KvmState:
    result = target.run(inline.argv("kvm"))
    source = "KVM_GET_API_VERSION on /dev/kvm (python3 -c ...)"
    if not result.ok:
        # Not result.describe(): it would quote the whole in-line script.
        tail = (result.stderr or result.stdout).strip().splitlines()
        why = "command not found" if result.rc == NOT_FOUND_RC else (tail[-1] if tail else "")
        raise FactError(source, f"python3 exited {result.rc}: {why or 'no output'}")
    try:
        return parse_kvm_probe(result.stdout)
    except ValueError as exc:
        raise FactError(source, str(exc), verb="parse") from None


@dataclass(frozen=True)
class IgnoreMsrs:
    """kvm.ignore_msrs: as the kvm module has it now, and as the kernel command line sets it."""

    module_value: str | None  # "Y"/"N" from sysfs; None when the kvm module is not loaded
    cmdline_value: str | None

    @property
    def enabled(self) -> bool:
        truthy = {"1", "y", "Y", "yes", "on"}
        return self.module_value in truthy or (
            self.module_value is None and self.cmdline_value in truthy)


def gather_ignore_msrs(target: Target) -> IgnoreMsrs:
    raw = read_optional(target, IGNORE_MSRS)
    cmdline = gather_cmdline(target)
    return IgnoreMsrs(raw.strip() if raw is not None else None, cmdline.get("kvm.ignore_msrs"))


GATHERERS = [gather_cpuinfo, gather_kvm, gather_ignore_msrs]
