"""`bluegreen reload`: a rolling, in-place, graceful reload of one colour's workers — Swoole's
SIGUSR1 way (gunicorn: HUP) — one host at a time by default, never leaving a broken host in
traffic.

On each host of the live colour: take it out of every balancer (a flip that gives its servers
weight 0, recorded in the state), wait for its connections to end (bounded), signal the master,
wait until every old worker is gone and as many new ones run, watch that they keep running (a
crash loop fails in about a second, not after the health check's retries), health-check the
instance, and put it back. A host that fails stays out of traffic — the state says so — and the
run stops before the next host. The idle colour, taking no traffic, is just reloaded."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from bluegreen import cancel
from bluegreen.app import AppStack, InstanceSpec, instance_specs
from bluegreen.errors import BluegreenError, InventoryError, ReloadFailed, UsageError
from bluegreen.executor import Plan, Step, enveloped, execute, recorded
from bluegreen.fanout import fan_out
from bluegreen.flip_steps import HOLD_OUT_SAYS, activation_steps
from bluegreen.instances import check_instances, verify
from bluegreen.inventory import AppSettings, Inventory
from bluegreen.model import Colour
from bluegreen.operations.deploy import upload_release
from bluegreen.operations.shared import artifact_from, refuse_during_canary
from bluegreen.output import Reporter
from bluegreen.plan import FlipPlan, build_flip_plan, check_templates
from bluegreen.processes import PROCESS_TABLE, ProcessTable
from bluegreen.release import MARKER, Artifact, validate_release_id
from bluegreen.results import DryRun, Reloaded, ReloadedHost
from bluegreen.retire import drain
from bluegreen.session import Session
from bluegreen.shell import Command
from bluegreen.state import Operation, State, actor, now
from bluegreen.transport.base import Transport
from bluegreen.waiting import poll_until

COLOUR_CHOICES = ("live", "idle", "blue", "green")
# what Swoole (6.2) logs when a worker still busy at max_wait_time is terminated: the manager
# killing it mid-request, or the worker giving up on its own event loop — one event may log both
_FORCED_EXITS = (re.compile(r"force kill worker process"),
                 re.compile(r"worker exit timeout, forced termination"))


@dataclass
class ReloadRun:
    """What a reload fixed before it started, and how far it got."""

    target: Colour
    release: str | None
    signal: str
    task_workers: bool
    pattern: str | None
    batches: list[list[InstanceSpec]]
    rotate: bool  # take each batch out of traffic while it reloads
    new_release: str | None = None  # the release each host's pointer moves to before its signal
    reloaded: list[ReloadedHost] = field(default_factory=list)
    masters: dict[str, int] = field(default_factory=dict)  # each host's master, checked first

    @property
    def loads(self) -> str | None:
        """The release the reloaded workers run."""
        return self.new_release or self.release

    @property
    def hosts(self) -> list[str]:
        return [spec.host.name for batch in self.batches for spec in batch]


def reload_workers(inventory: Inventory, reporter: Reporter, *, colour: str,
                   signal: str | None, parallel: int, task_workers: bool, lock_wait: float,
                   dry_run: bool, source: str | None = None, release: str | None = None
                   ) -> Reloaded | DryRun:
    """Reload `colour`'s workers; with `source` (uploaded as a new release) or `release` (one
    already on the hosts), each host's pointer moves to that release first, so the reloaded
    workers load it — no release directory is ever changed in place."""
    app = _require_reloadable(inventory)
    artifact = artifact_from(inventory, source=source, release=release) if source else None
    new_release = artifact.release if artifact else (
        validate_release_id(release) if release is not None else None)
    chosen_signal = (signal or (app.task_reload_signal if task_workers else app.reload_signal)
                     ).upper().removeprefix("SIG")
    if not re.fullmatch(r"[A-Z0-9+-]+", chosen_signal):
        raise UsageError(f"{chosen_signal!r} is not a signal name.", where="--signal",
                         hint="Use a name such as HUP, USR1 or USR2.")
    check_templates(inventory)
    with Session(inventory, reporter, command=f"reload {colour}", lock=not dry_run,
                 lock_wait=lock_wait, busy_app_hosts=True) as session:
        state, _ = session.agreed_state()
        # its hold-outs flip without the canary's weights
        refuse_during_canary(state, f"reload {colour}")
        target = _resolve_colour(colour, state)
        held_out = state.colour(target).out
        # hosts a failed reload left out go first: putting them back comes before taking
        # another out
        specs = sorted(instance_specs(inventory, target),
                       key=lambda spec: spec.host.name not in held_out)
        rotate = target is state.live and len(specs) > 1
        size = max(1, min(parallel, len(specs) - 1)) if rotate else parallel
        run = ReloadRun(target=target, release=state.colour(target).release,
                        signal=chosen_signal, task_workers=task_workers,
                        pattern=app.task_worker_pattern if task_workers else app.worker_pattern,
                        batches=[specs[i:i + size] for i in range(0, len(specs), size)],
                        rotate=rotate)
        if new_release and (new_release != run.release
                            or state.colour(target).status != "running"):
            run.new_release = new_release  # (again: a failed reload left pointers mixed)
        drain_timeout = inventory.balancer.drain_timeout if inventory.balancer else 0.0
        record: dict[str, Any] = {"operation": "reload", "from": target.value,
                                  "to": target.value, "release": run.loads,
                                  "signal": chosen_signal, "hosts": []}
        progress = _Reloading(state)
        steps = _reload_steps(session, progress, run, AppStack(inventory, app), record,
                              artifact=artifact, drain_timeout=drain_timeout)
        if dry_run:
            return DryRun(plan=enveloped(session, steps, pre="pre_reload",
                                         post=("post_reload",)).describe())
        if app.server_mode == "base":
            reporter.warn("server_mode is base: a Swoole reload in base mode closes every client "
                          "connection, and no reload can change PHP, Swoole, extensions or "
                          "$server->set() settings — use `bluegreen deploy` for those.")
        if target is state.live and not rotate:
            reporter.warn(f"{target} has a single instance, so it stays in traffic while it "
                          "reloads: a reload of broken code reaches clients.")
        elif rotate and size < parallel:
            reporter.warn(f"--parallel {parallel} would take every {target} instance out of "
                          f"traffic: reloading {size} at a time.")
        if run.new_release:
            record["replaced"] = run.release

        def body() -> Reloaded:
            started = time.monotonic()
            try:
                execute(steps)
            except (BluegreenError, KeyboardInterrupt) as error:
                if progress.reloading:  # from the checks to the last host back in traffic
                    if session.changing is None:  # else the envelope records it failed
                        progress.state = _end_operation(session, progress.state)
                    if isinstance(error, BluegreenError):
                        _explain(error, run, progress.state)
                raise
            final = progress.state
            return Reloaded(colour=target.value, signal=chosen_signal, release=run.loads,
                            replaced=run.release if run.new_release else None,
                            hosts=run.reloaded, generation=final.generation,
                            out=list(final.colour(target).out),
                            seconds=round(time.monotonic() - started, 3))

        return recorded(session, record, body, pre="pre_reload", post="post_reload",
                        last=True)


@dataclass
class _Reloading:
    state: State  # as last read or written
    reloading: bool = False  # between the masters' check and the last host back in traffic


def _reload_steps(session: Session, progress: _Reloading, run: ReloadRun, stack: AppStack,
                  record: dict[str, Any], *, artifact: Artifact | None, drain_timeout: float
                  ) -> Plan:
    reporter, inventory = session.reporter, session.inventory
    target = run.target
    specs = [spec for batch in run.batches for spec in batch]
    kind = "task workers" if run.task_workers else "workers"

    def preflight() -> None:
        progress.reloading = True
        reporter.phase(f"check {len(specs)} {target} master(s) before reloading")
        run.masters = dict(zip(run.hosts, fan_out(
            specs, lambda s: _preflight(session, stack, s, run), step="reload",
            name=lambda s: s.host.name, parallelism=inventory.ssh.parallelism), strict=True))

    def write_ahead() -> None:
        assert run.new_release is not None
        progress.state = session.begin_change(
            progress.state, target, status="starting", release=run.new_release,
            step=f"reload {target} onto release {run.new_release}, host by host")

    def hold_out_steps(names: list[str], *, back: bool) -> list[Step]:
        """Take the hosts out of traffic (or put them back): a flip of the same colour with
        other servers held out, recorded with the reload as the operation in progress."""
        hosts = ", ".join(names)

        def plan() -> FlipPlan:
            cancel.check_cancelled()
            state = progress.state
            held = set(state.colour(target).out)
            out = tuple(sorted(held - set(names) if back else held | set(names)))
            if not back and len(out) >= len(specs):
                raise ReloadFailed(
                    f"taking {hosts} out of traffic would leave no {target} instance in it "
                    f"({', '.join(state.colour(target).out)} already out).", where=hosts,
                    hint="Reload the hosts that are out first (`bluegreen status` shows "
                         "them), or deploy a fixed release to the other colour.")
            reporter.phase(f"put {hosts} back into traffic" if back
                           else f"take {hosts} out of traffic")
            return build_flip_plan(inventory, state=state, target=target, current={}, out=out)

        def record(plan: FlipPlan) -> None:
            progress.state = _record_held_out(session, progress.state, plan,
                                              step=None if back else f"reload {hosts}")

        return activation_steps(
            session, plan,
            says=(f"put {hosts} back into traffic" if back else f"take {hosts} out of traffic")
            + f" on {len(inventory.hosts.balancer)} balancer(s): " + HOLD_OUT_SAYS,
            records=f"record {hosts} " + ("back in traffic" if back else "out of traffic")
                    + " in the state on every balancer (undone if it cannot be written)",
            record=record)

    def reload_batch(batch: list[InstanceSpec]) -> None:
        cancel.check_cancelled()
        reporter.phase(f"reload {', '.join(s.host.name for s in batch)} (SIG{run.signal})")
        run.reloaded += fan_out(batch, lambda s: _reload_one(session, stack, s, run,
                                                             run.masters[s.host.name]),
                                step="reload", name=lambda s: s.host.name,
                                parallelism=len(batch))
        record["hosts"] = [r.host for r in run.reloaded]

    def verify_public() -> None:
        assert run.new_release is not None
        progress.reloading = False
        try:  # what the public URL serves now is the new release
            verify(inventory, release=run.new_release, colour=target.value, reporter=reporter)
        except BluegreenError as error:
            error.hint = (f"Every host was reloaded onto {run.new_release} and passed its "
                          "health check, but the public URL does not show it: does the app "
                          "load its code through the colour's pointer (not a path resolved "
                          "when the server started)? `bluegreen reload --release "
                          f"{run.release}` goes back.")
            raise

    def finish() -> None:
        progress.reloading = False
        state = progress.state
        if run.new_release:
            progress.state = session.finish_change(state.with_colour(
                target, status="running", release=run.new_release, since=now(), replaced=None,
                error=None))
        elif state.operation is not None:
            progress.state = _end_operation(session, state)

    steps: list[Step] = []
    if artifact is not None and run.new_release:
        steps.append(Step(f"on every {target} host, in parallel: upload release "
                          f"{run.new_release} unless present (checksum verified)",
                          lambda: upload_release(session, stack, specs, artifact)))
    steps.append(Step(f"check every {target} master (its pid file, that it may be signalled) "
                      "before any host leaves traffic", preflight))
    if run.new_release:
        steps.append(Step(f"record {target} as starting {run.new_release} on every balancer "
                          "(written ahead)", write_ahead))
    for number, batch in enumerate(run.batches, 1):
        names = [s.host.name for s in batch]
        if run.rotate:
            steps += hold_out_steps(names, back=False)
            steps.append(Step(f"wait up to {drain_timeout:g} s for the connections of "
                              f"{', '.join(names)} to end",
                              partial(_wait_for_connections, session, stack, batch,
                                      drain_timeout)))
        details: list[str] = []
        for spec in batch:
            if run.new_release:
                details.append(f"{spec.host.name}: point {target} at "
                               f"releases/{run.new_release}")
            signal = stack.signal_command(spec, run.release, signal=run.signal, pid="MASTER")
            details.append(f"{spec.host.name}: MASTER from {stack.pid_file(spec, run.release)}"
                           f"; {signal.argv[-1]}")
        steps.append(Step(
            f"batch {number}: signal {', '.join(names)}; then every old worker replaced, the "
            f"new ones still running after {stack.settings.reload_settle:g} s, and a health "
            "check; a failure stops here" + (", leaving the host out of traffic"
                                             if run.rotate else ""),
            partial(reload_batch, batch), details=tuple(details)))
        if run.rotate:
            steps += hold_out_steps(names, back=True)
    if run.new_release and target is progress.state.live:
        steps.append(Step(f"verify through the public URL(s) that {run.new_release} is served",
                          verify_public))
    steps.append(Step("record the reload in the state"
                      + (f": {target} runs {run.new_release}" if run.new_release else ""),
                      finish, commits=True))
    return Plan(f"reload {target}'s {kind} in place with SIG{run.signal}"
                + (f" onto release {run.new_release} (replacing {run.release})"
                   if run.new_release else "")
                + f", {len(run.batches[0]) if run.batches else 0} host(s) at a time; stop at "
                  "the first failure, leaving that host out of traffic", tuple(steps))


def _record_held_out(session: Session, state: State, plan: FlipPlan, *, step: str | None
                     ) -> State:
    """The state after `plan` held its hosts out of traffic, written — with the reload as the
    operation in progress while `step` says what it does."""
    target, out = plan.target, plan.out
    changed = state.after_flip(target, release=state.colour(target).release,
                               actor=actor(), managed=plan.configs, out=out)
    changed = replace(changed, operation=state.operation, colours={
        **changed.colours, target.value: replace(state.colour(target), out=out)})
    if step and state.operation is None:
        changed = replace(changed, operation=Operation(
            command=session.command, by=actor(), started=session.started_at, step=step))
    elif not step and session.changing is None:
        changed = replace(changed, operation=None)
    try:
        written = session.write_state(changed)
    except BluegreenError as error:
        error.message = ("the balancers could not be recorded holding "
                         f"{', '.join(out) or 'no host'} out of traffic, so that change was "
                         "undone: " + error.message)
        raise
    session.held_out = out
    return written


def _end_operation(session: Session, state: State) -> State:
    """Clear the reload from the state's operation in progress, best effort."""
    if state.operation is None:
        return state
    with cancel.deferred_interrupts(then_raise=False):
        try:
            return session.write_state(replace(state, operation=None))
        except BluegreenError as error:
            session.reporter.warn(f"could not clear the reload from the state: "
                                  f"{error.paragraph()}")
            return state


def _wait_for_connections(session: Session, stack: AppStack, batch: list[InstanceSpec],
                          timeout: float) -> None:
    """Out of traffic, the instances' connections end as their requests finish (bounded): what
    is still open then is left to the server's graceful reload."""
    def wait(spec: InstanceSpec) -> None:
        count = drain(stack, session.connections[spec.host.name], spec, None, timeout=timeout,
                      report=lambda line: None, ask=False)
        if count:
            session.reporter.step(spec.host.name, f"{count} connection(s) still open after "
                                  f"{timeout:g} s; the graceful reload lets them finish")

    fan_out(batch, wait, step="drain", name=lambda s: s.host.name, parallelism=len(batch))


def _preflight(session: Session, stack: AppStack, spec: InstanceSpec, run: ReloadRun) -> int:
    """Before any host leaves traffic: the master's pid from its pid file, running, with
    workers, and the deploy user allowed to signal it (signal 0 through app.signal)."""
    transport = session.connections[spec.host.name]
    where = f"{spec.host.name} ({spec.colour}:{spec.port})"
    pid_file = stack.pid_file(spec, run.release)
    master = stack.read_pid(transport, spec, run.release)
    if master is None:
        raise ReloadFailed(f"no pid file at {pid_file}: is {spec.colour} running?",
                           where=where, hint="Check app.pid_file, or deploy the colour first.")
    table = _processes(transport)
    if not table.alive(master):
        raise ReloadFailed(
            f"stale pid file {pid_file}: no process {master} is running.", where=where,
            hint="The server is down; start it with `bluegreen deploy` (or `switch`) instead.")
    if not table.children(master):
        raise ReloadFailed(
            f"process {master} from {pid_file} has no child processes: the server runs but "
            "cannot serve (a Swoole manager that died takes every worker with it).",
            where=where, hint=f"Restart {spec.colour}: `bluegreen deploy` it (or stop it and "
                              "`rollback --restart`); `bluegreen status` shows its health.")
    if not table.workers(master, run.pattern):
        raise ReloadFailed(
            f"process {master} from {pid_file} has no "
            + (f"process matching {run.pattern!r}." if run.pattern else "worker processes."),
            where=where, hint="Is app.pid_file the server's master"
            + (" and does app.worker_pattern match its workers' names?" if run.pattern
               else "?"))
    _signal(stack, transport, spec, run, master, "0", where)
    if run.new_release:
        marker = f"{stack.layout(spec.host).release_dir(run.new_release)}/{MARKER}"
        if not transport.run(Command("test", "-f", marker)).ok:
            raise ReloadFailed(f"release {run.new_release} is not on this host.", where=where,
                               hint="Pass --source DIR to upload it, or name a release the "
                                    "hosts keep (`bluegreen status` shows the pointers).")
    return master


def _signal(stack: AppStack, transport: Transport, spec: InstanceSpec, run: ReloadRun,
            master: int, signal: str, where: str) -> None:
    sent = transport.run(stack.signal_command(spec, run.release, signal=signal, pid=master))
    if not sent.ok:
        what = "signal" if signal == "0" else f"send SIG{signal} to"
        raise ReloadFailed(
            f"cannot {what} the master {master} (`{sent.command}` exited {sent.exit_status}): "
            f"{sent.tail() or 'no output'}",
            where=where,
            hint="When the server runs as another user than the deploy user, set app.signal to "
                 "a command allowed by sudo, e.g. `sudo -n -u shop kill -s {{ signal }} "
                 "{{ pid }}`; `bluegreen check` tests it.")


def _reload_one(session: Session, stack: AppStack, spec: InstanceSpec, run: ReloadRun,
                master: int) -> ReloadedHost:
    transport = session.connections[spec.host.name]
    where = f"{spec.host.name} ({spec.colour}:{spec.port})"
    table = _processes(transport)
    old = table.workers(master, run.pattern)
    if not table.alive(master) or not old:
        raise ReloadFailed(f"the master process {master} or its workers exited before the "
                           "reload.", where=where,
                           hint="Check the app's log; `bluegreen status` shows what runs.")
    if run.new_release:
        stack.layout(spec.host).point(transport, spec.colour, run.new_release)
    forced_before = _forced_exits(stack, transport, spec, run.loads)
    started = time.monotonic()
    _signal(stack, transport, spec, run, master, run.signal, where)
    current = _replaced(stack, transport, spec, run, master, old, started, where)
    churned = _settle(stack, transport, master, run, current, started)
    if churned:
        raise ReloadFailed(
            f"the new workers keep dying: {churned} worker process(es) exited and were "
            f"restarted within {stack.settings.reload_settle:g} s after SIG{run.signal} — a "
            "crash loop (a parse error or an exception at worker start?)."
            + _log_tail(stack, transport, spec, run.loads), where=where)
    seconds = time.monotonic() - started
    check_instances(session.inventory, session.connections, [spec], reporter=session.reporter,
                    release_of={spec.host.name: run.loads}, quick=True)
    replaced = current if not (run.task_workers and not run.pattern) else old - current
    forced = _forced_exits(stack, transport, spec, run.loads) - forced_before
    if forced > 0:
        session.reporter.warn(
            f"{spec.host.name}: {forced} worker(s) were still busy at Swoole's max_wait_time and "
            "were terminated, cutting the requests they served (the log says \"worker exit "
            "timeout, forced termination\"). Raise max_wait_time above the slowest request.")
    kind = "task worker(s)" if run.task_workers else "worker(s)"
    session.reporter.step(spec.host.name, f"{len(replaced)} {kind} replaced in {seconds:.2f} s "
                          f"(master {master} kept)", ok=True)
    return ReloadedHost(host=spec.host.name, master=master, replaced=len(replaced),
                        old_workers=sorted(old), new_workers=sorted(current - old),
                        forced_exits=max(forced, 0), seconds=round(seconds, 3))


def _replaced(stack: AppStack, transport: Transport, spec: InstanceSpec, run: ReloadRun,
              master: int, old: set[int], started: float, where: str) -> set[int]:
    """Wait until the reload replaced the old workers; their set then."""
    timeout = stack.settings.reload_timeout
    partial = run.task_workers and not run.pattern

    def workers() -> set[int]:
        table = _processes(transport)
        if not table.alive(master):
            raise ReloadFailed(
                f"the master process {master} exited during the reload: the {spec.colour} "
                f"instance on this host is down.{_log_tail(stack, transport, spec, run.loads)}",
                where=where,
                hint=f"Fix the code, then `bluegreen deploy`; rollback to {spec.colour.other} "
                     "also works if it still runs.")
        return table.workers(master, run.pattern)

    current = poll_until(workers, lambda found: reload_complete(old, found, partial=partial),
                         timeout=max(0.0, started + timeout - time.monotonic()), interval=0.05)
    if reload_complete(old, current, partial=partial):
        return current
    replaced = old - current
    raise ReloadFailed(
        f"after SIG{run.signal}, {len(old) - len(replaced)} of {len(old)} old worker(s) "
        f"were still running and {len(current - old)} new one(s) had started after "
        f"{timeout:g} s.",
        where=where,
        hint="Raise app.reload_timeout (Swoole: above max_wait_time plus boot time); a "
             "process no reload replaces (a Swoole user process) must not match "
             "app.worker_pattern." + _log_tail(stack, transport, spec, run.loads))


def reload_complete(old: set[int], current: set[int], *, partial: bool) -> bool:
    """Every old worker gone and as many running — or, when only some of the processes are
    replaced and which cannot be told (task workers, no pattern), some gone and as many
    running."""
    if partial:
        return bool(old - current) and len(current) >= len(old)
    return not (old & current) and len(current) >= len(old)


def _settle(stack: AppStack, transport: Transport, master: int, run: ReloadRun,
            current: set[int], started: float) -> int:
    """Watch the new workers until they all live through `app.reload_settle` seconds; 0 then.
    As many deaths as there are workers within one such window is a crash loop (every new
    worker dies at start): their count. Fewer — a worker of the old code dying late, e.g. after
    a crash loop this reload repairs — starts the window again, until `app.reload_timeout`."""
    settings = stack.settings

    def sample() -> set[int]:
        table = _processes(transport)
        return table.workers(master, run.pattern) if table.alive(master) else set()

    while True:
        samples = [current, *_window(sample, settings.reload_settle)]
        died = churn(samples)
        if died == 0:
            return 0
        if died >= max(1, len(current)) or (
                time.monotonic() - started > settings.reload_timeout):
            return died
        current = samples[-1]


def _window(sample: Callable[[], set[int]], seconds: float) -> list[set[int]]:
    """A sample every 0.1 s for `seconds` (the whole window: no sample ends it early)."""
    samples: list[set[int]] = []

    def take() -> None:
        samples.append(sample())

    poll_until(take, lambda _: False, timeout=seconds, interval=0.1)
    return samples


def churn(samples: list[set[int]]) -> int:
    """How many processes seen in successive samples of a worker set are gone by the last."""
    seen: set[int] = set()
    gone: set[int] = set()
    for sample in samples:
        gone |= seen - sample
        seen |= sample
    return len(gone)


def _processes(transport: Transport) -> ProcessTable:
    return ProcessTable.parse(transport.run(PROCESS_TABLE).check("ps").stdout)


def _forced_exits(stack: AppStack, transport: Transport, spec: InstanceSpec,
                  release: str | None) -> int:
    log = stack.log_tail(transport, spec, release)
    return max(len(pattern.findall(log)) for pattern in _FORCED_EXITS)


def _explain(error: BluegreenError, run: ReloadRun, state: State) -> None:
    """Say what the failed reload left: which hosts run the new workers, which are out of
    traffic, which were not touched — and how to recover."""
    done = [r.host for r in run.reloaded]
    out = list(state.colour(run.target).out)
    pending = [h for h in run.hosts if h not in done and h not in out]
    error.message += (f" Reloaded: {', '.join(done) or 'none'}; out of traffic: "
                      f"{', '.join(out) or 'none'}; not reloaded: {', '.join(pending) or 'none'}.")
    if out:
        error.hint = (f"{', '.join(out)} stay out of every balancer until a reload passes there: "
                      "fix the code, then run `bluegreen reload` again — or `bluegreen deploy` "
                      f"a fixed release to {run.target.other}. `bluegreen status` shows it.")


def _log_tail(stack: AppStack, transport: Transport, spec: InstanceSpec,
              release: str | None) -> str:
    log = stack.log_tail(transport, spec, release)
    if not log:
        return ""
    return "\n    log tail:\n" + "\n".join(f"      {line}" for line in log.splitlines()[-12:])


def _require_reloadable(inventory: Inventory) -> AppSettings:
    app = inventory.app
    if app is None or not app.pid_file:
        raise InventoryError("reload needs app.pid_file (the master's pid file).",
                             where=f"{inventory.path}: app.pid_file",
                             hint="For example '{{ app_root }}/{{ colour }}.pid'.")
    return app


def _resolve_colour(choice: str, state: State) -> Colour:
    if choice in ("blue", "green"):
        return Colour(choice)
    if state.live is None:
        raise UsageError("nothing is live yet, so there is no live or idle colour.",
                         where="--colour", hint="Name the colour: --colour blue.")
    return state.live if choice == "live" else state.live.other

