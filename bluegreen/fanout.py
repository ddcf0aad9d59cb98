"""Bounded parallel fan-out across hosts. Every host's failure is collected and reported together
(one `FanOutError` naming each host, step and reason), never just the first."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from bluegreen.cancel import CANCELLED
from bluegreen.errors import BluegreenError, FanOutError, HostFailure

T = TypeVar("T")
R = TypeVar("R")


def fan_out(
    items: Sequence[T],
    work: Callable[[T], R],
    *,
    step: str,
    name: Callable[[T], str],
    parallelism: int,
) -> list[R]:
    """Run `work` on every item with at most `parallelism` at once; results in input order."""
    if not items:
        return []
    if len(items) == 1 or parallelism == 1:
        outcomes = [_attempt(work, item) for item in items]
    else:
        pool = ThreadPoolExecutor(max_workers=min(parallelism, len(items)))
        try:
            outcomes = list(pool.map(lambda item: _attempt(work, item), items))
        except BaseException:
            # Ctrl-C: tell the workers to stop and do not wait for them here
            CANCELLED.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    failures = [
        HostFailure(name(item), step, outcome)
        for item, outcome in zip(items, outcomes, strict=True)
        if isinstance(outcome, BluegreenError)
    ]
    if failures:
        raise FanOutError(step, failures)
    return outcomes  # type: ignore[return-value]


def _attempt(work: Callable[[T], R], item: T) -> R | BluegreenError:
    try:
        return work(item)
    except BluegreenError as exc:
        return exc
    except Exception as exc:  # a bug on one host must not hide the other hosts' results
        error = BluegreenError(f"internal error: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        error.details = traceback.format_exc()  # type: ignore[attr-defined]
        return error
