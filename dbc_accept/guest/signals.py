"""Signals around the test VM's life: SIGTERM acts like Ctrl-C, and teardown is not cut short.

While a VM exists, SIGTERM raises KeyboardInterrupt so that pytest ends the session the way
it does on Ctrl-C, running fixture teardown. During teardown itself SIGINT and SIGTERM are
noted and held back: a VM half torn down is worse than a few seconds' wait.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside, SIGTERM raises KeyboardInterrupt; the previous handler is restored after."""
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def signals_held(received: list[str]) -> Iterator[None]:
    """Inside, SIGINT and SIGTERM only append their name to ``received``."""
    if not _main_thread():
        yield
        return

    def note(signum: int, _frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)

    previous: dict[int, Any] = {s: signal.signal(s, note) for s in HANDLED}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
