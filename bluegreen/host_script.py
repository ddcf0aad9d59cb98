"""Several steps on one host in one command: each step's output and exit status come back framed,
so a phase costs one round trip and a failure still names its exact step. The chain stops at the
first step that fails; the steps after it report nothing (None) — unless it is told to keep
going, for steps that only read."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from bluegreen.errors import RemoteCommandFailed
from bluegreen.shell import Command
from bluegreen.transport.base import CommandResult, Transport

_MARK = f"bluegreen-step-{secrets.token_hex(6)}"  # random: no step's output can fake a frame
# $1 the seconds each step may take (0: no limit of its own), then the steps: a step that
# outlives its limit is stopped and exits 124, as GNU timeout's own. Each step is a rendered
# command (one program, its arguments quoted): `eval` runs it, under `timeout` when it has a
# limit, without a shell of its own in between.
_CHAIN = (
    'limits=$1; shift; i=0; for step in "$@"; do i=$((i + 1)); '
    'limit=${limits%% *}; limits=${limits#* }; '
    f'echo "{_MARK} $i"; echo "{_MARK} $i" >&2; '
    'if [ "$limit" = 0 ]; then eval "$step"; else eval "timeout -k 5 $limit $step"; fi '
    '</dev/null; status=$?; '
    f'printf "\\n{_MARK} %s end %s\\n" "$i" "$status"; '
    f'printf "\\n{_MARK} %s end %s\\n" "$i" "$status" >&2; '
    '[ "$status" -eq 0 ] || [ -n "$keep_going" ] || exit "$status"; done')
_FRAME = re.compile(rf"{_MARK} (\d+)\n(.*?)\n{_MARK} \1 end (\d+)\n", re.DOTALL)


@dataclass(frozen=True)
class HostStep:
    name: str  # what it does, as errors name it
    command: Command
    limit: float | None = None  # seconds it may take on the host


def chained(steps: Sequence[HostStep], *, keep_going: bool = False) -> Command:
    """One command that runs `steps` in order. Environment values of the steps (a start
    command's) are given to the whole chain."""
    env = {name: value for step in steps for name, value in step.command.env}
    limits = " ".join(f"{step.limit:g}" if step.limit else "0" for step in steps)
    script = f"keep_going={'1' if keep_going else ''}; {_CHAIN}"
    return Command.script(script, limits, *(Command(*step.command.argv).render()
                                            for step in steps), env=env)


def run_chain(transport: Transport, steps: Sequence[HostStep], *, timeout: float | None = None,
              keep_going: bool = False) -> list[CommandResult | None]:
    """Run `steps` as one command; each step's own result, None for those that did not run
    (`keep_going`: every step runs, whatever the ones before it did)."""
    result = transport.run(chained(steps, keep_going=keep_going), timeout=timeout)
    return split(result, steps)


def split(result: CommandResult, steps: Sequence[HostStep]) -> list[CommandResult | None]:
    """Each step's result from the chain's framed output."""
    out = {int(m[1]): (m[2], int(m[3])) for m in _FRAME.finditer(result.stdout)}
    err = {int(m[1]): m[2] for m in _FRAME.finditer(result.stderr)}
    found: list[CommandResult | None] = []
    for number, step in enumerate(steps, start=1):
        if number not in out:
            found.append(None)
            continue
        stdout, status = out[number]
        found.append(CommandResult(result.host, str(step.command), status, stdout,
                                   err.get(number, "")))
    return found


def reported(result: CommandResult | None, step: HostStep, *, where: str,
             hint: str | None = None) -> CommandResult:
    """A step's result from `run_chain`; a step that should have run but did not report (the
    chain itself broke off) is an error naming it."""
    if result is None:
        raise RemoteCommandFailed(f"`{step.command}` ({step.name}) did not report back.",
                                  where=where, hint=hint)
    return result
