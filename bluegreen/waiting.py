"""Waiting for a condition on a host: poll it until it holds or a deadline passes — the one loop
every wait uses. Imports nothing but `cancel`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from bluegreen import cancel

T = TypeVar("T")


def poll_until(probe: Callable[[], T], done: Callable[[T], bool] = bool, *, timeout: float,
               interval: float, interruptible: bool = True,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] | None = None) -> T:
    """Call `probe` until `done` says its value will do, for at most `timeout` seconds (at least
    once, and once more at the deadline); return the last value, for the caller to judge.

    An interruptible wait ends early (Interrupted) once the operation is cancelled; one that
    must run to its end — confirming an activation already under way — is not."""
    pause = sleep or (cancel.sleep if interruptible else time.sleep)
    deadline = clock() + timeout
    while True:
        value = probe()
        remaining = deadline - clock()
        if done(value) or remaining <= 0:
            return value
        pause(min(interval, remaining))
