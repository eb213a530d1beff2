"""Signals around the test VM's life: SIGTERM acts like Ctrl-C, and teardown is not cut short.

While a VM exists, SIGTERM raises KeyboardInterrupt so that pytest ends the session the way
it does on Ctrl-C, running fixture teardown. During teardown itself SIGINT and SIGTERM are
noted and held back (and raised again after, where the caller asks): a VM half torn down
is worse than a few seconds' wait.
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
def signals_held(received: list[str] | None = None, *, deliver: bool = False) -> Iterator[None]:
    """Inside, SIGINT and SIGTERM are held: each appends its name to ``received``. With
    ``deliver``, each one held is raised again (once) after the block, to the handler it
    would have reached; without, the caller reports them."""
    if not _main_thread():
        yield
        return
    got: list[str] = received if received is not None else []
    start = len(got)

    def note(signum: int, _frame: FrameType | None) -> None:
        got.append(signal.Signals(signum).name)

    previous: dict[int, Any] = {s: signal.signal(s, note) for s in HANDLED}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if deliver:
            for name in dict.fromkeys(got[start:]):
                signal.raise_signal(signal.Signals[name])
