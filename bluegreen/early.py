"""Work started on a host as soon as its connection opened, kept for the step that needs it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

T = TypeVar("T")


class _Failed:
    def __init__(self, error: Exception):
        self.error = error


class EarlyResults:
    """What early work found (or its error), by key. A step takes each once, as if it had run
    the work then: the error is raised there, in that step's words, and a later round (`status
    --watch`) runs the work anew."""

    def __init__(self) -> None:
        self._kept: dict[str, object] = {}

    def keep(self, key: str, work: Callable[[], object]) -> None:
        try:
            self._kept[key] = work()
        except Exception as error:  # raised where the result is taken
            self._kept[key] = _Failed(error)

    def take(self, key: str, work: Callable[[], T]) -> T:
        """The result kept under `key`, or `work()` when there is none."""
        if key not in self._kept:
            return work()
        kept = self._kept.pop(key)
        if isinstance(kept, _Failed):
            raise kept.error
        return cast(T, kept)
