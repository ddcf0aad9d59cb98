"""A canary: its steps and their pauses, promote (judged by its analysis), pause, resume and abort,
and the flip that gives it its share."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

from bluegreen import cancel
from bluegreen.app import instance_specs
from bluegreen.balancer.base import BalancerTraffic
from bluegreen.canary_analysis import Verdict, baseline_of, judge
from bluegreen.errors import (
    BluegreenError,
    CanaryAborted,
    CanaryHeld,
    CanaryNotJudged,
    NoCanary,
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
from bluegreen.flip_steps import FLIP_SAYS, activation_steps
from bluegreen.health import HealthOutcome
from bluegreen.instances import check_instances, verify
from bluegreen.inventory import Inventory
from bluegreen.model import Colour
from bluegreen.operations.flips import check_running, flip_to
from bluegreen.operations.shared import (
    Options,
    Progress,
    dry_run_of,
    name_of,
    require_canary,
    summary_of,
)
from bluegreen.output import Reporter
from bluegreen.plan import FlipPlan, build_flip_plan, check_templates
from bluegreen.prometheus import canary_metrics
from bluegreen.results import CanaryView, DryRun, EndedElsewhere, Moved, amended
from bluegreen.session import Session
from bluegreen.state import Canary, State, actor, now, sha256_text


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


def step_through(inventory: Inventory, reporter: Reporter, options: Options,
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


def canary_promote(inventory: Inventory, reporter: Reporter, *, options: Options
                   ) -> Moved | DryRun | EndedElsewhere:
    """The canary's next step, then — while the steps it reaches have a timed pause — the ones
    after it, as `deploy` steps them."""
    result = _promote_once(inventory, reporter, options=options)
    if not isinstance(result, Moved) or not result.canary:
        return result
    return step_through(inventory, reporter, options, result)


def describe_schedule(weights: tuple[int, ...], pauses: tuple[float | None, ...]) -> str:
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
        canary = require_canary(state)
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
            return flip_to(session, state, current, Colour(canary.colour),
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
    record = {"operation": "canary promote", "from": name_of(state.live), "to": canary.colour,
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
    progress = Progress(state, release=canary.release, canary=moved)
    specs = [s for s in instance_specs(inventory, colour)
             if s.host.name not in state.colour(colour).out]

    probed: dict[str, HealthOutcome] = {}

    def require_running() -> None:
        session.hooks.describe(canary_weight=str(weight))  # what the step's hooks see
        probed.update(check_running(session, specs, colour, release=canary.release,
                                    operation="canary promote").probed)

    def quick_check() -> None:
        reporter.phase(f"{step}: quick health check of {len(specs)} {colour} instance(s)")
        check_instances(inventory, session.connections, specs, reporter=reporter, quick=True,
                        release_of={s.host.name: canary.release for s in specs},
                        probed=probed)

    steps = Plan(step, (
        Step(f"check that every {colour} instance in traffic runs release {canary.release}",
             require_running),
        Step(f"quick health check of every {colour} instance", quick_check),
        *canary_flip_steps(session, progress, weight=weight, target=colour)))
    if options.dry_run:
        return dry_run_of(enveloped(session, steps).describe())
    record = {"operation": "canary promote", "from": state.live.value, "to": colour.value,
              "release": canary.release, "canary": weight, **note}

    def run() -> Moved:
        execute(steps)
        assert progress.state.canary is not None
        return amended(summary_of(progress.state, None, release=canary.release),
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
    return step_through(inventory, reporter, options, result)


def _set_paused(inventory: Inventory, reporter: Reporter, *, options: Options, pause: bool,
                reason: str | None = None) -> Moved | DryRun:
    operation = "canary pause" if pause else "canary resume"
    with Session(inventory, reporter, command=operation, lock=not options.dry_run,
                 lock_wait=options.lock_wait) as session:
        state, _ = session.agreed_state()
        canary = require_canary(state)
        if (canary.paused_at is not None) == pause:
            reporter.warn(f"the canary is {'already' if pause else 'not'} paused: nothing to do")
            return amended(summary_of(state, None, release=canary.release),
                           canary=CanaryView.of(canary), changed=False)
        changed = replace(canary, paused_at=now() if pause else None,
                          paused_by=actor() if pause else None)
        progress = Progress(state, canary=changed)

        def record() -> None:  # the state and its history record, together or neither
            progress.state = session.finish_change(replace(
                state, canary=changed, updated_at=now(), updated_by=actor()))
            session.record({"operation": operation, "from": name_of(state.live),
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
            return dry_run_of(steps.describe())
        execute(steps)
        return amended(summary_of(progress.state, None, release=canary.release),
                       canary=CanaryView.of(changed), changed=True)


def canary_abort(inventory: Inventory, reporter: Reporter, *, options: Options,
                 reason: str | None = None) -> Moved | DryRun:
    """All traffic back to the stable colour; the canary's colour keeps running its release,
    recorded `failed` (with why), so rollback never flips to it."""
    check_templates(inventory)
    with Session(inventory, reporter, command="canary abort", lock=not options.dry_run,
                 lock_wait=options.lock_wait) as session:
        state, current = session.agreed_state()
        canary = require_canary(state)
        return _abort_canary(session, state, current, canary, options=options,
                             why=f"canary aborted{f': {reason}' if reason else ''}")


def _abort_canary(session: Session, state: State, current: dict[str, str | None],
                  canary: Canary, *, options: Options, why: str,
                  note: dict[str, Any] | None = None) -> Moved | DryRun:
    assert state.live is not None

    def mark_aborted(after: State) -> State:
        return after.with_colour(Colour(canary.colour), status="failed", error=why,
                                 since=now())

    result = flip_to(session, state, current, state.live, operation="canary abort",
                      options=options, adjust=mark_aborted, note={"reason": why, **(note or {})})
    if not options.dry_run:
        session.hooks.describe(reason=why, canary_weight=str(canary.weight))
        run_hooks_after(session.hooks, "on_abort")
    return result


def canary_flip_steps(session: Session, progress: Progress, *, weight: int, target: Colour
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
