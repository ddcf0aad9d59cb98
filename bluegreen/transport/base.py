"""The Transport protocol, the result of a command, and the file operations every transport
shares (they are plain shell commands, so they work the same with sudo)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from bluegreen.errors import RemoteCommandFailed
from bluegreen.shell import Command
from bluegreen.transport.tunnel import Tunnel


@dataclass(frozen=True)
class CommandResult:
    host: str
    command: str  # masked: safe to print
    exit_status: int
    stdout: str
    stderr: str
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def tail(self, lines: int = 3) -> str:
        """The last lines it said — on stderr, or else on stdout — on one line."""
        return tail(self.stderr if self.stderr.strip() else self.stdout, lines)

    def check(self, step: str | None = None) -> CommandResult:
        if not self.ok:
            said = self.tail()
            raise RemoteCommandFailed(
                f"`{self.command}` exited {self.exit_status}" + (f": {said}" if said else "."),
                where=f"{self.host}" + (f" ({step})" if step else ""),
                detail=said or f"exit status {self.exit_status}",
            )
        return self


class Payload(Protocol):
    """Input too large to hold in memory (a release), read by offset from any thread, or
    handed by its file descriptor to a process that sends it."""

    @property
    def size(self) -> int: ...
    def read_at(self, offset: int, length: int) -> bytes: ...
    def fileno(self) -> int: ...


Input = bytes | Payload  # what a command may read on its stdin


def input_bytes(stdin: Input) -> bytes:
    """All of it, for transports that cannot stream."""
    return stdin if isinstance(stdin, bytes) else stdin.read_at(0, stdin.size)


def input_size(stdin: Input) -> int:
    return len(stdin) if isinstance(stdin, bytes) else stdin.size


def with_environment(command: Command, stdin: Input | None) -> Input | None:
    """The stdin to send: the command's environment (see `Command.input`), or `stdin`; one
    command cannot take both."""
    environment = command.input()
    if environment is None:
        return stdin
    if stdin is not None:
        raise ValueError(f"`{command}` takes its environment on stdin, so no other input")
    return environment


def tail(text: str, lines: int = 3) -> str:
    """The last `lines` lines of `text`, joined on one line with " / "."""
    return " / ".join(text.strip().splitlines()[-lines:])


class Transport(Protocol):
    host: str

    def run(
        self, command: Command, *, timeout: float | None = None, stdin: Input | None = None,
        sent: Callable[[int], None] | None = None,  # told how much of stdin went, as it goes
    ) -> CommandResult: ...

    def tunnel(self, port: int, *, address: str = "127.0.0.1") -> AbstractContextManager[
        Tunnel
    ]: ...

    def close(self) -> None: ...


class Transports(Protocol):
    """The open transports of an operation, by host name (`Connections`, or a dict in tests)."""

    def __getitem__(self, name: str) -> Transport: ...


# Written to a temp file in the target's own directory (so the final rename is atomic: readers see
# the old file or the new one, never half of one), with the mode set before the rename.
_PUT_SCRIPT = (
    'set -e; dir=$(dirname -- "$1"); mkdir -p -- "$dir"; '
    'tmp=$(mktemp -- "$dir/.bluegreen-tmp.XXXXXX"); trap \'rm -f -- "$tmp"\' EXIT; '
    'cat > "$tmp"; chmod -- "$2" "$tmp"; mv -f -- "$tmp" "$1"; trap - EXIT'
)
_GET_SCRIPT = 'if [ -e "$1" ]; then cat -- "$1"; else exit 44; fi'
_MISSING = 44
_GET_MANY_SCRIPT = (
    'sep=$1; shift; for f in "$@"; do if [ -e "$f" ]; then echo present; cat -- "$f" || exit 1; '
    'else printf absent; fi; printf \'\\n%s\\n\' "$sep"; done'
)


def put_file(
    transport: Transport, data: bytes, path: PurePosixPath | str, *, mode: int = 0o600
) -> None:
    """Write `data` to `path` atomically with `mode`."""
    transport.run(Command.script(_PUT_SCRIPT, str(path), f"{mode:o}"), stdin=data).check(
        f"write {path}"
    )


def get_file(transport: Transport, path: PurePosixPath | str) -> str | None:
    """The text of `path`, or None when it does not exist."""
    result = transport.run(Command.script(_GET_SCRIPT, str(path)))
    if result.exit_status == _MISSING:
        return None
    return result.check(f"read {path}").stdout


def get_files(transport: Transport, *paths: str) -> list[str | None]:
    """The texts of `paths` (None for one that does not exist), in one round trip."""
    reading = FilesRead(paths)
    return reading.texts(transport.run(reading.command).check(reading.what).stdout,
                         host=transport.host)


class FilesRead:
    """Reading the texts of `paths` in one command, which may run after another (`command`
    for `get_files`, or a command of the caller's that runs it)."""

    def __init__(self, paths: tuple[str, ...]):
        self.paths = paths
        self.separator = f"--bluegreen-{uuid.uuid4().hex}--"
        self.command = Command.script(_GET_MANY_SCRIPT, self.separator, *paths)
        self.what = f"read {', '.join(paths)}"

    def texts(self, output: str, *, host: str, errors: str = "") -> list[str | None]:
        """What `command` printed, as the texts of `paths` (None for one that does not exist);
        `errors`: what it said on stderr, for the message when the output is cut short."""
        try:
            return parse_files(output, self.separator, len(self.paths))
        except ValueError as exc:
            said = tail(errors) or str(exc)
            raise RemoteCommandFailed(f"{self.what}: {said}.", where=host, detail=said) from None


def parse_files(output: str, separator: str, count: int) -> list[str | None]:
    """`_GET_MANY_SCRIPT`'s output: per file "present" and its text, or "absent", each ended by
    a newline and the separator line."""
    parts = output.split(f"\n{separator}\n")
    if len(parts) != count + 1 or parts[-1]:
        raise ValueError(f"unexpected output reading {count} file(s)")
    return [part.partition("\n")[2] if part.startswith("present\n") else None
            for part in parts[:-1]]
