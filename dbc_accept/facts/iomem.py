"""/proc/iomem as a tree, and which boot framebuffer sits on which GPU BAR."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from dbc_accept.facts import read
from dbc_accept.target import Target
from dbc_accept.verdict import FactError

IOMEM = "/proc/iomem"
# Boot framebuffers that keep a GPU's memory busy so vfio-pci cannot reserve it
# (BOOTFB is the range sysfb registers for simplefb on newer kernels).
FRAMEBUFFERS = ("vesafb", "efifb", "simplefb", "bootfb", "simple-framebuffer")

_LINE = re.compile(r"^(?P<indent> *)(?P<start>[0-9a-fA-F]+)-(?P<end>[0-9a-fA-F]+) : (?P<name>.*)$")


@dataclass
class IomemRange:
    """One /proc/iomem entry and the entries nested under it."""

    start: int
    end: int
    name: str
    children: list[IomemRange] = field(default_factory=list)

    def walk(self) -> Iterator[IomemRange]:
        yield self
        for child in self.children:
            yield from child.walk()

    def overlaps(self, start: int, end: int) -> bool:
        return self.start <= end and start <= self.end

    @property
    def is_framebuffer(self) -> bool:
        name = self.name.strip().lower()
        return any(name == fb or name.startswith(fb + ".") for fb in FRAMEBUFFERS)

    def __str__(self) -> str:
        return f"{self.start:08x}-{self.end:08x} : {self.name}"


@dataclass(frozen=True)
class Iomem:
    """The whole tree; ``roots`` are the unindented entries."""

    roots: tuple[IomemRange, ...]

    def walk(self) -> Iterator[IomemRange]:
        for root in self.roots:
            yield from root.walk()

    def framebuffers_over(self, start: int, end: int) -> list[IomemRange]:
        """Framebuffer entries whose range overlaps [start, end]."""
        return [r for r in self.walk() if r.is_framebuffer and r.overlaps(start, end)]


def parse_iomem(text: str) -> Iomem:
    """Parse /proc/iomem: `start-end : name` lines, nesting shown by indentation."""
    roots: list[IomemRange] = []
    stack: list[tuple[int, IomemRange]] = []  # (indent, entry) of the open ancestors
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m:
            raise ValueError(f"line {number} is not `start-end : name`: {line[:60]!r}")
        entry = IomemRange(int(m["start"], 16), int(m["end"], 16), m["name"])
        if entry.end < entry.start:
            raise ValueError(f"line {number} ends before it starts: {line[:60]!r}")
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stack:
            stack[-1][1].children.append(entry)
        elif indent:
            raise ValueError(f"line {number} is indented under nothing: {line[:60]!r}")
        else:
            roots.append(entry)
        stack.append((indent, entry))
    if not roots:
        raise ValueError("no entries")
    return Iomem(tuple(roots))


def gather_iomem(target: Target) -> Iomem:
    text = read(target, IOMEM)
    try:
        iomem = parse_iomem(text)
    except ValueError as exc:
        raise FactError(IOMEM, str(exc), verb="parse") from None
    entries = list(iomem.walk())
    if len(entries) > 1 and all(e.start == 0 and e.end == 0 for e in entries):
        # The kernel hides the addresses from anyone without CAP_SYS_ADMIN.
        raise FactError(IOMEM, "every address reads as 0: run as root")
    return iomem


GATHERERS = [gather_iomem]
