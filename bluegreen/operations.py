"""The operations that move traffic — deploy, switch, rollback — executed step by step from their
pure plans, inside a session (connections + lock), always ending in a history record."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bluegreen import cancel
from bluegreen.app import AppStack, InstanceSpec, instance_specs
from bluegreen.balancer.base import BalancerTraffic
from bluegreen.canary_analysis import Verdict, baseline_of, judge
from bluegreen.errors import (
    BluegreenError,
    CanaryAborted,
    CanaryHeld,
    CanaryInProgress,
    CanaryNotJudged,
    FanOutError,
    HealthCheckFailed,
    InventoryError,
    NoCanary,
    RemoteCommandFailed,
    RollbackImpossible,
    StartFailed,
    UsageError,
)
from bluegreen.executor import (
    Plan,
    Step,
    enveloped,
    execute,
    hook_steps,
    recorded,
    run_hooks_after,
)
from bluegreen.fanout import fan_out
from bluegreen.flip_steps import FLIP_SAYS, activation_steps
from bluegreen.instances import check_instances, verify
from bluegreen.inventory import Inventory
from bluegreen.model import Colour
from bluegreen.output import Reporter
from bluegreen.plan import (
    DeployPlan,
    FlipPlan,
    InstanceSteps,
    build_deploy_plan,
    build_flip_plan,
    check_templates,
)
from bluegreen.prometheus import canary_metrics
from bluegreen.release import Artifact, package, validate_release_id
from bluegreen.render import render_text
from bluegreen.results import (
    CanaryView,
    DryRun,
    EndedElsewhere,
    Moved,
    RetiredView,
    RetireResult,
    amended,
    colours_of,
    fields_of,
)
from bluegreen.retire import Retired, Retiring, drain, retire_steps
from bluegreen.session import Session
from bluegreen.state import Canary, State, actor, now, sha256_text


@dataclass(frozen=True)
class Options:
    dry_run: bool = False
    lock_wait: float = 0.0
    retire_after: float | None = None  # deploy: retire the old colour after this drain timeout
    drain: bool = True  # deploy: drain the idle colour's connections before stopping it
    # deploy: give the new release this share of traffic, then (promote) each next one
    canary: tuple[int, ...] | None = None
    full: bool = False  # canary promote: all traffic now, skipping the remaining steps
    skip_analysis: bool = False  # canary promote: without judging the canary first
    # canary promote: only the canary with this (colour, release, since), else NoCanary
    expect_canary: tuple[str, str | None, str] | None = None
    # canary promote, stepping: only from this weight (another process may have moved it)
    expect_weight: int | None = None
    step_pause: float | None = None  # deploy: every canary step lasts this long (--step-pause)
    no_canary: bool = False  # deploy: straight to all the traffic despite canary.steps
    canary_pauses: tuple[float | None, ...] = ()  # each step's pause (None: manual)
    canary_from_inventory: bool = False  # canary.steps: a first deploy goes straight live


def canary_steps(text: str) -> tuple[int, ...]:
    """`--canary 5,25,50`: the canary's weights, each a percentage from 1 to 99, rising."""
    try:
        steps = tuple(int(part) for part in text.split(","))
    except ValueError:
        steps = ()
    if not steps or any(not 1 <= step <= 99 for step in steps) or any(
            later <= earlier for earlier, later in itertools.pairwise(steps)):
        raise UsageError(f"{text!r} is not a list of rising percentages from 1 to 99.",
                         where="--canary", hint="E.g. --canary 10, or --canary 5,25,50.")
    return steps


def canary_schedule(inventory: Inventory, options: Options
                    ) -> tuple[tuple[int, ...], tuple[float | None, ...]] | None:
    """A deploy's canary steps and their pauses: `--canary` (each step lasting `--step-pause`,
    or until `canary promote`), else the inventory's `canary.steps` (their pauses, unless
    `--step-pause`), else none — and none with `--no-canary`."""
    if options.no_canary:
        if options.canary is not None or options.step_pause is not None:
            raise UsageError("--no-canary deploys straight to all the traffic; it does not go "
                             "with --canary or --step-pause.", where="--no-canary")
        return None
    if options.canary is not None:
        return options.canary, (options.step_pause,) * len(options.canary)
    if inventory.canary.steps:
        steps = inventory.canary.steps
        return (tuple(step.weight for step in steps),
                tuple(options.step_pause if options.step_pause is not None
                      else step.pause_seconds for step in steps))
    if options.step_pause is not None:
        raise UsageError("--step-pause steps a canary: give --canary too, or set canary.steps "
                         "in the inventory.", where="--step-pause",
                         hint="E.g. --canary 10,50 --step-pause 5m.")
    return None


def deploy(inventory: Inventory, reporter: Reporter, *, source: str | None, release: str | None,
           to: Colour | None, options: Options, sha256: str | None = None
           ) -> Moved | DryRun | EndedElsewhere:
    schedule = canary_schedule(inventory, options)
    options = replace(options, canary=schedule[0] if schedule else None,
                      canary_pauses=schedule[1] if schedule else (),
                      canary_from_inventory=bool(schedule) and options.canary is None)
    result = _deploy_once(inventory, reporter, source=source, release=release, to=to,
                          options=options, sha256=sha256)
    if not isinstance(result, Moved) or not result.canary:
        return result
    return _step_through(inventory, reporter, options, result)


def _step_through(inventory: Inventory, reporter: Reporter, options: Options,
                  started: Moved) -> Moved | EndedElsewhere:
    """A canary's timed steps: after each step's pause, `canary promote` — its analysis, then
    the next step, and after the last step all the traffic — until the canary is live, aborted,
    or at a step that waits for a manual `canary promote`. Between steps no lock is held and
    the state records the canary, so `canary abort` or `promote` from another terminal (or a
    killed bluegreen) leaves nothing half-done; a canary ended meanwhile ends the stepping."""
    result = started
    canary = started.canary
    assert canary
    # each step is judged: a --skip-analysis given for the step this started from is not
    # carried over to the steps after it
    ours = replace(options, full=False, skip_analysis=False,
                   expect_canary=(canary.colour, canary.release, canary.since))
    waited_unjudged = 0
    while result.canary and result.canary.pause is not None:
        weight, pause = result.canary.weight, result.canary.pause
        reporter.phase(f"canary at {weight}%: pause {pause:g} s before the next step")
        cancel.sleep(pause)
        try:
            # another terminal may hold the lock for a moment (its own promote or abort)
            promoted = _promote_once(inventory, reporter, options=replace(
                ours, lock_wait=max(options.lock_wait, pause), expect_weight=weight))
        except _PausedElsewhere as paused:
            reporter.warn(f"the canary was paused by {paused.canary.paused_by}: stepping "
                          "stops here; `bluegreen canary resume` continues it")
            return amended(result, canary=paused.canary, paused=True)
        except _MovedElsewhere as moved:
            # someone else took a step meanwhile: the step it reached lasts its whole pause
            reporter.warn(f"another operation moved the canary to {moved.canary.weight}% "
                          "meanwhile: that step gets its own pause")
            result = amended(result, canary=moved.canary)
            waited_unjudged = 0
            continue
        except CanaryHeld as held:
            reporter.warn(f"{held.message} One more pause, then it is judged again.")
            waited_unjudged = 0
            continue
        except CanaryNotJudged as error:
            waited_unjudged += 1
            if not error.waiting_helps or waited_unjudged > _UNJUDGED_PAUSES:
                raise
            reporter.warn(f"{error.message} One more pause.")
            continue
        except NoCanary:
            reporter.warn("the canary was ended by another operation (see `bluegreen "
                          "history`): stepping stops")
            return EndedElsewhere(release=canary.release)
        assert isinstance(promoted, Moved)  # only a dry run plans, and it does not step
        result = promoted
        waited_unjudged = 0
    return result


_UNJUDGED_PAUSES = 3  # pauses a stepping canary waits for enough traffic to be judged


class _MovedElsewhere(Exception):
    """A stepping canary found at another weight than the one it waited on."""

    def __init__(self, canary: CanaryView):
        super().__init__(canary.weight)
        self.canary = canary


class _PausedElsewhere(_MovedElsewhere):
    """A stepping canary found paused by `canary pause`."""


def _deploy_once(inventory: Inventory, reporter: Reporter, *, source: str | None,
                 release: str | None, to: Colour | None, options: Options,
                 sha256: str | None) -> Moved | DryRun:
    app = _require_app(inventory)
    artifact = artifact_from(inventory, source=source, release=release, sha256=sha256)
    check_templates(inventory)
    with Session(inventory, reporter, command=f"deploy {artifact.release}",
                 lock=not options.dry_run, lock_wait=options.lock_wait) as session:
        state, current = session.agreed_state()
        refuse_during_canary(state, "deploy")
        target = to or (state.live.other if state.live else Colour.BLUE)
        if options.canary_from_inventory and state.live is None:
            reporter.warn("nothing is live yet, so this first deploy takes all the traffic; "
                          "canary.steps apply from the next one")
            options = replace(options, canary=None, canary_pauses=())
        if options.canary is not None:
            _require_weights(session, state,
                             where="canary.steps" if options.canary_from_inventory
                             else "--canary")
            if inventory.canary.counted and not session.traffic():
                raise InventoryError(
                    "the canary's analysis (canary.max_error_rate, canary.max_latency_ratio) "
                    "reads per-server counters, and none of the balancers keeps them.",
                    where=f"{inventory.path}: canary",
                    hint="It needs HAProxy with balancer.admin_socket, or nginx writing "
                         "balancer.access_log; remove the thresholds to run the canary "
                         "without analysis.")
        if target is state.live:
            raise UsageError(
                f"{target} is live; deploy never touches the live colour.",
                where="--to",
                hint=f"Deploy to {target.other} (the default), then flip with it.",
            )
        plan = build_deploy_plan(inventory, state=state, release=artifact.release, target=target,
                                 current=current)
        record = {"operation": "deploy", "from": _name(state.live), "to": target.value,
                  "release": artifact.release}
        progress = _Progress(state, release=artifact.release)
        steps = _deploy_steps(session, progress, plan, artifact, AppStack(inventory, app),
                              retire_after=options.retire_after,
                              drain_idle=options.drain and inventory.deploy.drain,
                              record=record, canary=options.canary,
                              pauses=options.canary_pauses)
        if options.dry_run:
            return _dry_run(enveloped(session, steps, pre="pre_deploy",
                                      post=("post_deploy",)).describe())

        def run() -> Moved:
            execute(steps)
            summary = amended(
                _summary(progress.state, progress.flip, release=artifact.release),
                out_of_traffic=list(progress.unhealthy))
            if progress.canary is not None:
                canary = progress.state.canary
                return amended(summary, previous=None,  # the live colour keeps its share
                                       canary=CanaryView.of(canary) if canary else None)
            summary = amended(summary, idle_connections_cut=sum(progress.cut.values()))
            if progress.retire_ran:
                summary = amended(summary, retired=RetiredView.of(progress.retired)
                                          if progress.retired else None)
            return summary

        return recorded(session, record, run, pre="pre_deploy", post="post_deploy")


@dataclass
class _Progress:
    """What an operation's steps learned and changed so far, for the steps after them."""

    state: State  # as last read or written
    release: str | None = None  # the release the flip serves
    flip: FlipPlan | None = None  # the flip as it runs (the plan's, or one that leaves some out)
    unhealthy: tuple[str, ...] = ()  # hosts kept out of traffic (deploy.max_unhealthy)
    cut: dict[str, int] = field(default_factory=dict)  # connections each stop cut
    canary: Canary | None = None  # the canary a canary flip records
    retire_ran: bool = False  # deploy --retire-after: the idle colour's retire was tried
    retired: Retired | None = None  # what it stopped (None: nothing was running)


def _deploy_steps(session: Session, progress: _Progress, plan: DeployPlan, artifact: Artifact,
                  stack: AppStack, *, retire_after: float | None, drain_idle: bool,
                  record: dict[str, Any], canary: tuple[int, ...] | None = None,
                  pauses: tuple[float | None, ...] = ()) -> Plan:
    inventory, reporter = session.inventory, session.reporter
    target, release = plan.target, artifact.release
    specs = [steps.spec for steps in plan.instances]
    batches = plan.batches
    progress.flip = plan.flip

    def write_ahead() -> None:
        # nothing ran on the target colour until here; from here on it changes: say so first
        progress.state = session.begin_change(progress.state, target, status="starting",
                                              release=release,
                                              step=f"start {target} with release {release}")
        reporter.phase(f"start {target} with release {release} on {len(specs)} app host(s)"
                       + (f", {len(batches)} batches" if len(batches) > 1 else ""))
        if len(batches) > 1:
            record["batches"] = [[steps.spec.host.name for steps in b] for b in batches]

    def stand_up(steps: InstanceSteps) -> None:  # the commands the plan shows are what runs
        spec = steps.spec
        transport = session.connections[spec.host.name]
        cancel.check_cancelled()
        replaced = progress.state.colour(target).replaced
        with _start_failures(spec):
            idle = stack.facts(transport, spec)  # runs? connections? in one round trip
            progress.cut[spec.host.name] = _drain_before_stop(
                session, stack, spec, replaced, ask=drain_idle, open_now=idle.connections)
            # a drain may have ended the instance itself: then ask again before stopping it
            stack.stop(transport, spec, replaced, command=steps.stop,
                       running=idle.running if not idle.connections else None)
            stack.point_and_start(transport, spec, release, command=steps.start)
        reporter.step(spec.host.name, f"{target} started on port {spec.port}", ok=True)

    def batch_steps(number: int, batch: tuple[InstanceSteps, ...]) -> list[Step]:
        hosts = ", ".join(steps.spec.host.name for steps in batch)
        label = f" — batch {number} of {len(batches)}: {hosts}" if len(batches) > 1 else ""

        def start() -> None:
            if label:
                reporter.phase(f"start {target} with release {release}{label}")
            fan_out(batch, stand_up, step="start", name=lambda s: s.spec.host.name,
                    parallelism=inventory.ssh.parallelism)

        def check() -> None:
            reporter.phase(f"health-check {len(batch)} {target} instance(s){label}")
            try:
                progress.unhealthy += _unhealthy_within_limit(
                    session, [steps.spec for steps in batch], release=release,
                    total=len(specs), already=progress.unhealthy)
            except BluegreenError as error:
                if number < len(batches):
                    error.message += (
                        f" Batch {len(batches)} was not started (deploy.batch)."
                        if number + 1 == len(batches) else
                        f" Batches {number + 1} to {len(batches)} were not started "
                        "(deploy.batch).")
                raise

        where = (f"batch {number}: on {hosts}" if len(batches) > 1
                 else "on every app host") + ", in parallel"
        return [
            Step(f"{where}: stop {target} if running (draining its connections first), "
                 f"point it at releases/{release}, start it", start,
                 details=tuple(line for steps in batch for line in (
                     f"{steps.spec.host.name}: stop: {steps.stop}",
                     f"{steps.spec.host.name}: start: {steps.start}"))),
            Step(f"health-check {len(batch)} {target} instance(s)"
                 + (f"; up to {plan.max_unhealthy} of {len(specs)} may fail and stay out of "
                    "traffic" if plan.max_unhealthy else "; any failure stops the deploy"),
                 check),
        ]

    def leave_out_unhealthy() -> None:
        if progress.unhealthy:
            record["out_of_traffic"] = list(progress.unhealthy)
            progress.flip = build_flip_plan(inventory, state=progress.state, target=target,
                                            current=plan.flip.current, out=progress.unhealthy)

    steps = [
        Step(f"on every app host, in parallel: upload release {release} unless present "
             "(checksum verified)" if artifact.url is None else
             f"on every app host, in parallel: fetch release {release} from {artifact.url} "
             "unless present (checksum verified)",
             lambda: upload_release(session, stack, specs, artifact)),
        Step(f"record {target} as starting {release} on every balancer (written ahead; "
             "marked failed if anything below fails)", write_ahead),
        *[step for number, batch in enumerate(batches, start=1)
          for step in batch_steps(number, batch)],
    ]
    if plan.max_unhealthy:
        steps.append(Step("leave the instances that failed their health check (within "
                          "deploy.max_unhealthy) out of the flip", leave_out_unhealthy))
    if canary is not None:
        def start_canary() -> None:
            session.hooks.describe(canary_weight=str(canary[0]))  # what the step's hooks see
            record["canary"] = canary[0]
            record["canary_steps"] = list(canary)
            progress.state = progress.state.with_colour(
                target, status="running", release=release, since=now(), replaced=None,
                error=None, out=progress.unhealthy)
            progress.canary = Canary(colour=target.value, release=release, weight=canary[0],
                                     since=now(), by=actor(), steps=canary, pauses=pauses)

        steps += [Step(f"a canary instead of a flip: {target} takes "
                       f"{_describe_schedule(canary, pauses)}, each next step after the "
                       "canary's analysis, then all the traffic", start_canary),
                  *_canary_flip_steps(session, progress, weight=canary[0], target=target)]
    else:
        steps += _flip_steps(session, progress, plan.flip)
    keep = inventory.release.keep
    steps.append(Step(f"prune old releases on every app host (keeping {keep})",
                      lambda: _prune(session, stack, specs)))
    if retire_after is not None and canary is None:
        def retire_idle_colour() -> None:
            if progress.state.live is None:
                return
            progress.retire_ran = True
            try:
                progress.state, progress.retired = _retire(session, progress.state,
                                                           drain_timeout=retire_after)
            except BluegreenError as error:
                error.message = (f"{target} is live with release {release} (generation "
                                 f"{progress.state.generation}), but retiring {target.other} "
                                 f"then failed: {error.message}")
                raise

        steps.append(Step(f"retire {target.other}: wait up to {retire_after:g} s for its "
                          "connections to end, then stop it", retire_idle_colour))
    live = plan.live
    batched = (f"; in {len(batches)} batches (deploy.batch), each started and health-checked "
               "before the next starts" if len(batches) > 1 else "")
    return Plan(f"deploy release {release} to {target} (live: {live or 'none'}; "
                f"{live or 'nothing'} keeps running untouched){batched}",
                tuple(steps))


def _unhealthy_within_limit(session: Session, specs: list[InstanceSpec], *, release: str,
                            total: int, already: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Health-check `specs` (all `total` target instances, or one batch of them after the
    ones found unhealthy `already`). Failing ones within `deploy.max_unhealthy` are returned, to
    be kept out of traffic (the deploy goes on); beyond it — or when none would be left — the
    failure stands and nothing flips."""
    inventory = session.inventory
    try:
        check_instances(inventory, session.connections, specs, reporter=session.reporter,
                        release_of={s.host.name: release for s in specs})
    except FanOutError as error:
        failing = tuple(f.host for f in error.failures)
        unhealthy = already + failing
        allowed = inventory.deploy.allowed_unhealthy(total)
        if (any(not isinstance(f.error, HealthCheckFailed) for f in error.failures)
                or len(unhealthy) > allowed or len(unhealthy) == total):
            if allowed:
                error.message += (f" That is more than deploy.max_unhealthy allows "
                                  f"({allowed} of {total}).")
            raise
        session.reporter.warn(
            f"{len(unhealthy)} of {total} instance(s) failed their health check "
            f"({', '.join(unhealthy)}), within deploy.max_unhealthy ({allowed}): they stay out "
            "of traffic.")
        return failing
    return ()


def _drain_before_stop(session: Session, stack: AppStack, spec: InstanceSpec,
                       release: str | None, *, ask: bool, open_now: int | None = None) -> int:
    """A deploy never stops an idle instance that still holds connections (clients of a
    rollback, WebSockets) without draining it first — unless told not to — and always says how
    many it cut."""
    transport, reporter = session.connections[spec.host.name], session.reporter
    timeout = stack.settings.drain_timeout if ask else 0.0  # a stopped colour has none
    count = drain(stack, transport, spec, release, timeout=timeout, ask=ask, open_now=open_now,
                  report=lambda line: reporter.step(spec.host.name, line))
    if count:
        reporter.warn(f"{spec.host.name}: {count} connection(s) to {spec.colour} still open, "
                      "closed by its stop"
                      + (f" after {timeout:g} s of draining" if ask else " (no drain)"))
    return count


def upload_release(session: Session, stack: AppStack, specs: list[InstanceSpec],
                   artifact: Artifact) -> None:
    """Upload the release to every host of `specs` that lacks it — or have each fetch it from
    its URL — checksum verified on the host."""
    reporter = session.reporter
    reporter.phase(f"upload release {artifact.release} to {len(specs)} app host(s)"
                   if artifact.url is None else
                   f"fetch release {artifact.release} on {len(specs)} app host(s) from "
                   f"{artifact.url}")

    def upload(spec: InstanceSpec) -> None:
        transport = session.connections[spec.host.name]
        cancel.check_cancelled()
        with _start_failures(spec):
            if stack.layout(spec.host).is_present(transport, artifact):
                reporter.step(spec.host.name, f"release {artifact.release} already present")
                return
            if artifact.url is not None:
                stack.layout(spec.host).upload(transport, artifact)
            else:
                with reporter.transfer(spec.host.name, f"upload {artifact.release}",
                                       artifact.size) as sent:
                    stack.layout(spec.host).upload(transport, artifact, sent)
        reporter.step(spec.host.name, f"fetched release {artifact.release} from its URL "
                      "(checksum verified)" if artifact.url is not None else
                      f"uploaded release {artifact.release} "
                      f"({artifact.size // 1024} KiB, checksum verified)")

    fan_out(specs, upload, step="upload", name=lambda s: s.host.name,
            parallelism=session.inventory.ssh.parallelism)


@contextmanager
def _start_failures(spec: InstanceSpec) -> Iterator[None]:
    """A remote step of standing up an instance that fails (upload, stop, pointer, start) fails
    the deploy like an unhealthy target (exit 5), naming the host and the step."""
    try:
        yield
    except BluegreenError as error:
        if error.exit_code != RemoteCommandFailed.exit_code:  # already a specific failure
            raise
        raise StartFailed(error.message, where=error.where or spec.host.name,
                          hint=error.hint or "Live traffic was not touched.") from None


def switch(inventory: Inventory, reporter: Reporter, *, to: Colour, options: Options
           ) -> Moved | DryRun:
    """Flip to an explicit colour that is running and healthy; also reconciles drift."""
    check_templates(inventory)
    with Session(inventory, reporter, command=f"switch --to {to}",
                 lock=not options.dry_run, lock_wait=options.lock_wait) as session:
        state, current = session.agreed_state(allow_drift=True)
        refuse_during_canary(state, f"switch --to {to}")
        return _flip_to(session, state, current, to, operation="switch", options=options)


def rollback(inventory: Inventory, reporter: Reporter, *, options: Options,
             restart: bool = False) -> Moved | DryRun:
    """Flip back to the previous colour after a quick health check: no process is started —
    unless `restart`, which first starts a retired colour from its recorded release."""
    check_templates(inventory)
    with Session(inventory, reporter, command="rollback", lock=not options.dry_run,
                 lock_wait=options.lock_wait) as session:
        state, current = session.agreed_state()
        refuse_during_canary(state, "rollback")
        if state.live is None:
            raise RollbackImpossible("nothing has been deployed yet, so there is nothing to roll "
                                     "back to.", hint="Run `bluegreen deploy` first.")
        previous = state.live.other
        if options.dry_run:
            _require_rollback_target(state, previous, restart=restart)
        # inside the recorded operation: a refusal is history too
        return _flip_to(session, state, current, previous, operation="rollback", options=options,
                        guard=lambda: _require_rollback_target(state, previous, restart=restart),
                        before=_restart_steps(session, previous,
                                              state.colour(previous).release or "")
                        if restart else None)


def _require_rollback_target(state: State, previous: Colour, *, restart: bool) -> None:
    """Rollback flips only to a colour that still runs, untouched, the release it served; a
    retired one may be started again from that release with `--restart`."""
    colour = state.colour(previous)
    if colour.release is None:
        raise RollbackImpossible(
            f"the previous colour {previous} was never deployed.",
            hint=f"Deploy again instead (`bluegreen deploy --to {previous}`).",
        )
    if colour.status == "running":
        return
    if colour.status in ("retired", "stopping") and colour.error is None and (
            restart or colour.status == "stopping"):
        # retiring changes no release: each host's running check and pointer decide
        return
    if restart and colour.status in ("failed", "starting") and colour.replaced == colour.release:
        return  # a restart of the release it served that did not finish: try again
    if colour.status == "retired" and colour.error is None:
        raise RollbackImpossible(
            f"the previous colour {previous} was retired (stopped).",
            hint=f"`bluegreen rollback --restart` starts {previous} again from release "
                 f"{colour.release}, health-checks it and flips.",
        )
    redeploy = (f"`bluegreen deploy --to {previous} --release {colour.replaced} --source …` "
                f"puts {colour.replaced} back on {previous}" if colour.replaced
                else f"`bluegreen deploy --to {previous}` stands it up again")
    if colour.status in ("failed", "retired"):
        raise RollbackImpossible(
            f"the previous colour {previous} no longer runs what it served: a failed operation "
            f"changed it to release {colour.release} ({colour.error or 'failed'}).",
            hint=f"Rolling back would serve that release. {redeploy}; `bluegreen status` shows "
                 "what runs where.",
        )
    if colour.status in ("starting", "stopping"):
        raise RollbackImpossible(
            f"the previous colour {previous} was being changed ({colour.status} release "
            f"{colour.release}) by an operation that did not finish"
            + (f": {state.operation.describe()}" if state.operation else "") + ".",
            hint=f"What runs there is uncertain. {redeploy}; `bluegreen status` shows what "
                 "runs where.",
        )
    raise RollbackImpossible(
        f"the previous colour {previous} is {colour.status}.",
        hint=f"`bluegreen rollback --restart` starts it from release {colour.release}.",
    )


def _restart_steps(session: Session, colour: Colour, release: str) -> list[Step]:
    """Start a colour again from the release its pointer still names (prune keeps it)."""
    inventory, reporter = session.inventory, session.reporter
    if inventory.app is None or not release:  # refused when run: by the guard, or here
        def refuse() -> None:
            _require_app(inventory)

        return [Step(f"start {colour} again (it needs an `app:` section and the release it "
                     "served)", refuse)]
    stack = AppStack(inventory, inventory.app)
    specs = instance_specs(inventory, colour)

    def write_ahead() -> None:
        assert session.state is not None
        session.begin_change(session.state, colour, status="starting", release=release,
                             step=f"restart {colour} from release {release}")
        reporter.phase(f"restart {colour} from release {release}")

    def start(spec: InstanceSpec) -> None:
        transport = session.connections[spec.host.name]
        if stack.is_running(transport, spec, release):
            reporter.step(spec.host.name, f"{colour} already running")
            return
        with _start_failures(spec):
            stack.layout(spec.host).point(transport, colour, release)
            stack.start(transport, spec, release)
        reporter.step(spec.host.name, f"{colour} started on port {spec.port}", ok=True)

    def check() -> None:
        reporter.phase(f"health-check {len(specs)} restarted {colour} instance(s)")
        check_instances(inventory, session.connections, specs, reporter=reporter,
                        release_of={s.host.name: release for s in specs})

    def start_all() -> None:
        fan_out(specs, start, step="restart", name=lambda s: s.host.name,
                parallelism=inventory.ssh.parallelism)

    return [
        Step(f"record {colour} as starting {release} on every balancer (written ahead)",
             write_ahead),
        Step(f"on every app host, in parallel: start {colour} from release {release} unless "
             "it runs", start_all,
             details=tuple(f"{spec.host.name}: start: {stack.start_command(spec, release)}"
                           for spec in specs)),
        Step(f"health-check {len(specs)} restarted {colour} instance(s)", check),
    ]


def retire(inventory: Inventory, reporter: Reporter, *, drain_timeout: float, options: Options
           ) -> RetireResult | DryRun:
    """Stop the idle colour after its connections drain; it is then no rollback target."""
    _require_app(inventory)
    with Session(inventory, reporter, command="retire", lock=not options.dry_run,
                 lock_wait=options.lock_wait) as session:
        state, _ = session.agreed_state()
        refuse_during_canary(state, "retire")  # the idle colour is the canary
        idle = state.live.other if state.live else None
        progress = Retiring(state)
        steps = Plan(f"retire {idle or 'nothing'}", tuple(
            retire_steps(session, progress, drain_timeout=drain_timeout)))
        if options.dry_run:
            return _dry_run(enveloped(session, steps, pre="pre_retire",
                                      post=("post_retire",)).describe())
        record: dict[str, Any] = {
            "operation": "retire", "from": _name(state.live), "to": _name(state.live),
            "colour": _name(idle), "release": state.colour(idle).release if idle else None}

        def run() -> RetireResult:
            execute(steps)
            new_state = progress.state
            retired = RetiredView.of(progress.retired) if progress.retired else None
            if retired is not None:
                record.update(fields_of(retired))
            result = RetireResult(
                live=_name(new_state.live), generation=new_state.generation,
                retired=_name(new_state.live.other if new_state.live else None),
                connections_cut=0, drained=True, colours=colours_of(new_state))
            if retired is None:
                return result
            return amended(result, colour=retired.colour, release=retired.release,
                           connections_cut=retired.connections_cut, drained=retired.drained,
                           cut_by_host=retired.cut_by_host)

        return recorded(session, record, run, pre="pre_retire", post="post_retire")


def _retire(session: Session, state: State, *, drain_timeout: float
            ) -> tuple[State, Retired | None]:
    """The generation stays: it numbers flips, and the balancer file's header carries it."""
    progress = Retiring(state)
    execute(Plan(f"retire {state.live.other if state.live else 'nothing'}",
                 tuple(retire_steps(session, progress, drain_timeout=drain_timeout))))
    return progress.state, progress.retired


def _flip_to(session: Session, state: State, current: dict[str, str | None], target: Colour,
             *, operation: str, options: Options, guard: Callable[[], None] | None = None,
             before: list[Step] | None = None,
             adjust: Callable[[State], State] | None = None,
             note: dict[str, Any] | None = None) -> Moved | DryRun:
    inventory, reporter = session.inventory, session.reporter
    plan = build_flip_plan(inventory, state=state, target=target, current=current)
    progress = _Progress(state, release=state.colour(target).release, flip=plan)
    specs = instance_specs(inventory, target)

    def require_running() -> None:
        progress.state = session.state or progress.state  # a restart wrote ahead
        progress.release = _require_running(
            session, specs, target, release=progress.state.colour(target).release,
            operation=operation)

    def quick_check() -> None:
        reporter.phase(f"quick health check of {len(specs)} {target} instance(s)")
        check_instances(inventory, session.connections, specs, reporter=reporter, quick=True,
                        release_of={s.host.name: progress.release for s in specs})

    steps = [
        *(before or []),
        Step(f"check that every {target} instance runs, with its pointer at the release the "
             "state records", require_running),
        Step(f"quick health check of every {target} instance", quick_check),
        *_flip_steps(session, progress, plan, adjust=adjust)]
    if guard is not None:  # refuses before the first step
        steps[0] = replace(steps[0], guard=guard)
    flip_plan = Plan(f"{operation}: flip {state.live or 'nothing'} → {target}", tuple(steps))
    if options.dry_run:
        return _dry_run(enveloped(session, flip_plan, post=(
            "post_rollback",) if operation == "rollback" else (
            "on_abort",) if operation == "canary abort" else ()).describe())
    record = {"operation": operation, "from": _name(state.live), "to": target.value,
              "release": state.colour(target).release, **(note or {})}

    def run() -> Moved:
        execute(flip_plan)
        return _summary(progress.state, plan, release=progress.release)

    return recorded(session, record, run,
                    post="post_rollback" if operation == "rollback" else None)


def _require_running(session: Session, specs: list[InstanceSpec], target: Colour, *,
                     release: str | None, operation: str) -> str | None:
    """Every instance of `target` runs, and its pointer names `release`: the flip serves exactly
    the release the output and the state name. `switch`, which reconciles, adopts the release
    the pointers agree on when it differs from the recorded one; `rollback` refuses."""
    if session.inventory.app is None:
        return release
    stack = AppStack(session.inventory, session.inventory.app)

    def inspect(spec: InstanceSpec) -> tuple[bool, str | None]:
        return stack.running_release(session.connections[spec.host.name], spec, release)

    results = fan_out(specs, inspect, step="status", name=lambda s: s.host.name,
                      parallelism=session.inventory.ssh.parallelism)
    rollback = operation == "rollback"
    stopped = [s.host.name for s, (running, _) in zip(specs, results, strict=True)
               if not running]
    if stopped:
        raise (RollbackImpossible if rollback else HealthCheckFailed)(
            f"{target} is not running on {', '.join(stopped)}; {operation} starts no process.",
            hint=(f"`bluegreen rollback --restart` starts it again from release {release}; "
                  if rollback and release else "")
                 + f"`bluegreen deploy --to {target}` stands up a release there.",
        )
    pointers = {pointer for _, pointer in results}
    if pointers == {release}:
        return release
    if not rollback and len(pointers) == 1 and None not in pointers:
        adopted = pointers.pop()
        session.reporter.warn(f"{target} runs release {adopted} on every host, not {release} "
                              f"as recorded: {operation} records {adopted}")
        return adopted
    elsewhere = [f"{s.host.name} points {target} at {pointer or 'nothing'}"
                 for s, (_, pointer) in zip(specs, results, strict=True) if pointer != release]
    raise RollbackImpossible(
        f"{target} does not run release {release}, the one the state records: "
        f"{'; '.join(elsewhere)}.",
        hint=f"It was changed outside the recorded state (by hand, or by an operation that was "
             f"cut short). `bluegreen status` shows what runs where; deploy the release you want "
             f"to {target}.",
    )


def _flip_steps(session: Session, progress: _Progress, planned: FlipPlan, *,
                adjust: Callable[[State], State] | None = None) -> list[Step]:
    """Flip every balancer, verify through the public URL(s) (flip back on failure), then write
    the new state. A signal during the flip lets the activation finish; one that arrives before
    verification has passed cuts verification short and flips back, so the time from the signal
    to the exit stays bounded and traffic stays on what was verified."""
    inventory, reporter = session.inventory, session.reporter

    def planned_flip() -> FlipPlan:
        assert progress.flip is not None
        return progress.flip

    def verify_public() -> None:
        verify(inventory, release=progress.release, colour=planned.target.value,
               reporter=reporter)
        cancel.check_cancelled()

    def record(plan: FlipPlan) -> None:
        new_state = progress.state.after_flip(plan.target, release=progress.release,
                                              actor=actor(), managed=plan.configs, out=plan.out)
        if adjust is not None:
            new_state = adjust(new_state)
        try:
            new_state = session.finish_change(new_state)
        except BluegreenError as error:
            reporter.warn("the new state could not be written: flipping back so that traffic "
                          "matches the recorded state")
            error.message = (f"the flip to {plan.target} worked but could not be recorded, so "
                             f"traffic was flipped back to {plan.previous or 'nothing'}: "
                             + error.message)
            raise
        session.flipped = progress.state = new_state
        reporter.step(inventory.primary_balancer.name,
                      f"{plan.target} is live (generation {new_state.generation})", ok=True)

    return [
        *hook_steps(session, "pre_flip"),
        *activation_steps(
            session, planned_flip,
            says=FLIP_SAYS.format(balancers=len(planned.configs),
                                  generation=planned.generation) + ":",
            details=tuple(planned.diffs()),
            check=("verify through the public URL(s); on failure, flip back to "
                   f"{planned.previous or 'nothing'}", verify_public),
            records=f"write state generation {planned.generation} on every balancer (flip "
                    "back if it cannot be written)", record=record),
        *hook_steps(session, "post_flip"),
    ]


def canary_promote(inventory: Inventory, reporter: Reporter, *, options: Options
                   ) -> Moved | DryRun | EndedElsewhere:
    """The canary's next step, then — while the steps it reaches have a timed pause — the ones
    after it, as `deploy` steps them."""
    result = _promote_once(inventory, reporter, options=options)
    if not isinstance(result, Moved) or not result.canary:
        return result
    return _step_through(inventory, reporter, options, result)


def _describe_schedule(weights: tuple[int, ...], pauses: tuple[float | None, ...]) -> str:
    return ", ".join(
        f"{weight}% ({'until `canary promote`' if pause is None else f'{pause:g} s'})"
        for weight, pause in itertools.zip_longest(weights, pauses))


def _promote_once(inventory: Inventory, reporter: Reporter, *, options: Options
                  ) -> Moved | DryRun:
    """The canary's next step: its next weight, or — after the last step, or with `full` — all
    the traffic: its colour becomes the live colour and the stable one stays running for
    rollback (a normal flip, verified through the public URL(s))."""
    check_templates(inventory)
    with Session(inventory, reporter, command="canary promote", lock=not options.dry_run,
                 lock_wait=options.lock_wait) as session:
        state, current = session.agreed_state()
        canary = _require_canary(state)
        if options.expect_canary and options.expect_canary != (canary.colour, canary.release,
                                                               canary.since):
            raise NoCanary("the canary this deploy started was ended, and another one started, "
                           "by another operation.")
        if options.expect_weight is not None and canary.weight != options.expect_weight:
            raise _MovedElsewhere(CanaryView.of(canary))
        if options.expect_weight is not None and canary.paused_at is not None:
            raise _PausedElsewhere(CanaryView.of(canary))
        verdict = None
        if inventory.canary.analysed and not options.skip_analysis and not options.dry_run:
            verdict = _analyse(session, state, canary)
            limit = inventory.canary.failure_limit
            if verdict.breach and canary.breaches < limit:
                _hold_canary(session, state, canary, verdict)
            if verdict.breach:
                in_a_row = (f" ({canary.breaches + 1} analyses in a row, "
                            f"canary.failure_limit {limit})" if limit else "")
                _abort_canary(session, state, current, canary, options=options,
                              why=f"canary aborted by its analysis: {verdict.breach}{in_a_row}",
                              note={"analysis": verdict.to_dict()})
                raise CanaryAborted(
                    f"the canary failed its analysis{in_a_row} — {verdict.describe()} — so "
                    f"all traffic went back to {state.live} and {canary.colour} (release "
                    f"{canary.release}) was marked failed.",
                    hint="`bluegreen status` shows it; fix the release and deploy it again.")
            if verdict.lasting:
                raise CanaryNotJudged(
                    f"the canary cannot be judged: {verdict.lasting}; nothing changed.",
                    hint="Fix what keeps it from being judged, or `canary promote "
                         "--skip-analysis` moves it on (the next step is judged again).",
                    waiting_helps=False)
            if not verdict.judged:
                counts = (f"{verdict.requests} request(s) since its step began, "
                          f"{inventory.canary.min_requests} needed (canary.min_requests)"
                          if verdict.counted and verdict.requests < inventory.canary.min_requests
                          else "")
                metrics = "; ".join(m.describe() for m in verdict.metrics if m.value is None)
                raise CanaryNotJudged(
                    f"the canary cannot be judged yet: {'; '.join(filter(None, (counts, metrics)))}"
                    "; nothing changed.",
                    hint="Promote again once it has served more traffic (`bluegreen canary "
                         "status` shows the count), or `canary promote --skip-analysis`.")
        note = {"analysis": verdict.to_dict()} if verdict else {}
        weight = None if options.full else canary.next_weight
        if weight is None:
            return _flip_to(session, state, current, Colour(canary.colour),
                            operation="canary promote", options=options, note=note)
        return _canary_step(session, state, canary, weight=weight, options=options, note=note)


def _hold_canary(session: Session, state: State, canary: Canary, verdict: Verdict) -> None:
    """A breach within `canary.failure_limit`: the canary stays at its weight, counted
    again from now on (its next analysis judges only the traffic after this one), and the
    breach is recorded; raises CanaryHeld."""
    limit = session.inventory.canary.failure_limit
    held = replace(canary, breaches=canary.breaches + 1, judged_since=now(),
                   baseline=baseline_of(_counters(session))
                   if session.inventory.canary.counted else {})
    record = {"operation": "canary promote", "from": _name(state.live), "to": canary.colour,
              "release": canary.release, "canary": canary.weight, "result": "held",
              "breaches": held.breaches, "analysis": verdict.to_dict()}

    def write() -> None:  # the state and its history record, together or neither
        session.finish_change(replace(state, canary=held, updated_at=now(),
                                      updated_by=actor()))
        session.record(record)

    execute(Plan(f"canary promote: hold {canary.colour} at {canary.weight}%", (Step(
        f"record breach {held.breaches} of the canary's analysis in the state on every "
        "balancer, and in the history", write, holds_interrupts=True, commits=True),)))
    raise CanaryHeld(
        f"the canary breached its analysis — {verdict.describe()} — which canary.failure_limit "
        f"allows {limit} time(s) in a row (this is breach {held.breaches}): it stays at "
        f"{canary.weight}% and is judged again on the traffic from now on; nothing else "
        "changed.",
        hint="`bluegreen canary promote` judges it again once it has served more traffic ("
             + ("one more breach aborts it" if held.breaches == limit
                else f"{limit + 1} breaches in a row abort it")
             + "); `bluegreen canary abort` ends it now.")


def _counters(session: Session) -> dict[str, BalancerTraffic]:
    """The balancers' counters for a step's baseline; none (the step is then not judged, and
    says why) when they cannot be read — the flip itself is done and must be recorded."""
    try:
        return session.traffic()
    except BluegreenError as error:
        session.reporter.warn(f"the balancers' counters could not be read ({error.message}); "
                              "this step of the canary will not be judged")
        return {}


def _analyse(session: Session, state: State, canary: Canary) -> Verdict:
    """The canary against the inventory's thresholds, from the balancers' counters and the
    Prometheus queries now."""
    assert state.live is not None
    settings = session.inventory.canary
    verdict = judge(settings, canary.baseline, session.traffic() if settings.counted else {},
                    canary=canary.colour, stable=state.live.value,
                    metrics=canary_metrics(session.inventory, canary, stable=state.live))
    session.reporter.step(session.inventory.primary_balancer.name,
                          f"canary analysis: {verdict.describe()}",
                          ok=None if not verdict.judged else verdict.passed)
    return verdict


def _canary_step(session: Session, state: State, canary: Canary, *, weight: int,
                 options: Options, note: dict[str, Any]) -> Moved | DryRun:
    """Move the canary to `weight` after a quick health check of its instances; the stable
    colour keeps the rest."""
    inventory, reporter = session.inventory, session.reporter
    assert state.live is not None
    colour = Colour(canary.colour)
    # a promote by hand is a go: a pause ends with it
    moved = replace(canary, weight=weight, breaches=0, paused_at=None, paused_by=None)
    step = f"canary step {moved.step}: {colour} {canary.weight}% → {weight}%"
    progress = _Progress(state, release=canary.release, canary=moved)
    specs = [s for s in instance_specs(inventory, colour)
             if s.host.name not in state.colour(colour).out]

    def require_running() -> None:
        session.hooks.describe(canary_weight=str(weight))  # what the step's hooks see
        _require_running(session, specs, colour, release=canary.release,
                         operation="canary promote")

    def quick_check() -> None:
        reporter.phase(f"{step}: quick health check of {len(specs)} {colour} instance(s)")
        check_instances(inventory, session.connections, specs, reporter=reporter, quick=True,
                        release_of={s.host.name: canary.release for s in specs})

    steps = Plan(step, (
        Step(f"check that every {colour} instance in traffic runs release {canary.release}",
             require_running),
        Step(f"quick health check of every {colour} instance", quick_check),
        *_canary_flip_steps(session, progress, weight=weight, target=colour)))
    if options.dry_run:
        return _dry_run(enveloped(session, steps).describe())
    record = {"operation": "canary promote", "from": state.live.value, "to": colour.value,
              "release": canary.release, "canary": weight, **note}

    def run() -> Moved:
        execute(steps)
        assert progress.state.canary is not None
        return amended(_summary(progress.state, None, release=canary.release),
                       canary=CanaryView.of(progress.state.canary))

    return recorded(session, record, run)


def canary_pause(inventory: Inventory, reporter: Reporter, *, options: Options,
                 reason: str | None = None) -> Moved | DryRun:
    """Hold the canary at its weight: its timed steps no longer follow by themselves (a
    `deploy` or `promote` stepping it stops at its next step) until `canary resume`; `canary
    promote` still takes the next step by hand."""
    return _set_paused(inventory, reporter, options=options, pause=True, reason=reason)


def canary_resume(inventory: Inventory, reporter: Reporter, *, options: Options
                  ) -> Moved | DryRun | EndedElsewhere:
    """End a pause: a canary at a timed step waits that step's whole pause from now, then goes
    on through its timed steps as `deploy` steps them; at a manual step it waits for `canary
    promote`."""
    result = _set_paused(inventory, reporter, options=options, pause=False)
    if (not isinstance(result, Moved) or not result.changed or not result.canary
            or result.canary.pause is None):
        return result
    return _step_through(inventory, reporter, options, result)


def _set_paused(inventory: Inventory, reporter: Reporter, *, options: Options, pause: bool,
                reason: str | None = None) -> Moved | DryRun:
    operation = "canary pause" if pause else "canary resume"
    with Session(inventory, reporter, command=operation, lock=not options.dry_run,
                 lock_wait=options.lock_wait) as session:
        state, _ = session.agreed_state()
        canary = _require_canary(state)
        if (canary.paused_at is not None) == pause:
            reporter.warn(f"the canary is {'already' if pause else 'not'} paused: nothing to do")
            return amended(_summary(state, None, release=canary.release),
                           canary=CanaryView.of(canary), changed=False)
        changed = replace(canary, paused_at=now() if pause else None,
                          paused_by=actor() if pause else None)
        progress = _Progress(state, canary=changed)

        def record() -> None:  # the state and its history record, together or neither
            progress.state = session.finish_change(replace(
                state, canary=changed, updated_at=now(), updated_by=actor()))
            session.record({"operation": operation, "from": _name(state.live),
                            "to": canary.colour, "release": canary.release,
                            "canary": canary.weight, "result": "ok",
                            "generation": progress.state.generation,
                            **({"reason": reason} if reason else {})})
            reporter.step(inventory.primary_balancer.name,
                          f"canary {'paused' if pause else 'resumed'} at {canary.weight}%",
                          ok=True)

        steps = Plan(f"{operation}: {canary.describe()}", (Step(
            "record it in the state on every balancer, and in the history"
            + (": its timed steps wait for `canary resume`" if pause else
               ": its timed steps go on"), record, holds_interrupts=True, commits=True),))
        if options.dry_run:
            return _dry_run(steps.describe())
        execute(steps)
        return amended(_summary(progress.state, None, release=canary.release),
                       canary=CanaryView.of(changed), changed=True)


def canary_abort(inventory: Inventory, reporter: Reporter, *, options: Options,
                 reason: str | None = None) -> Moved | DryRun:
    """All traffic back to the stable colour; the canary's colour keeps running its release,
    recorded `failed` (with why), so rollback never flips to it."""
    check_templates(inventory)
    with Session(inventory, reporter, command="canary abort", lock=not options.dry_run,
                 lock_wait=options.lock_wait) as session:
        state, current = session.agreed_state()
        canary = _require_canary(state)
        return _abort_canary(session, state, current, canary, options=options,
                             why=f"canary aborted{f': {reason}' if reason else ''}")


def _abort_canary(session: Session, state: State, current: dict[str, str | None],
                  canary: Canary, *, options: Options, why: str,
                  note: dict[str, Any] | None = None) -> Moved | DryRun:
    assert state.live is not None

    def mark_aborted(after: State) -> State:
        return after.with_colour(Colour(canary.colour), status="failed", error=why,
                                 since=now())

    result = _flip_to(session, state, current, state.live, operation="canary abort",
                      options=options, adjust=mark_aborted, note={"reason": why, **(note or {})})
    if not options.dry_run:
        session.hooks.describe(reason=why, canary_weight=str(canary.weight))
        run_hooks_after(session.hooks, "on_abort")
    return result


def _canary_flip_steps(session: Session, progress: _Progress, *, weight: int, target: Colour
                       ) -> list[Step]:
    """Give `target` (running and healthy) `weight` of the traffic and the live colour the
    rest; recorded as the canary (`progress.canary`, set by the steps before). No public-URL
    verification — most requests still reach the live colour — except as a tester, with
    canary.sticky."""
    inventory, reporter = session.inventory, session.reporter
    stable = progress.state.live
    assert stable is not None
    weights = {stable.value: 100 - weight, target.value: weight}

    def plan_flip() -> FlipPlan:
        progress.flip = build_flip_plan(inventory, state=progress.state, target=stable,
                                        current={}, weights=weights,
                                        other_out=progress.state.colour(target).out)
        return progress.flip

    def verify_as_tester() -> None:
        assert progress.canary is not None
        if not inventory.verify.urls:
            reporter.warn("canary.sticky is not checked: verify.urls is empty, so no request "
                          "as a tester is sent through the public URL")
        verify(inventory, release=progress.canary.release, colour=target.value,
               reporter=reporter, tester=inventory.canary.sticky)
        cancel.check_cancelled()

    def record(plan: FlipPlan) -> None:
        canary = progress.canary
        assert canary is not None
        canary = replace(canary, judged_since=now())  # the step's analysis counts from here
        if inventory.canary.counted:
            canary = replace(canary, baseline=baseline_of(_counters(session)))
        new_state = replace(
            progress.state, generation=plan.generation, weights=weights, canary=canary,
            updated_at=now(), updated_by=actor(),
            managed_sha256={h: sha256_text(t) for h, t in plan.configs.items()})
        try:
            new_state = session.finish_change(new_state)
        except BluegreenError:
            reporter.warn("the canary could not be recorded: moving its traffic back")
            raise
        session.flipped = progress.state = new_state
        reporter.step(inventory.primary_balancer.name,
                      f"canary: {target} (release {canary.release}) takes {weight}% of the "
                      f"traffic, {stable} {100 - weight}% (generation {new_state.generation})"
                      + (f", step {canary.step}" if len(canary.steps) > 1 else ""), ok=True)

    generation = progress.state.generation + 1
    return [
        *hook_steps(session, "pre_step"),
        *hook_steps(session, "pre_flip"),
        *activation_steps(
            session, plan_flip,
            says=FLIP_SAYS.format(balancers=len(inventory.hosts.balancer), generation=generation)
            + f": {stable} {100 - weight}% / {target} {weight}%",
            # testers see the canary through the public URL
            check=("verify through the public URL(s) as a tester (canary.sticky): every "
                   f"request reaches {target}; on failure, move its traffic back",
                   verify_as_tester) if inventory.canary.sticky is not None else None,
            records=f"record the canary at {weight}% (state generation {generation}) on every "
                    "balancer (move its traffic back if it cannot be written)", record=record),
        *hook_steps(session, "post_flip"),
        *hook_steps(session, "post_step"),
    ]


def _require_weights(session: Session, state: State, *, where: str) -> None:
    if state.live is None:
        raise UsageError("a canary needs a live colour to share the traffic with.",
                         where=where, hint="Deploy without --canary first.")
    unweighted = [name for name, site in session.sites.items() if not site.driver.weighted]
    if unweighted:
        raise UsageError(f"{', '.join(unweighted)} cannot split traffic by weight.",
                         where=where, hint="Canaries need nginx or HAProxy"
                         + ("; `deploy --no-canary` deploys straight." if where != "--canary"
                            else "."))


def _require_canary(state: State) -> Canary:
    if state.canary is None:
        raise NoCanary("no canary is in progress.",
                         hint="Start one with `bluegreen deploy --canary PERCENT`.")
    return state.canary


def refuse_during_canary(state: State, operation: str) -> None:
    if state.canary is not None:
        raise CanaryInProgress(
            f"a canary is in progress: {state.canary.describe()}; {operation} waits for it.",
            hint="`bluegreen canary promote` gives it all the traffic, `bluegreen canary "
                 "abort` none; `bluegreen canary status` shows it.")


def _prune(session: Session, stack: AppStack, specs: list[InstanceSpec]) -> None:
    keep = session.inventory.release.keep
    for spec in specs:
        try:
            pruned = stack.layout(spec.host).prune(session.connections[spec.host.name], keep)
        except BluegreenError as error:
            session.reporter.warn(f"could not prune old releases on {spec.host.name}: "
                                  f"{error.paragraph()}")
            continue
        if pruned:
            session.reporter.step(spec.host.name, f"pruned {len(pruned)} old release(s)")


def artifact_from(inventory: Inventory, *, source: str | None, release: str | None,
                  sha256: str | None = None) -> Artifact:
    if source is None and inventory.release.url is not None:
        return _fetched_artifact(inventory, inventory.release.url, release=release,
                                 sha256=sha256)
    if sha256 is not None:
        raise UsageError("--sha256 names the checksum of a release the hosts fetch from "
                         "release.url; a release from --source is checksummed here.",
                         where="--sha256")
    chosen = source or inventory.release.source
    if chosen is None:
        raise UsageError("no release source given.", where="--source",
                         hint="Pass --source DIR|FILE.tar.gz or set release.source in the "
                              "inventory.")
    path = Path(chosen).expanduser()
    if not path.is_absolute() and source is None:
        path = inventory.path.parent / path  # inventory paths are relative to the inventory
    if not path.exists():
        raise UsageError(f"release source {path} does not exist.",
                         where="--source" if source else "release.source")
    return package(path, release=validate_release_id(release) if release is not None else None)


def _fetched_artifact(inventory: Inventory, url: str, *, release: str | None,
                      sha256: str | None) -> Artifact:
    """A release each host fetches from `release.url` itself (not through this machine's
    uplink), checked against the checksum the build reported."""
    if release is None or sha256 is None:
        raise UsageError("a release fetched from release.url needs its id and checksum.",
                         where="--release" if release is None else "--sha256",
                         hint="Pass --release ID --sha256 HEX (the sha256 of the .tar.gz, as "
                              "your build computed it), or --source to upload one from here.")
    if not re.fullmatch(r"[0-9a-f]{64}", sha256.lower()):
        raise UsageError(f"{sha256!r} is not a sha256 checksum (64 hex digits).",
                         where="--sha256")
    release = validate_release_id(release)
    rendered = render_text(url, {"release": release, "service": inventory.service},
                           where="release.url")
    return Artifact(release, None, sha256.lower(), url=rendered)


def _require_app(inventory: Inventory) -> Any:
    if inventory.app is None:
        raise InventoryError("deploy needs an `app:` section (root, start, stop).",
                             where=f"{inventory.path}: app", hint="See inventories/example.yml.")
    return inventory.app


def _summary(state: State, plan: FlipPlan | None, *, release: str | None) -> Moved:
    return Moved.of(state, previous=_name(plan.previous) if plan else None, release=release)


def _dry_run(lines: list[str]) -> DryRun:
    return DryRun(plan=lines)


def _name(colour: Colour | None) -> str | None:
    return colour.value if colour else None
