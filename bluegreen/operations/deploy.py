"""deploy: upload, write ahead, stand the idle colour up in batches, health-check it, then flip (or
start a canary), prune and optionally retire."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bluegreen import cancel
from bluegreen.app import AppStack, InstanceSpec, Replaced
from bluegreen.errors import (
    BluegreenError,
    FanOutError,
    HealthCheckFailed,
    InventoryError,
    UsageError,
)
from bluegreen.executor import Plan, Step, enveloped, execute, recorded
from bluegreen.fanout import fan_out
from bluegreen.health import import_ahead
from bluegreen.instances import check_instances
from bluegreen.inventory import Inventory
from bluegreen.model import Colour
from bluegreen.operations.canary import (
    canary_flip_steps,
    canary_schedule,
    describe_schedule,
    step_through,
)
from bluegreen.operations.flips import flip_steps, retire_idle
from bluegreen.operations.shared import (
    Options,
    Progress,
    artifact_from,
    dry_run_of,
    name_of,
    refuse_during_canary,
    require_app,
    require_weights,
    start_failures,
    summary_of,
)
from bluegreen.output import Reporter
from bluegreen.plan import (
    DeployPlan,
    InstanceSteps,
    build_deploy_plan,
    build_flip_plan,
    check_templates,
)
from bluegreen.release import Artifact
from bluegreen.results import CanaryView, DryRun, EndedElsewhere, Moved, RetiredView, amended
from bluegreen.retire import drain
from bluegreen.session import Session
from bluegreen.state import Canary, actor, now


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
    return step_through(inventory, reporter, options, result)


def _deploy_once(inventory: Inventory, reporter: Reporter, *, source: str | None,
                 release: str | None, to: Colour | None, options: Options,
                 sha256: str | None) -> Moved | DryRun:
    app = require_app(inventory)
    artifact = artifact_from(inventory, source=source, release=release, sha256=sha256)
    check_templates(inventory)
    with Session(inventory, reporter, command=f"deploy {artifact.release}",
                 lock=not options.dry_run, lock_wait=options.lock_wait,
                 busy_app_hosts=True) as session:
        if not options.dry_run:
            import_ahead(inventory)  # connected: paramiko's import is done
        state, current = session.agreed_state()
        refuse_during_canary(state, "deploy")
        target = to or (state.live.other if state.live else Colour.BLUE)
        if options.canary_from_inventory and state.live is None:
            reporter.warn("nothing is live yet, so this first deploy takes all the traffic; "
                          "canary.steps apply from the next one")
            options = replace(options, canary=None, canary_pauses=())
        if options.canary is not None:
            require_weights(session, state,
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
        record = {"operation": "deploy", "from": name_of(state.live), "to": target.value,
                  "release": artifact.release}
        progress = Progress(state, release=artifact.release)
        steps = _deploy_steps(session, progress, plan, artifact, AppStack(inventory, app),
                              retire_after=options.retire_after,
                              drain_idle=options.drain and inventory.deploy.drain,
                              record=record, canary=options.canary,
                              pauses=options.canary_pauses)
        if options.dry_run:
            return dry_run_of(enveloped(session, steps, pre="pre_deploy",
                                      post=("post_deploy",)).describe())

        def run() -> Moved:
            execute(steps)
            summary = amended(
                summary_of(progress.state, progress.flip, release=artifact.release),
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

        return recorded(session, record, run, pre="pre_deploy", post="post_deploy", last=True)


def _deploy_steps(session: Session, progress: Progress, plan: DeployPlan, artifact: Artifact,
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

    keep = inventory.release.keep

    def stand_up(steps: InstanceSteps) -> None:  # the commands the plan shows are what runs
        spec = steps.spec
        transport = session.connections[spec.host.name]
        cancel.check_cancelled()
        replaced = progress.state.colour(target).replaced
        with start_failures(spec):
            # one command: count the idle instance's connections, stop it if it runs, point
            # it at the release, start it — unless it has connections to drain first: the
            # command then ends before the stop, and runs again once they are drained
            done = stack.replace_and_start(
                transport, spec, release, replaced=replaced, stop=steps.stop, start=steps.start,
                running=None, count=True, hold_if_open=drain_idle, prune=keep)
            if done.held:
                progress.cut[spec.host.name] = _drain_before_stop(
                    session, stack, spec, replaced, open_now=done.connections or 0)
                done = stack.replace_and_start(  # a drain may have ended the instance itself
                    transport, spec, release, replaced=replaced, stop=steps.stop,
                    start=steps.start, running=None, prune=keep)
            else:
                progress.cut[spec.host.name] = _say_cut(session, spec, done.connections or 0,
                                                        drained_for=None)
        reporter.step(spec.host.name, f"{target} started on port {spec.port}", ok=True)
        _say_pruned(session, spec, done)

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
                 f"point it at releases/{release}, start it, then prune the releases beyond "
                 f"the {keep} newest that neither colour points at", start,
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
                       f"{describe_schedule(canary, pauses)}, each next step after the "
                       "canary's analysis, then all the traffic", start_canary),
                  *canary_flip_steps(session, progress, weight=canary[0], target=target)]
    else:
        steps += flip_steps(session, progress, plan.flip)
    if retire_after is not None and canary is None:
        def retire_idle_colour() -> None:
            if progress.state.live is None:
                return
            progress.retire_ran = True
            try:
                progress.state, progress.retired = retire_idle(session, progress.state,
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
                       release: str | None, *, open_now: int) -> int:
    """Drain the idle instance's `open_now` connections (clients of a rollback, WebSockets)
    before its stop, and say how many were still open to be cut."""
    transport, reporter = session.connections[spec.host.name], session.reporter
    timeout = stack.settings.drain_timeout
    count = drain(stack, transport, spec, release, timeout=timeout, open_now=open_now,
                  report=lambda line: reporter.step(spec.host.name, line))
    return _say_cut(session, spec, count, drained_for=timeout)


def _say_cut(session: Session, spec: InstanceSpec, count: int, *,
             drained_for: float | None) -> int:
    """Warn about the connections a stop closed (`drained_for`: the seconds they were given
    to end first; None: no drain)."""
    if count:
        session.reporter.warn(
            f"{spec.host.name}: {count} connection(s) to {spec.colour} still open, closed by "
            "its stop" + (f" after {drained_for:g} s of draining" if drained_for is not None
                          else " (no drain)"))
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
        layout = stack.layout(spec.host)
        with start_failures(spec):
            # a large release: ask first; a small one: one command that skips a present one
            asked = layout.asks_first(artifact)
            if asked and layout.is_present(transport, artifact):
                uploaded = False
            elif artifact.url is not None:
                uploaded = layout.upload(transport, artifact, unless_present=True)
            else:
                with reporter.transfer(spec.host.name, f"upload {artifact.release}",
                                       artifact.size) as sent:
                    uploaded = layout.upload(transport, artifact, sent, unless_present=not asked)
            if not uploaded:
                reporter.step(spec.host.name, f"release {artifact.release} already present")
                return
        reporter.step(spec.host.name, f"fetched release {artifact.release} from its URL "
                      "(checksum verified)" if artifact.url is not None else
                      f"uploaded release {artifact.release} "
                      f"({artifact.size // 1024} KiB, checksum verified)")

    fan_out(specs, upload, step="upload", name=lambda s: s.host.name,
            parallelism=session.inventory.ssh.parallelism)


def _say_pruned(session: Session, spec: InstanceSpec, done: Replaced) -> None:
    """What a stand-up's prune did; one that failed is warned about, not an error (the colour
    was started)."""
    if done.prune_error is not None:
        session.reporter.warn(f"could not prune old releases on {spec.host.name}: "
                              f"{done.prune_error}")
    elif done.pruned:
        session.reporter.step(spec.host.name, f"pruned {len(done.pruned)} old release(s)")
