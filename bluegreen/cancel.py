"""Cooperative cancellation. Ctrl-C and SIGTERM raise KeyboardInterrupt in the main thread; worker
threads (health checks, fan-out) notice through `CANCELLED` and stop at their next wait, so the
main thread can restore, record and release the lock without waiting for them. Around a flip,
signals are deferred so a balancer is never left half-switched."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bluegreen.errors import Interrupted

CANCELLED = threading.Event()


def sleep(seconds: float) -> None:
    """time.sleep that ends early, raising Interrupted, once the operation is cancelled."""
    if CANCELLED.wait(seconds):
        raise Interrupted("cancelled")


def check_cancelled() -> None:
    if CANCELLED.is_set():
        raise Interrupted("cancelled")


@contextmanager
def deferred_interrupts(*, then_raise: bool = True) -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, then act on them (raise KeyboardInterrupt,
    unless `then_raise` is false because the block is already the cleanup of one). A signal
    marks the operation cancelled at once, so waits inside the block that may be cut short
    (`sleep`, `check_cancelled`) end early; the block decides what must still finish."""
    global _deferring
    if threading.current_thread() is not threading.main_thread() or _deferring:
        yield  # signals are already held (by an enclosing block) or go to the main thread
        return
    received: list[int] = []

    def remember(signum: int, frame: Any) -> None:
        received.append(signum)
        CANCELLED.set()

    previous = {sig: signal.signal(sig, remember) for sig in SIGNALS}
    _deferring = True
    try:
        yield
    finally:
        _deferring = False
        for sig, handler in previous.items():
            signal.signal(sig, _ignore_further if received else handler)
    if received and then_raise:
        raise KeyboardInterrupt


SIGNALS = (signal.SIGINT, signal.SIGTERM)


def interrupt_once(signum: int, frame: Any) -> None:
    """The handler for SIGINT and SIGTERM while a command runs: the first one interrupts (a
    KeyboardInterrupt, so cleanup runs); later ones are ignored, so that they cannot cut the
    cleanup — restores, records, the lock's release — short."""
    for sig in SIGNALS:
        signal.signal(sig, _ignore_further)
    CANCELLED.set()
    raise KeyboardInterrupt


def _ignore_further(signum: int, frame: Any) -> None:
    CANCELLED.set()


_deferring = False
