"""Commands as argv, quoted once and structurally. `str()` masks secrets; only `render()` — the
text sent to a shell — reveals them. Imports nothing from bluegreen."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

MASK = "***"


@dataclass(frozen=True)
class Secret:
    """A value that must never be printed or logged. `shown` is what printing shows instead."""

    value: str = field(repr=False)
    shown: str = MASK

    def __str__(self) -> str:
        return self.shown

    def __repr__(self) -> str:
        return f"Secret({self.shown})"


Arg = str | Secret


def reveal(arg: Arg) -> str:
    return arg.value if isinstance(arg, Secret) else arg


def mask(arg: Arg) -> str:
    return str(arg)


@dataclass(frozen=True, init=False)
class Command:
    """A program and its arguments. Every argument is quoted on the way to a shell, so a value such
    as ``$(touch x); rm -rf /`` arrives as literal text."""

    argv: tuple[Arg, ...]

    def __init__(self, *argv: Arg, env: Mapping[str, Arg] | None = None):
        if not argv:
            raise ValueError("a command needs a program")
        prefix: list[Arg] = []
        if env:
            prefix.append("env")
            for name, value in sorted(env.items()):
                if isinstance(value, Secret):
                    prefix.append(Secret(f"{name}={value.value}", shown=f"{name}={MASK}"))
                else:
                    prefix.append(f"{name}={value}")
        object.__setattr__(self, "argv", (*prefix, *argv))

    @classmethod
    def script(cls, script: str, *args: Arg, env: Mapping[str, Arg] | None = None) -> Command:
        """A fixed POSIX sh script whose variable parts come in as positional parameters
        ("$1", "$2", …): the script text is ours, the values are quoted arguments."""
        return cls("sh", "-c", script, "bluegreen", *args, env=env)

    def with_sudo(self) -> Command:
        return Command("sudo", "-n", "--", *self.argv)

    def render(self) -> str:
        """The exact text for a POSIX shell, secrets included. Never print this."""
        return shlex.join(reveal(a) for a in self.argv)

    def revealed_argv(self) -> list[str]:
        return [reveal(a) for a in self.argv]

    def __str__(self) -> str:
        return shlex.join(mask(a) for a in self.argv)
