"""GPUs as the guest sees them: nvidia-smi's CSV query and ``-q`` report, nvidia-xconfig,
the kernel log's Xid lines, clock event reasons, and the GPU model table.

Parsers are pure (text -> dataclass); gatherers run the tools through a Target (the guest).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from dbc_accept.target import NOT_FOUND_RC, Target
from dbc_accept.verdict import FactError

INVENTORY_FIELDS = ("index,name,uuid,pci.bus_id,pci.device_id,memory.total,pcie.link.gen.max,"
                    "pcie.link.width.max,ecc.mode.current,driver_version")
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
NA = frozenset({"", "N/A", "[N/A]", "[Not Supported]", "Not Supported", "[Unknown Error]"})


# --- nvidia-smi --query-gpu=... --format=csv ------------------------------------------------

def parse_query_csv(text: str) -> list[dict[str, str]]:
    """Rows of a ``--format=csv`` query, keyed by field name without its ``[unit]``."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError("empty output")
    header = [re.sub(r"\s*\[.*\]$", "", h.strip()) for h in lines[0].split(",")]
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(header):
            raise ValueError(f"{len(cells)} cells for {len(header)} fields: {line!r}")
        rows.append(dict(zip(header, cells)))
    return rows


def number(text: str | None) -> float | None:
    """The number in ``143771 MiB`` / ``16x`` / ``0x10`` / ``76.13 W``; None for N/A."""
    if text is None or text.strip() in NA:
        return None
    value = text.strip()
    hexa = re.match(r"0[xX]([0-9a-fA-F]+)", value)
    if hexa:
        return float(int(hexa.group(1), 16))
    match = re.match(r"[-+]?\d+(\.\d+)?", value)
    return float(match.group()) if match else None


@dataclass(frozen=True)
class GpuInventory:
    """One GPU of the guest as ``nvidia-smi --query-gpu`` lists it."""

    index: int
    name: str
    uuid: str
    bus_id: str
    device_id: str  # "10de:2335"
    memory_mib: float | None
    pcie_gen_max: int | None
    pcie_width_max: int | None
    ecc_mode: str
    driver: str


def pci_id(smi_device_id: str) -> str:
    """``0x233510DE`` (device << 16 | vendor) -> ``10de:2335``."""
    value = int(smi_device_id, 16)
    return f"{value & 0xFFFF:04x}:{value >> 16:04x}"


def parse_inventory(text: str) -> list[GpuInventory]:
    """The rows of the INVENTORY_FIELDS query."""
    out = []
    for row in parse_query_csv(text):
        gen, width = number(row.get("pcie.link.gen.max")), number(row.get("pcie.link.width.max"))
        out.append(GpuInventory(
            index=int(row["index"]), name=row["name"], uuid=row.get("uuid", ""),
            bus_id=row.get("pci.bus_id", ""), device_id=pci_id(row["pci.device_id"]),
            memory_mib=number(row.get("memory.total")),
            pcie_gen_max=int(gen) if gen is not None else None,
            pcie_width_max=int(width) if width is not None else None,
            ecc_mode=row.get("ecc.mode.current", ""), driver=row.get("driver_version", "")))
    return out


def _smi(target: Target, argv: list[str], timeout: float = 60.0) -> str:
    res = target.run(argv, timeout=timeout)
    if res.rc == NOT_FOUND_RC:
        raise FactError("nvidia-smi", "not found in the guest (NVIDIA driver not installed)")
    if not res.ok:
        raise FactError(res.cmdline, res.describe())
    return res.stdout


def gather_inventory(target: Target) -> list[GpuInventory]:
    """Every GPU the guest's driver sees, in PCI order."""
    argv = ["nvidia-smi", f"--query-gpu={INVENTORY_FIELDS}", "--format=csv"]
    text = _smi(target, argv)
    try:
        return parse_inventory(text)
    except (ValueError, KeyError) as exc:
        raise FactError("nvidia-smi --query-gpu", str(exc), verb="parse") from None


# --- nvidia-smi -q ---------------------------------------------------------------------------

_KV = re.compile(r"^(\s*)(\S.*?)\s+:\s?(.*)$")


def parse_smi_q_sections(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(top-level values, one flat {"Section/Sub/Key": value} per ``GPU <bus id>`` block)."""
    top: dict[str, str] = {}
    gpus: list[dict[str, str]] = []
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("="):
            continue
        indent = (len(line) - len(line.lstrip(" "))) // 4
        if indent == 0 and line.startswith("GPU ") and " : " not in line:
            gpus.append({"Bus Id": line[4:].strip()})
            stack = []
            continue
        stack = [(lvl, name) for lvl, name in stack if lvl < indent]
        match = _KV.match(line)
        if match is None:  # a section header
            stack.append((indent, line.strip()))
            continue
        key = "/".join([name for _, name in stack] + [match.group(2).strip()])
        (gpus[-1] if gpus and indent > 0 else top)[key] = match.group(3).strip()
    return top, gpus


@dataclass(frozen=True)
class GpuHealth:
    """Health facts of one GPU from ``nvidia-smi -q``."""

    bus_id: str
    name: str
    ecc_current: str
    ecc_pending: str
    uncorrectable_volatile: int | None
    uncorrectable_aggregate: int | None
    retired_pending: str
    remap_pending: str
    remap_failure: str
    reasons_active: tuple[str, ...]
    display_mode: str
    display_active: str
    pcie_gen: tuple[int | None, int | None]  # (current, max)
    pcie_width: tuple[int | None, int | None]
    raw: dict[str, str] = field(repr=False, compare=False, default_factory=dict)


def _uncorrectable(values: dict[str, str], scope: str) -> int | None:
    """Sum of the uncorrectable ECC counters of one scope (Volatile/Aggregate), any format."""
    total, seen = 0, False
    prefix = f"ECC Errors/{scope}/"
    for key, value in values.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        # 525+: "SRAM Uncorrectable ...", "DRAM Uncorrectable"; older: "Double Bit/.../Total"
        if "Uncorrectable" in rest or (rest.startswith("Double Bit/") and rest.endswith("Total")):
            n = number(value)
            if n is not None:
                total, seen = total + int(n), True
    return total if seen else None


def _first(values: dict[str, str], *keys: str) -> str:
    for key in keys:
        if key in values:
            return values[key]
    return "N/A"


def _active_reasons(values: dict[str, str]) -> tuple[str, ...]:
    found = []
    for key, value in values.items():
        head, _, reason = key.partition("/")
        if head in ("Clocks Event Reasons", "Clocks Throttle Reasons") and value == "Active":
            found.append(reason.rsplit("/", 1)[-1])
    return tuple(found)


def _int_pair(values: dict[str, str], base: str) -> tuple[int | None, int | None]:
    cur, top = number(values.get(f"{base}/Current")), number(values.get(f"{base}/Max"))
    return (int(cur) if cur is not None else None, int(top) if top is not None else None)


def health_of(values: dict[str, str]) -> GpuHealth:
    """The health facts of one GPU block of ``nvidia-smi -q``."""
    return GpuHealth(
        bus_id=_first(values, "PCI/Bus Id", "Bus Id"),
        name=_first(values, "Product Name"),
        ecc_current=_first(values, "ECC Mode/Current"),
        ecc_pending=_first(values, "ECC Mode/Pending"),
        uncorrectable_volatile=_uncorrectable(values, "Volatile"),
        uncorrectable_aggregate=_uncorrectable(values, "Aggregate"),
        retired_pending=_first(values, "Retired Pages/Pending Page Blacklist",
                               "Retired Pages/Pending Page Retirement", "Retired Pages/Pending"),
        remap_pending=_first(values, "Remapped Rows/Pending"),
        remap_failure=_first(values, "Remapped Rows/Remapping Failure Occurred"),
        reasons_active=_active_reasons(values),
        display_mode=_first(values, "Display Mode"),
        display_active=_first(values, "Display Active"),
        pcie_gen=_int_pair(values, "PCI/GPU Link Info/PCIe Generation"),
        pcie_width=_int_pair(values, "PCI/GPU Link Info/Link Width"),
        raw=values,
    )


def parse_smi_q(text: str) -> list[GpuHealth]:
    """Every GPU block of ``nvidia-smi -q``."""
    _, gpus = parse_smi_q_sections(text)
    if not gpus:
        raise ValueError("no 'GPU <bus id>' block")
    return [health_of(g) for g in gpus]


def gather_health(target: Target) -> list[GpuHealth]:
    text = _smi(target, ["nvidia-smi", "-q"], timeout=120.0)
    try:
        return parse_smi_q(text)
    except ValueError as exc:
        raise FactError("nvidia-smi -q", str(exc), verb="parse") from None


# --- clock event reasons (NVML bitmask) ------------------------------------------------------

REASON_BITS: dict[int, str] = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap",
    0x8: "hw_slowdown", 0x10: "sync_boost", 0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown", 0x100: "display_clock_setting",
}
HW_REASONS = 0x8 | 0x40 | 0x80  # the hardware slowed the GPU: a fault or cooling/power problem
THERMAL_REASONS = 0x20  # the driver slowed a hot GPU: cooling is short
# Names nvidia-smi -q prints for the same reasons.
HW_REASON_NAMES = frozenset({"HW Slowdown", "HW Thermal Slowdown", "HW Power Brake Slowdown"})
THERMAL_REASON_NAMES = frozenset({"SW Thermal Slowdown"})


def decode_reasons(mask: int) -> list[str]:
    """Names of the bits set in a clocks-event-reasons mask (unknown bits as hex)."""
    names = [name for bit, name in REASON_BITS.items() if mask & bit]
    rest = mask & ~sum(REASON_BITS)
    if rest:
        names.append(f"unknown_0x{rest:x}")
    return names


# --- nvidia-xconfig --query-gpu-info ---------------------------------------------------------

def parse_xconfig_displays(text: str) -> list[int]:
    """Display devices per GPU (``Number of Display Devices: N`` after each ``GPU #i:``)."""
    counts: list[int] = []
    for line in text.splitlines():
        line = line.strip()
        if re.match(r"GPU #\d+:", line):
            counts.append(0)
        match = re.match(r"Number of Display Devices:\s*(\d+)", line)
        if match and counts:
            counts[-1] = int(match.group(1))
    if not counts:
        raise ValueError("no 'GPU #N:' block")
    return counts


def gather_xconfig_displays(target: Target) -> list[int] | None:
    """Display devices per GPU; None when nvidia-xconfig is not installed."""
    res = target.run(["nvidia-xconfig", "--query-gpu-info"], timeout=60.0)
    if res.rc == NOT_FOUND_RC:
        return None
    if not res.ok:
        raise FactError(res.cmdline, res.describe())
    try:
        return parse_xconfig_displays(res.stdout)
    except ValueError as exc:
        raise FactError(res.cmdline, str(exc), verb="parse") from None


# --- Xid lines of the kernel log -------------------------------------------------------------

_XID = re.compile(r"NVRM: Xid \(PCI:([0-9a-fA-F:.]+)\): (\d+),?\s*(.*)")
XID_MEANING = {
    13: "graphics engine exception (often the application)",
    31: "GPU memory page fault (often the application)",
    43: "GPU stopped processing (often the application)",
    45: "preemptive cleanup after an earlier error",
    48: "double-bit ECC error",
    61: "internal micro-controller breakpoint/warning",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping recorded",
    64: "ECC page retirement or row remapping failure",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
}


@dataclass(frozen=True)
class Xid:
    pci: str
    code: int
    text: str

    def describe(self) -> str:
        meaning = XID_MEANING.get(self.code, "see NVIDIA's Xid catalog")
        return f"Xid {self.code} on PCI:{self.pci} ({meaning})"


def parse_xids(text: str) -> list[Xid]:
    """Every ``NVRM: Xid (PCI:...): N, ...`` line of a kernel log."""
    out = []
    for line in text.splitlines():
        match = _XID.search(line)
        if match:
            out.append(Xid(match.group(1), int(match.group(2)), match.group(3).strip()))
    return out


def gather_kernel_log(target: Target) -> str:
    """The kernel log: ``dmesg``, else ``sudo -n dmesg`` (Ubuntu lets only root read it),
    else ``journalctl -k`` when it says it could read the system journal."""
    tried = []
    for argv in (["dmesg"], ["sudo", "-n", "dmesg"],
                 ["journalctl", "-k", "-b", "--no-pager", "-q"]):
        res = target.run(argv, timeout=60.0)
        # journalctl exits 0 with an empty log when it may not read the system's journal
        denied = "permission" in res.stderr.lower() or "not seeing" in res.stderr.lower()
        if res.ok and not denied:
            return res.stdout
        tried.append(res.describe())
    raise FactError("the kernel log", "; ".join(tried))


# --- the GPU model table ---------------------------------------------------------------------

@lru_cache(maxsize=None)
def _model_table() -> dict[str, Any]:
    table: dict[str, Any] = json.loads((DATA_DIR / "gpu_models.json").read_text(encoding="utf-8"))
    return table


def gpu_models() -> dict[str, dict[str, Any]]:
    """``dbc_accept/data/gpu_models.json``: PCI id -> model facts."""
    models: dict[str, dict[str, Any]] = _model_table()["models"]
    return models


def memory_tolerance() -> float:
    """How far memory.total may be from the table's figure, as a fraction."""
    return float(_model_table().get("memory_tolerance", 0.03))


def model_of(device_id: str) -> dict[str, Any] | None:
    """The model entry of a ``10de:xxxx`` PCI id, or None when the table lacks it."""
    return gpu_models().get(device_id.lower())


# PCIe transfer rate per lane in GB/s after line coding, by generation.
LANE_GBPS = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}


def link_gbps(gen: int | None, width: int | None) -> float | None:
    """Raw one-way bandwidth of a PCIe link (gen5 x16 -> 63 GB/s)."""
    if not gen or not width or gen not in LANE_GBPS:
        return None
    return LANE_GBPS[gen] * width


# Relative Frobenius error of an n=2048 product of U(-1, 1) matrices, against float64. Seen on
# a CPU: fp32 2.4e-7, fp16 3.3e-4, bf16 2.7e-3; GPUs may reduce in lower precision.
MATMUL_TOLERANCE = {"fp32": 1e-5, "tf32": 3e-3, "fp16": 5e-3, "bf16": 2e-2}
# The worst element's error over the RMS of the product (CPU: fp32 1.8e-6, fp16 2.4e-3,
# bf16 1.9e-2): one wrong element that the norm above averages away still fails.
MATMUL_MAX_TOLERANCE = {"fp32": 2e-5, "tf32": 2e-2, "fp16": 2e-2, "bf16": 8e-2}

GATHERERS: list[Any] = []  # guest facts: gathered from the guest, not in host snapshots
