"""The commands that move traffic without deploying — switch, rollback (with --restart) — and
retire; the flip they and the canary share (`flip_to`, `flip_steps`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, NamedTuple

from bluegreen import cancel
from bluegreen.app import AppStack, InstanceSpec, instance_specs
from bluegreen.errors import BluegreenError, HealthCheckFailed, RollbackImpossible
from bluegreen.executor import Plan, Step, enveloped, execute, hook_steps, recorded
from bluegreen.fanout import fan_out
from bluegreen.flip_steps import FLIP_SAYS, activation_steps
from bluegreen.health import HealthOutcome, import_ahead
from bluegreen.instances import (
    check_instances,
    host_check,
    host_check_outcome,
    quick_retries,
    verify,
)
from bluegreen.inventory import Inventory
from bluegreen.model import Colour
from bluegreen.operations.shared import (
    Options,
    Progress,
    dry_run_of,
    name_of,
    refuse_during_canary,
    require_app,
    start_failures,
    summary_of,
)
from bluegreen.output import Reporter
from bluegreen.plan import FlipPlan, build_flip_plan, check_templates
from bluegreen.results import (
    DryRun,
    Moved,
    RetiredView,
    RetireResult,
    amended,
    colours_of,
    fields_of,
)
from bluegreen.retire import Retired, Retiring, retire_steps
from bluegreen.session import Session
from bluegreen.state import State, actor


def switch(inventory: Inventory, reporter: Reporter, *, to: Colour, options: Options
           ) -> Moved | DryRun:
    """Flip to an explicit colour that is running and healthy; also reconciles drift."""
    check_templates(inventory)
    with Session(inventory, reporter, command=f"switch --to {to}",
                 lock=not options.dry_run, lock_wait=options.lock_wait) as session:
        state, current = session.agreed_state(allow_drift=True)
        refuse_during_canary(state, f"switch --to {to}")
        return flip_to(session, state, current, to, operation="switch", options=options,
                       last=True)


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
            require_rollback_target(state, previous, restart=restart)
        # inside the recorded operation: a refusal is history too
        return flip_to(session, state, current, previous, operation="rollback", options=options,
                       last=True,
                       guard=lambda: require_rollback_target(state, previous, restart=restart),
                       before=_restart_steps(session, previous,
                                             state.colour(previous).release or "")
                       if restart else None)


def require_rollback_target(state: State, previous: Colour, *, restart: bool) -> None:
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
            require_app(inventory)

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
        with start_failures(spec):
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
    require_app(inventory)
    with Session(inventory, reporter, command="retire", lock=not options.dry_run,
                 lock_wait=options.lock_wait, busy_app_hosts=True) as session:
        state, _ = session.agreed_state()
        refuse_during_canary(state, "retire")  # the idle colour is the canary
        idle = state.live.other if state.live else None
        progress = Retiring(state)
        steps = Plan(f"retire {idle or 'nothing'}", tuple(
            retire_steps(session, progress, drain_timeout=drain_timeout)))
        if options.dry_run:
            return dry_run_of(enveloped(session, steps, pre="pre_retire",
                                      post=("post_retire",)).describe())
        record: dict[str, Any] = {
            "operation": "retire", "from": name_of(state.live), "to": name_of(state.live),
            "colour": name_of(idle), "release": state.colour(idle).release if idle else None}

        def run() -> RetireResult:
            execute(steps)
            new_state = progress.state
            retired = RetiredView.of(progress.retired) if progress.retired else None
            if retired is not None:
                record.update(fields_of(retired))
            result = RetireResult(
                live=name_of(new_state.live), generation=new_state.generation,
                retired=name_of(new_state.live.other if new_state.live else None),
                connections_cut=0, drained=True, colours=colours_of(new_state))
            if retired is None:
                return result
            return amended(result, colour=retired.colour, release=retired.release,
                           connections_cut=retired.connections_cut, drained=retired.drained,
                           cut_by_host=retired.cut_by_host)

        return recorded(session, record, run, pre="pre_retire", post="post_retire",
                        last=True)


def retire_idle(session: Session, state: State, *, drain_timeout: float
            ) -> tuple[State, Retired | None]:
    """The generation stays: it numbers flips, and the balancer file's header carries it."""
    progress = Retiring(state)
    execute(Plan(f"retire {state.live.other if state.live else 'nothing'}",
                 tuple(retire_steps(session, progress, drain_timeout=drain_timeout))))
    return progress.state, progress.retired


def flip_to(session: Session, state: State, current: dict[str, str | None], target: Colour,
             *, operation: str, options: Options, guard: Callable[[], None] | None = None,
             before: list[Step] | None = None,
             adjust: Callable[[State], State] | None = None,
             note: dict[str, Any] | None = None, last: bool = False) -> Moved | DryRun:
    inventory, reporter = session.inventory, session.reporter
    if not options.dry_run:
        import_ahead(inventory)
    plan = build_flip_plan(inventory, state=state, target=target, current=current)
    progress = Progress(state, release=state.colour(target).release, flip=plan)
    specs = instance_specs(inventory, target)

    probed: dict[str, HealthOutcome] = {}

    def require_running() -> None:
        progress.state = session.state or progress.state  # a restart wrote ahead
        progress.release, found = check_running(
            session, specs, target, release=progress.state.colour(target).release,
            operation=operation)
        probed.update(found)

    def quick_check() -> None:
        reporter.phase(f"quick health check of {len(specs)} {target} instance(s)")
        check_instances(inventory, session.connections, specs, reporter=reporter, quick=True,
                        release_of={s.host.name: progress.release for s in specs},
                        probed=probed)

    steps = [
        *(before or []),
        Step(f"check that every {target} instance runs, with its pointer at the release the "
             "state records", require_running),
        Step(f"quick health check of every {target} instance", quick_check),
        *flip_steps(session, progress, plan, adjust=adjust)]
    if guard is not None:  # refuses before the first step
        steps[0] = replace(steps[0], guard=guard)
    flip_plan = Plan(f"{operation}: flip {state.live or 'nothing'} → {target}", tuple(steps))
    if options.dry_run:
        return dry_run_of(enveloped(session, flip_plan, post=(
            "post_rollback",) if operation == "rollback" else (
            "on_abort",) if operation == "canary abort" else ()).describe())
    record = {"operation": operation, "from": name_of(state.live), "to": target.value,
              "release": state.colour(target).release, **(note or {})}

    def run() -> Moved:
        execute(flip_plan)
        return summary_of(progress.state, plan, release=progress.release)

    return recorded(session, record, run,
                    post="post_rollback" if operation == "rollback" else None, last=last)


class Running(NamedTuple):
    release: str | None  # the release the flip serves
    # quick health checks run with the facts (`health.via: host`), by host: what the quick
    # check before the flip reads instead of asking again
    probed: dict[str, HealthOutcome]


def check_running(session: Session, specs: list[InstanceSpec], target: Colour, *,
                  release: str | None, operation: str) -> Running:
    """Every instance of `target` runs, and its pointer names `release`: the flip serves exactly
    the release the output and the state name. `switch`, which reconciles, adopts the release
    the pointers agree on when it differs from the recorded one; `rollback` refuses. Where
    health checks run on the host, each host's quick check runs in the same command."""
    inventory = session.inventory
    if inventory.app is None:
        return Running(release, {})
    stack = AppStack(inventory, inventory.app)

    def inspect(spec: InstanceSpec) -> tuple[bool, str | None, HealthOutcome | None]:
        transport = session.connections[spec.host.name]
        check = host_check(inventory, spec, release=release, retries=quick_retries(inventory))
        running, pointer, output = stack.running_release(
            transport, spec, release, then=check.command if check else None,
            once=check.once if check else None,
            timeout=inventory.ssh.command_timeout + check.seconds if check else None)
        return running, pointer, (host_check_outcome(inventory, spec, output, release=release,
                                                     retries=quick_retries(inventory))
                                  if check and running else None)

    found = fan_out(specs, inspect, step="status", name=lambda s: s.host.name,
                    parallelism=inventory.ssh.parallelism)
    results = [(running, pointer) for running, pointer, _ in found]
    probed = {spec.host.name: outcome for spec, (_, _, outcome) in zip(specs, found, strict=True)
              if outcome is not None}
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
        return Running(release, probed)
    if not rollback and len(pointers) == 1 and None not in pointers:
        adopted = pointers.pop()
        session.reporter.warn(f"{target} runs release {adopted} on every host, not {release} "
                              f"as recorded: {operation} records {adopted}")
        return Running(adopted, {})  # checked against the recorded release: check again
    elsewhere = [f"{s.host.name} points {target} at {pointer or 'nothing'}"
                 for s, (_, pointer) in zip(specs, results, strict=True) if pointer != release]
    raise RollbackImpossible(
        f"{target} does not run release {release}, the one the state records: "
        f"{'; '.join(elsewhere)}.",
        hint=f"It was changed outside the recorded state (by hand, or by an operation that was "
             f"cut short). `bluegreen status` shows what runs where; deploy the release you want "
             f"to {target}.",
    )


def flip_steps(session: Session, progress: Progress, planned: FlipPlan, *,
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
