"""`bluegreen retire`: stop the idle colour once its established connections have drained (or a
timeout passes, saying how many were cut), and mark it retired in the state. A retired colour is
no rollback target until `bluegreen rollback --restart` starts it again."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bluegreen.app import AppStack, InstanceSpec, established, instance_specs
from bluegreen.errors import UsageError
from bluegreen.executor import Step
from bluegreen.fanout import fan_out
from bluegreen.model import Colour
from bluegreen.session import Session
from bluegreen.state import State, now
from bluegreen.transport.base import Transport
from bluegreen.waiting import poll_until

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, *, option: str) -> float:
    """'300', '90s', '5m', '1h', '500ms' → seconds."""
    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"{text!r} is not a duration.", where=option,
                         hint="Write seconds (300) or a number with s, m or h (5m).")
    return float(match[1]) * _UNIT[match[2]]


@dataclass(frozen=True)
class Retired:
    """What a retire did: which colour, from which release, and the connections its drain
    timeout cut, per host (none: every instance drained)."""

    colour: Colour
    release: str | None
    cut: dict[str, int]


def drain(stack: AppStack, transport: Transport, spec: InstanceSpec, release: str | None, *,
          timeout: float, report: Callable[[str], None], ask: bool = True,
          open_now: int | None = None) -> int:
    """Let the instance's established connections end: run `app.drain` (when set and `ask`) so
    the app can tell its long-lived clients to go — e.g. a WebSocket close 1001 — then wait up
    to `timeout` for none to be left (`open_now`: how many there are, when just read). How many
    were still open at the end (0: drained)."""
    def count() -> int:
        return established(transport, spec.address, spec.port)

    if (count() if open_now is None else open_now) == 0:
        return 0
    if ask and stack.settings.drain:
        _ask_to_drain(stack, transport, spec, release, report)
    return poll_until(count, lambda n: n == 0, timeout=timeout, interval=0.1)


def _ask_to_drain(stack: AppStack, transport: Transport, spec: InstanceSpec,
                  release: str | None, report: Callable[[str], None]) -> None:
    pid = None
    if stack.drain_needs_pid():  # check_templates made sure app.pid_file is set
        pid = stack.read_pid(transport, spec, release)
        if pid is None:
            report(f"app.drain not run: no pid in {stack.pid_file(spec, release)}")
            return
    result = transport.run(stack.drain_command(spec, release, pid=pid))
    report("asked to drain (app.drain)" if result.ok else
           f"app.drain exited {result.exit_status}: {result.tail() or 'no output'}")


@dataclass
class Retiring:
    """A retire as it runs: the state as last written, and what it did."""

    state: State
    retired: Retired | None = None


def retire_steps(session: Session, progress: Retiring, *, drain_timeout: float) -> list[Step]:
    """Drain and stop the idle colour on every host, written ahead as `stopping`; then (the
    caller holds the lock) record it retired. No steps when it is already retired."""
    inventory, reporter = session.inventory, session.reporter
    state = progress.state
    if state.live is None:
        def refuse() -> None:
            raise UsageError("nothing is live yet, so there is no idle colour to retire.")

        return [Step("find the idle colour (none: nothing is live yet)", refuse)]
    idle = state.live.other
    if state.colour(idle).status == "retired":
        reporter.step(inventory.primary_balancer.name, f"{idle} is already retired")
        return []
    assert inventory.app is not None
    stack = AppStack(inventory, inventory.app)
    before = state.colour(idle)
    release = before.release
    # a colour that did not run a release it served stays no rollback target once retired
    unserved = None if before.status == "running" else (
        before.error or f"it was {before.status}, not running, when it was retired")
    specs = instance_specs(inventory, idle)

    def write_ahead() -> None:
        progress.state = session.begin_change(progress.state, idle, status="stopping",
                                              release=release, error=unserved,
                                              step=f"retire {idle}: drain and stop it")

    def drain_and_stop(spec: InstanceSpec) -> int:
        transport = session.connections[spec.host.name]
        count = drain(stack, transport, spec, release, timeout=drain_timeout,
                      report=lambda line: reporter.step(spec.host.name, line))
        stack.stop(transport, spec, release)
        reporter.step(spec.host.name, f"{idle} stopped"
                      + (f"; {count} connection(s) still open at the drain timeout were closed "
                         "by its stop" if count else " after its connections drained"), ok=True)
        return count

    def stop_all() -> None:
        reporter.phase(f"retire {idle}: wait up to {drain_timeout:g} s for its connections "
                       "to end")
        cut = fan_out(specs, drain_and_stop, step="retire", name=lambda s: s.host.name,
                      parallelism=inventory.ssh.parallelism)
        progress.retired = Retired(idle, release,
                                   {s.host.name: n for s, n in zip(specs, cut, strict=True)})

    def record() -> None:
        progress.state = session.finish_change(progress.state.with_colour(
            idle, status="retired", since=now(), replaced=None, error=unserved))

    return [
        Step(f"record {idle} as stopping on every balancer (written ahead)", write_ahead),
        Step(f"on every app host, in parallel: wait up to {drain_timeout:g} s for {idle}'s "
             "established connections to end" + (" (asking the app to drain them: app.drain)"
                                                 if stack.settings.drain else "")
             + ", then stop it", stop_all,
             details=tuple(f"{spec.host.name}: stop: {stack.stop_command(spec, release)}"
                           for spec in specs)),
        Step(f"record {idle} as retired (no rollback target until `rollback --restart`)",
             record, commits=True),
    ]
