"""Live progress on a terminal's stderr: a spinner naming the phase under way with its elapsed
time (a drain, health retries, a lock wait all show it ticking), and each upload's bytes and
rate per host. Transient: when the command ends only the printed lines remain. Never used
with `--json` or when stderr is not a terminal (the reporter decides)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Advance = Callable[[int], None]  # bytes done so far


class LiveProgress:
    def __init__(self, console: Any):
        self._console = console
        self._lock = threading.Lock()
        self._progress: Any = None
        self._phase: Any = None  # the phase spinner's task id

    def phase(self, name: str) -> None:
        with self._lock:
            progress = self._started()
            if self._phase is not None:
                progress.remove_task(self._phase)
            self._phase = progress.add_task(name, detail="")

    @contextmanager
    def transfer(self, host: str, what: str, total: int) -> Iterator[Advance]:
        with self._lock:
            progress = self._started()
            task = progress.add_task(f"  {host} {what}", total=total, detail="")
        started = time.monotonic()

        def advance(done: int) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(task, completed=done, detail=(
                f"{done / 1e6:.1f}/{total / 1e6:.1f} MB, {done / elapsed / 1e6:.1f} MB/s"))

        try:
            yield advance
        finally:
            with self._lock:
                if self._progress is progress:
                    progress.remove_task(task)

    def close(self) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
            self._progress = self._phase = None

    def _started(self) -> Any:
        if self._progress is None:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"),
                TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                console=self._console, transient=True, refresh_per_second=8)
            self._progress.start()
        return self._progress
