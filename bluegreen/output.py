"""Reporters: progress on stderr as it happens, results on stdout. Human mode uses rich (plain
lines when stderr is not a terminal); JSON mode prints exactly one document on stdout
(``{"data": …}`` or ``{"error": …}``), so it is always parseable."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from bluegreen.errors import BluegreenError
from bluegreen.shell import redact

Row = Sequence[str]


class Reporter(Protocol):
    json_mode: bool

    def phase(self, name: str) -> None: ...
    def step(self, host: str, message: str, *, ok: bool | None = None) -> None: ...
    def warn(self, message: str) -> None: ...
    def result(self, data: Any, *, human: Callable[[Any], None] | None = None) -> None: ...
    def error(self, error: BluegreenError, *, details: str | None = None) -> None: ...
    def transfer(self, host: str, what: str, total: int
                 ) -> AbstractContextManager[Callable[[int], None]]: ...
    def close(self) -> None: ...


class HumanReporter:
    json_mode = False

    def __init__(self, *, color: bool = True, verbose: bool = False, progress: bool = True):
        from rich.console import Console

        from bluegreen.progress import LiveProgress

        # None, not False, when colour is allowed: rich then honours NO_COLOR itself
        no_color = None if color else True
        self.err = Console(stderr=True, no_color=no_color, highlight=False, soft_wrap=True)
        self.out = Console(no_color=no_color, highlight=False, soft_wrap=True)
        self.verbose = verbose
        self._lock = threading.Lock()
        # a spinner and upload rates, only where someone watches: stderr is a terminal
        self._live = LiveProgress(self.err) if progress and self.err.is_terminal else None
        # Without a terminal to colour (a CI log, a pipe) a progress line is its plain text,
        # written as it is: rich's rendering costs ~0.5 ms a line, which a fleet's hundreds of
        # lines, printed from many threads at once, pay under one lock.
        self._plain = self.err.color_system is None and self._live is None

    def _progress(self, styled: str, plain: str) -> None:
        with self._lock:
            if self._plain:
                sys.stderr.write(plain + "\n")
                sys.stderr.flush()
            else:
                self.err.print(styled)

    def phase(self, name: str) -> None:
        self._progress(f"[bold]» {_escape(name)}[/bold]", f"» {name}")
        if self._live is not None:
            self._live.phase(name)

    def transfer(self, host: str, what: str, total: int
                 ) -> AbstractContextManager[Callable[[int], None]]:
        if self._live is None:
            return _ignored_progress()
        return self._live.transfer(host, what, total)

    def close(self) -> None:
        if self._live is not None:
            self._live.close()

    def step(self, host: str, message: str, *, ok: bool | None = None) -> None:
        mark = {True: "[green]✓[/green]", False: "[red]✗[/red]", None: "·"}[ok]
        message = redact(message)
        self._progress(f"  {mark} [cyan]{_escape(host)}[/cyan] {_escape(message)}",
                       f"  {'✓' if ok else '·' if ok is None else '✗'} {host} {message}")

    def warn(self, message: str) -> None:
        message = redact(message)
        self._progress(f"[yellow]warning:[/yellow] {_escape(message)}", f"warning: {message}")

    def result(self, data: Any, *, human: Callable[[Any], None] | None = None) -> None:
        self.close()
        if human is not None:
            human(self.out)
        elif data is not None:
            self.out.print(_escape(json.dumps(data, indent=2, default=json_default)))

    def error(self, error: BluegreenError, *, details: str | None = None) -> None:
        self.close()
        if details and self.verbose:
            self.err.print(redact(details), markup=False)
        self.err.print(f"[bold red]error[/bold red] ({error.code}, exit {error.exit_code}): "
                       f"{_escape(redact(error.paragraph()))}")

    def table(self, title: str, columns: Row, rows: Sequence[Row]) -> Callable[[Any], None]:
        def render(console: Any) -> None:
            from rich.table import Table

            table = Table(title=title, title_justify="left")
            for column in columns:
                table.add_column(column)
            for row in rows:
                table.add_row(*(_escape(cell) for cell in row))
            console.print(table)

        return render


class JsonReporter:
    json_mode = True

    def __init__(self, *, verbose: bool = False):
        self.verbose = verbose
        self._lock = threading.Lock()
        self._printed = False

    def phase(self, name: str) -> None:
        self._progress(f"» {name}")

    def step(self, host: str, message: str, *, ok: bool | None = None) -> None:
        mark = {True: "ok", False: "FAILED", None: "-"}[ok]
        self._progress(f"  {mark} {host} {message}")

    def warn(self, message: str) -> None:
        self._progress(f"warning: {message}")

    def result(self, data: Any, *, human: Callable[[Any], None] | None = None) -> None:
        self._emit({"data": data})

    def error(self, error: BluegreenError, *, details: str | None = None) -> None:
        if details and self.verbose:
            self._progress(details)
        self._emit({"error": error.to_dict()})

    def transfer(self, host: str, what: str, total: int
                 ) -> AbstractContextManager[Callable[[int], None]]:
        return _ignored_progress()

    def close(self) -> None:
        pass

    def _emit(self, document: dict[str, Any]) -> None:
        if self._printed:
            return
        self._printed = True
        sys.stdout.write(redact(json.dumps(document, default=json_default)) + "\n")
        sys.stdout.flush()

    def _progress(self, line: str) -> None:
        with self._lock:
            sys.stderr.write(redact(line) + "\n")
            sys.stderr.flush()


@contextmanager
def _ignored_progress() -> Iterator[Callable[[int], None]]:
    yield lambda done: None


def json_default(value: object) -> object:
    """What `json.dumps` cannot write by itself: a typed result (`bluegreen.results`) as its
    fields, anything else as its text."""
    from bluegreen.results import plain

    converted = plain(value)
    return str(value) if converted is None else converted


def ci_annotation(error: BluegreenError) -> None:
    """In a GitHub Actions job, an error also becomes an annotation on the run's summary (a
    workflow command on stderr, so `--json` keeps stdout to its one document)."""
    import os

    if os.environ.get("GITHUB_ACTIONS") != "true":
        return

    def escape(text: str, *, prop: bool = False) -> str:
        text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return text.replace(":", "%3A").replace(",", "%2C") if prop else text

    title = escape(f"bluegreen: {error.code} (exit {error.exit_code})", prop=True)
    sys.stderr.write(f"::error title={title}::{escape(redact(error.paragraph()))}\n")
    sys.stderr.flush()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
