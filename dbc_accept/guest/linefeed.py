"""Hands each complete line of a growing output buffer to a callback (a probe's progress)."""

from __future__ import annotations

from typing import Callable


class LineFeed:
    """Hands each complete line of a growing stdout buffer to a callback, once."""

    def __init__(self, on_line: Callable[[str], None] | None) -> None:
        self.on_line = on_line
        self.done = 0  # bytes of the buffer already handed over

    def feed(self, buf: bytearray, final: bool = False) -> None:
        if self.on_line is None:
            return
        end = len(buf) if final else buf.rfind(b"\n", self.done) + 1
        if end <= self.done:
            return
        chunk = bytes(buf[self.done:end]).decode(errors="replace")
        self.done = end
        for line in chunk.splitlines():
            self.on_line(line)
