"""`bluegreen reload`: a rolling, in-place, graceful reload of one colour's workers — Swoole's
SIGUSR1 way (gunicorn: HUP) — one host at a time by default. On each host: read the master's pid
file, record its workers, send the signal, wait until every old worker is gone and as many new
ones run, health-check the instance, then go on. The first host that fails stops the run."""

from __future__ import annotations

import re
import time
from typing import Any

from bluegreen import cancel
from bluegreen.app import AppStack, InstanceSpec, instance_specs
from bluegreen.errors import BluegreenError, InventoryError, ReloadFailed, UsageError
from bluegreen.fanout import fan_out
from bluegreen.instances import check_instances
from bluegreen.inventory import Inventory
from bluegreen.model import Colour
from bluegreen.output import Reporter
from bluegreen.processes import PROCESS_TABLE, ProcessTable
from bluegreen.render import render_text
from bluegreen.session import Session
from bluegreen.shell import Command
from bluegreen.state import State, ensure_consistent

COLOUR_CHOICES = ("live", "idle", "blue", "green")


def reload_workers(inventory: Inventory, reporter: Reporter, *, colour: str,
                   signal: str | None, parallel: int, task_workers: bool, lock_wait: float,
                   dry_run: bool) -> dict[str, Any]:
    app = inventory.app
    if app is None or not app.pid_file:
        raise InventoryError("reload needs app.pid_file (the master's pid file).",
                             where=f"{inventory.path}: app.pid_file",
                             hint="For example '{{ app_root }}/{{ colour }}.pid'.")
    chosen_signal = (signal or (app.task_reload_signal if task_workers else app.reload_signal)
                     ).upper().removeprefix("SIG")
    if not re.fullmatch(r"[A-Z0-9+-]+", chosen_signal):
        raise UsageError(f"{chosen_signal!r} is not a signal name.", where="--signal",
                         hint="Use a name such as HUP, USR1 or USR2.")
    with Session(inventory, reporter, command=f"reload {colour}", lock=not dry_run,
                 lock_wait=lock_wait) as session:
        state = ensure_consistent(session.read_states())
        target = _resolve_colour(colour, state)
        stack = AppStack(inventory, app)
        specs = instance_specs(inventory, target)
        release = state.colour(target).release
        if dry_run:
            return {"dry_run": True, "plan": [
                f"reload {target} in place with SIG{chosen_signal}, {parallel} host(s) at a "
                "time; stop at the first failure",
                *[f"   {s.host.name}: pid file {_pid_file(stack, s, release)}, replace every "
                  "worker, then health-check" for s in specs]]}
        if app.server_mode == "base":
            reporter.warn("server_mode is base: a Swoole reload in base mode closes every client "
                          "connection, and no reload can change PHP, Swoole, extensions or "
                          "$server->set() settings — use `bluegreen deploy` for those.")
        reloaded: list[dict[str, Any]] = []
        record = {"operation": "reload", "from": target.value, "to": target.value,
                  "release": release, "signal": chosen_signal}
        started = time.monotonic()
        try:
            for batch in _batches(specs, parallel):
                reporter.phase(f"reload {', '.join(s.host.name for s in batch)} "
                               f"(SIG{chosen_signal})")
                reloaded += fan_out(
                    batch, lambda s: _reload_one(session, stack, s, release, chosen_signal,
                                                 task_workers),
                    step="reload", name=lambda s: s.host.name, parallelism=len(batch))
        except BluegreenError as error:
            done = [r["host"] for r in reloaded]
            pending = [s.host.name for s in specs if s.host.name not in done]
            error.message += (f" Reloaded: {', '.join(done) or 'none'}; not reloaded: "
                              f"{', '.join(pending)}.")
            session.record({**record, "result": "failed", "hosts": done,
                            "error": {"code": error.code, "exit_code": error.exit_code,
                                      "message": error.message}})
            raise
        except KeyboardInterrupt:
            session.record({**record, "result": "interrupted",
                            "hosts": [r["host"] for r in reloaded]})
            raise
        session.record({**record, "result": "ok", "hosts": [r["host"] for r in reloaded]})
        return {"colour": target.value, "signal": chosen_signal, "hosts": reloaded,
                "seconds": round(time.monotonic() - started, 3)}


def _reload_one(session: Session, stack: AppStack, spec: InstanceSpec, release: str | None,
                signal: str, task_workers: bool) -> dict[str, Any]:
    transport = session.connections[spec.host.name]
    pid_file = _pid_file(stack, spec, release)
    where = f"{spec.host.name} ({spec.colour}:{spec.port})"
    result = transport.run(Command.script('cat -- "$1"', pid_file))
    pid_text = result.stdout.strip()
    if not result.ok or not pid_text.isdigit():
        raise ReloadFailed(f"no pid file at {pid_file}: is {spec.colour} running?",
                           where=where, hint="Check app.pid_file, or deploy the colour first.")
    master = int(pid_text)
    if not transport.run(Command("kill", "-0", str(master))).ok:
        raise ReloadFailed(
            f"stale pid file {pid_file}: no process {master} is running.",
            where=where,
            hint="The server is down; start it with `bluegreen deploy` (or `switch`) instead.")
    old = ProcessTable.parse(transport.run(PROCESS_TABLE).check("ps").stdout).workers(master)
    if not old:
        raise ReloadFailed(f"process {master} from {pid_file} has no worker processes.",
                           where=where, hint="Is app.pid_file the server's master?")
    started = time.monotonic()
    transport.run(Command("kill", "-s", signal, str(master))).check(f"send SIG{signal}")
    timeout = stack.settings.reload_timeout
    while True:
        cancel.check_cancelled()
        if not transport.run(Command("kill", "-0", str(master))).ok:
            raise ReloadFailed(
                f"the master process {master} exited during the reload: the {spec.colour} "
                f"instance on this host is down.{_log_tail(stack, transport, spec, release)}",
                where=where,
                hint=f"Fix the code, then `bluegreen deploy`; rollback to {spec.colour.other} "
                     "also works if it still runs.")
        current = ProcessTable.parse(transport.run(PROCESS_TABLE).stdout).workers(master)
        replaced = old - current
        if _reload_complete(old, current, task_workers=task_workers):
            break
        if time.monotonic() - started > timeout:
            raise ReloadFailed(
                f"after SIG{signal}, {len(old) - len(replaced)} of {len(old)} old worker(s) "
                f"were still running and {len(current - old)} new one(s) had started after "
                f"{timeout:g} s.",
                where=where,
                hint="Raise app.reload_timeout (Swoole: above max_wait_time plus boot time), "
                     "or check the app's log."
                     + _log_tail(stack, transport, spec, release))
        time.sleep(0.05)
    seconds = time.monotonic() - started
    check_instances(session.inventory, session.connections, [spec], reporter=session.reporter,
                    release_of={spec.host.name: release})
    session.reporter.step(spec.host.name, f"{len(old)} worker(s) replaced in {seconds:.2f} s "
                          f"(master {master} kept)", ok=True)
    return {"host": spec.host.name, "master": master, "old_workers": sorted(old),
            "new_workers": sorted(current), "seconds": round(seconds, 3)}


def _reload_complete(old: set[int], current: set[int], *, task_workers: bool) -> bool:
    if task_workers:  # only the task workers are replaced; which ones those are is not visible
        return bool(old - current) and len(current) >= len(old)
    return not (old & current) and len(current) >= len(old)


def _pid_file(stack: AppStack, spec: InstanceSpec, release: str | None) -> str:
    assert stack.settings.pid_file is not None
    return render_text(stack.settings.pid_file, stack.values(spec, release),
                       where="app.pid_file")


def _log_tail(stack: AppStack, transport: Any, spec: InstanceSpec, release: str | None) -> str:
    log = stack.log_tail(transport, spec, release)
    if not log:
        return ""
    return "\n    log tail:\n" + "\n".join(f"      {line}" for line in log.splitlines()[-12:])


def _resolve_colour(choice: str, state: State) -> Colour:
    if choice in ("blue", "green"):
        return Colour(choice)
    if state.live is None:
        raise UsageError("nothing is live yet, so there is no live or idle colour.",
                         where="--colour", hint="Name the colour: --colour blue.")
    return state.live if choice == "live" else state.live.other


def _batches(specs: list[InstanceSpec], size: int) -> list[list[InstanceSpec]]:
    return [specs[i:i + size] for i in range(0, len(specs), size)]
