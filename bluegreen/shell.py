"""Commands as argv, quoted once and structurally. `str()` masks secrets; only `render()` — the
text sent to a shell — reveals them. Imports nothing from bluegreen."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

MASK = "***"


_KNOWN_SECRETS: set[str] = set()  # every secret value made in this process, for `redact`


@dataclass(frozen=True)
class Secret:
    """A value that must never be printed or logged. `shown` is what printing shows instead."""

    value: str = field(repr=False)
    shown: str = MASK

    def __post_init__(self) -> None:
        if len(self.value) >= 4:  # shorter values would mask ordinary words
            _KNOWN_SECRETS.add(self.value)

    def __str__(self) -> str:
        return self.shown

    def __repr__(self) -> str:
        return f"Secret({self.shown})"


Arg = str | Secret


def reveal(arg: Arg) -> str:
    return arg.value if isinstance(arg, Secret) else arg


def redact(text: str) -> str:
    """`text` with every known secret value — as is, or as it appears inside JSON — masked:
    what an app echoes (a connection string in its log) is never printed."""
    import json

    for value in sorted(_KNOWN_SECRETS, key=len, reverse=True):
        for form in (value, json.dumps(value)[1:-1]):
            if form in text:
                text = text.replace(form, MASK)
    return text


def mask(arg: Arg) -> str:
    return str(arg)


# Reads `export NAME='value'` lines from stdin, then runs the command: environment values (secrets
# among them) never appear in a command line, which every local user can read in /proc
_ENV_FROM_STDIN = 'eval "$(cat)" && exec "$@"'
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, init=False)
class Command:
    """A program and its arguments. Every argument is quoted on the way to a shell, so a value such
    as ``$(touch x); rm -rf /`` arrives as literal text. `env` reaches the program through stdin
    (`input()`), never through its command line."""

    argv: tuple[Arg, ...]
    env: tuple[tuple[str, Arg], ...]
    sudo: bool

    def __init__(self, *argv: Arg, env: Mapping[str, Arg] | None = None, sudo: bool = False):
        if not argv:
            raise ValueError("a command needs a program")
        for name in env or {}:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        object.__setattr__(self, "argv", tuple(argv))
        object.__setattr__(self, "env", tuple(sorted((env or {}).items())))
        object.__setattr__(self, "sudo", sudo)

    @classmethod
    def script(cls, script: str, *args: Arg, env: Mapping[str, Arg] | None = None) -> Command:
        """A fixed POSIX sh script whose variable parts come in as positional parameters
        ("$1", "$2", …): the script text is ours, the values are quoted arguments."""
        return cls("sh", "-c", script, "bluegreen", *args, env=env)

    def with_sudo(self) -> Command:
        return Command(*self.argv, env=dict(self.env), sudo=True)

    def wire_argv(self) -> tuple[Arg, ...]:
        """What runs: sudo, the reader of the environment, then the program."""
        argv = self.argv
        if self.env:
            argv = ("sh", "-c", _ENV_FROM_STDIN, "bluegreen", *argv)
        return ("sudo", "-n", "--", *argv) if self.sudo else argv

    def input(self) -> bytes | None:
        """What the command needs on stdin: its environment, or None. Never print this."""
        if not self.env:
            return None
        return "".join(f"export {name}={shlex.quote(reveal(value))}\n"
                       for name, value in self.env).encode()

    def render(self) -> str:
        """The exact text for a POSIX shell. Secrets in arguments are revealed: never print
        this."""
        return shlex.join(reveal(a) for a in self.wire_argv())

    def revealed_argv(self) -> list[str]:
        return [reveal(a) for a in self.wire_argv()]

    def __str__(self) -> str:
        """What the command does, for people: environment as `env NAME=value` (secrets masked)."""
        shown: list[Arg] = ["sudo", "-n", "--"] if self.sudo else []
        if self.env:
            shown += ["env", *(f"{name}={mask(value)}" for name, value in self.env)]
        return shlex.join([*(mask(a) for a in shown), *(mask(a) for a in self.argv)])
