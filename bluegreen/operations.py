"""The operations that move traffic — deploy, switch, rollback — executed step by step from their
pure plans, inside a session (connections + lock), always ending in a history record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bluegreen import cancel
from bluegreen.app import AppStack, InstanceSpec, instance_specs
from bluegreen.errors import (
    BluegreenError,
    HealthCheckFailed,
    Interrupted,
    InventoryError,
    RollbackImpossible,
    UsageError,
    VerifyFailed,
)
from bluegreen.fanout import fan_out
from bluegreen.flip import Flipper
from bluegreen.instances import check_instances, verify
from bluegreen.inventory import Inventory
from bluegreen.model import Colour
from bluegreen.output import Reporter
from bluegreen.plan import DeployPlan, FlipPlan, build_deploy_plan, build_flip_plan, describe_flip
from bluegreen.release import Artifact, package, validate_release_id
from bluegreen.retire import retire_idle
from bluegreen.session import Session
from bluegreen.state import State, actor


@dataclass(frozen=True)
class Options:
    dry_run: bool = False
    lock_wait: float = 0.0
    retire_after: float | None = None  # deploy: retire the old colour after this drain timeout


def deploy(inventory: Inventory, reporter: Reporter, *, source: str | None, release: str | None,
           to: Colour | None, options: Options) -> dict[str, Any]:
    app = _require_app(inventory)
    artifact = _artifact(inventory, source=source, release=release)
    with Session(inventory, reporter, command=f"deploy {artifact.release}",
                 lock=not options.dry_run, lock_wait=options.lock_wait) as session:
        state, current = session.agreed_state()
        target = to or (state.live.other if state.live else Colour.BLUE)
        if target is state.live:
            raise UsageError(
                f"{target} is live; deploy never touches the live colour.",
                where="--to",
                hint=f"Deploy to {target.other} (the default), then flip with it.",
            )
        plan = build_deploy_plan(inventory, state=state, release=artifact.release, target=target,
                                 current=current)
        if options.dry_run:
            return _dry_run(plan.describe())
        record = {"operation": "deploy", "from": _name(state.live), "to": target.value,
                  "release": artifact.release}
        return _recorded(session, record, lambda: _deploy(
            session, state, plan, artifact, AppStack(inventory, app),
            retire_after=options.retire_after), pre="pre_deploy", post="post_deploy")


def _deploy(session: Session, state: State, plan: DeployPlan, artifact: Artifact,
            stack: AppStack, *, retire_after: float | None) -> dict[str, Any]:
    inventory, reporter = session.inventory, session.reporter
    target = plan.target
    reporter.phase(f"start {target} with release {artifact.release} on "
                   f"{len(plan.instances)} app host(s)")

    def stand_up(spec: InstanceSpec) -> None:
        transport = session.connections[spec.host.name]
        layout = stack.layout(spec.host)
        cancel.check_cancelled()
        if layout.is_present(transport, artifact):
            reporter.step(spec.host.name, f"release {artifact.release} already present")
        else:
            layout.upload(transport, artifact)
            reporter.step(spec.host.name, f"uploaded release {artifact.release} "
                          f"({len(artifact.data) // 1024} KiB, checksum verified)")
        cancel.check_cancelled()
        stack.stop(transport, spec, state.colour(target).release)
        layout.point(transport, target, artifact.release)
        stack.start(transport, spec, artifact.release)
        reporter.step(spec.host.name, f"{target} started on port {spec.port}", ok=True)

    specs = [steps.spec for steps in plan.instances]
    fan_out(specs, stand_up, step="start", name=lambda s: s.host.name,
            parallelism=inventory.ssh.parallelism)
    reporter.phase(f"health-check {len(specs)} {target} instance(s)")
    check_instances(inventory, session.connections, specs, reporter=reporter,
                    release_of={s.host.name: artifact.release for s in specs})
    new_state = _flip_verify_record(session, state, plan.flip, release=artifact.release)
    _prune(session, stack, specs)
    if retire_after is not None and new_state.live is not None:
        new_state = _retire(session, new_state, drain_timeout=retire_after)
    return _summary(new_state, plan.flip, release=artifact.release)


def switch(inventory: Inventory, reporter: Reporter, *, to: Colour, options: Options
           ) -> dict[str, Any]:
    """Flip to an explicit colour that is running and healthy; also reconciles drift."""
    with Session(inventory, reporter, command=f"switch --to {to}",
                 lock=not options.dry_run, lock_wait=options.lock_wait) as session:
        state, current = session.agreed_state(allow_drift=True)
        return _flip_to(session, state, current, to, operation="switch", options=options)


def rollback(inventory: Inventory, reporter: Reporter, *, options: Options,
             restart: bool = False) -> dict[str, Any]:
    """Flip back to the previous colour after a quick health check: no process is started —
    unless `restart`, which first starts a retired colour from its recorded release."""
    with Session(inventory, reporter, command="rollback", lock=not options.dry_run,
                 lock_wait=options.lock_wait) as session:
        state, current = session.agreed_state()
        if state.live is None:
            raise RollbackImpossible("nothing has been deployed yet, so there is nothing to roll "
                                     "back to.", hint="Run `bluegreen deploy` first.")
        previous = state.live.other
        colour_state = state.colour(previous)
        if colour_state.release is None:
            raise RollbackImpossible(
                f"the previous colour {previous} was never deployed.",
                hint=f"Deploy again instead (`bluegreen deploy --to {previous}`).",
            )
        if colour_state.status == "retired" and not restart:
            raise RollbackImpossible(
                f"the previous colour {previous} was retired (stopped).",
                hint=f"`bluegreen rollback --restart` starts {previous} again from release "
                     f"{colour_state.release}, health-checks it and flips.",
            )
        release = colour_state.release
        prepare = (lambda: _restart(session, previous, release)) if restart else None
        return _flip_to(session, state, current, previous, operation="rollback", options=options,
                        prepare=prepare)


def _restart(session: Session, colour: Colour, release: str) -> None:
    """Start a colour again from the release its pointer still names (prune keeps it)."""
    inventory, reporter = session.inventory, session.reporter
    stack = AppStack(inventory, _require_app(inventory))
    specs = instance_specs(inventory, colour)
    reporter.phase(f"restart {colour} from release {release}")

    def start(spec: InstanceSpec) -> None:
        transport = session.connections[spec.host.name]
        if stack.is_running(transport, spec, release):
            reporter.step(spec.host.name, f"{colour} already running")
            return
        stack.layout(spec.host).point(transport, colour, release)
        stack.start(transport, spec, release)
        reporter.step(spec.host.name, f"{colour} started on port {spec.port}", ok=True)

    fan_out(specs, start, step="restart", name=lambda s: s.host.name,
            parallelism=inventory.ssh.parallelism)
    reporter.phase(f"health-check {len(specs)} restarted {colour} instance(s)")
    check_instances(inventory, session.connections, specs, reporter=reporter,
                    release_of={s.host.name: release for s in specs})


def retire(inventory: Inventory, reporter: Reporter, *, drain_timeout: float, options: Options
           ) -> dict[str, Any]:
    """Stop the idle colour after its connections drain; it is then no rollback target."""
    _require_app(inventory)
    with Session(inventory, reporter, command="retire", lock=not options.dry_run,
                 lock_wait=options.lock_wait) as session:
        state, _ = session.agreed_state()
        if options.dry_run:
            idle = state.live.other if state.live else None
            return _dry_run([f"retire {idle or 'nothing'}: wait up to {drain_timeout:g} s for "
                             "its established connections to end, then stop it and mark it "
                             "retired"])
        record = {"operation": "retire", "from": _name(state.live), "to": _name(state.live),
                  "release": None}

        def run() -> dict[str, Any]:
            new_state = _retire(session, state, drain_timeout=drain_timeout)
            return {"live": _name(new_state.live), "generation": new_state.generation,
                    "retired": _name(new_state.live.other if new_state.live else None),
                    "colours": _colours(new_state)}

        return _recorded(session, record, run)


def _retire(session: Session, state: State, *, drain_timeout: float) -> State:
    """The generation stays: it numbers flips, and the balancer file's header carries it."""
    retired = retire_idle(session, state, drain_timeout=drain_timeout)
    if retired is not state:
        session.write_state(retired)
    return retired


def _flip_to(session: Session, state: State, current: dict[str, str | None], target: Colour,
             *, operation: str, options: Options,
             prepare: Callable[[], None] | None = None) -> dict[str, Any]:
    inventory, reporter = session.inventory, session.reporter
    plan = build_flip_plan(inventory, state=state, target=target, current=current)
    if options.dry_run:
        return _dry_run([f"{operation}: flip {state.live or 'nothing'} → {target}",
                         "1. check that every instance of the target is running and healthy",
                         *describe_flip(plan, start=2)])
    record = {"operation": operation, "from": _name(state.live), "to": target.value,
              "release": state.colour(target).release}

    def run() -> dict[str, Any]:
        if prepare is not None:
            prepare()
        specs = instance_specs(inventory, target)
        _require_running(session, specs, target, release=state.colour(target).release,
                         operation=operation)
        reporter.phase(f"quick health check of {len(specs)} {target} instance(s)")
        check_instances(inventory, session.connections, specs, reporter=reporter, quick=True,
                        release_of={s.host.name: state.colour(target).release for s in specs})
        new_state = _flip_verify_record(session, state, plan,
                                        release=state.colour(target).release)
        return _summary(new_state, plan, release=state.colour(target).release)

    return _recorded(session, record, run,
                     post="post_rollback" if operation == "rollback" else None)


def _require_running(session: Session, specs: list[InstanceSpec], target: Colour, *,
                     release: str | None, operation: str) -> None:
    if session.inventory.app is None:
        return
    stack = AppStack(session.inventory, session.inventory.app)

    def running(spec: InstanceSpec) -> bool:
        return stack.is_running(session.connections[spec.host.name], spec, release)

    results = fan_out(specs, running, step="status", name=lambda s: s.host.name,
                      parallelism=session.inventory.ssh.parallelism)
    stopped = [s.host.name for s, ok in zip(specs, results, strict=True) if not ok]
    if stopped:
        error_class = RollbackImpossible if operation == "rollback" else HealthCheckFailed
        raise error_class(
            f"{target} is not running on {', '.join(stopped)}; {operation} starts no process.",
            hint=f"Deploy to {target} instead (`bluegreen deploy --to {target}`).",
        )


def _flip_verify_record(session: Session, state: State, plan: FlipPlan, *, release: str | None
                        ) -> State:
    """Flip every balancer, verify through the public URL(s) (flip back on failure), then write
    the new state. Ctrl-C is held until this is done so traffic and state stay consistent."""
    inventory, reporter = session.inventory, session.reporter
    flipper = Flipper(inventory, session.connections, reporter, sites=session.sites)
    session.hooks.run("pre_flip")
    with cancel.deferred_interrupts():
        flipper.flip(plan)
        try:
            verify(inventory, release=release, colour=plan.target.value, reporter=reporter)
        except VerifyFailed:
            flipper.undo(plan)
            raise
        new_state = state.after_flip(plan.target, release=release, actor=actor(),
                                     managed=plan.configs)
        session.write_state(new_state)
    reporter.step(inventory.primary_balancer.name,
                  f"{plan.target} is live (generation {new_state.generation})", ok=True)
    session.hooks.run("post_flip")
    return new_state


def _recorded(session: Session, record: dict[str, Any], body: Callable[[], dict[str, Any]],
              *, pre: str | None = None, post: str | None = None) -> dict[str, Any]:
    """Run an operation's body between its hooks, and record it in the history however it
    ends (on_failure hooks run for failures)."""
    hooks = session.hooks
    hooks.describe(release=record.get("release"), **{"from": record.get("from"),
                                                      "to": record.get("to")})
    try:
        if pre:
            hooks.run(pre)
        result = body()
    except KeyboardInterrupt:
        cancel.CANCELLED.set()
        session.record({**record, "result": "interrupted", "hooks": hooks.outcomes,
                        "error": {"code": Interrupted.code, "message": "interrupted"}})
        raise
    except BluegreenError as error:
        hooks.describe(result="failed", error=error.message)
        hooks.run("on_failure")
        session.record({**record, "result": "failed", "hooks": hooks.outcomes,
                        "error": {"code": error.code, "exit_code": error.exit_code,
                                  "message": error.message, "where": error.where}})
        raise
    hooks.describe(result="ok", error=None)
    if post:
        hooks.run(post)
    session.record({**record, "result": "ok", "generation": result["generation"],
                    "hooks": hooks.outcomes})
    return result


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


def _artifact(inventory: Inventory, *, source: str | None, release: str | None) -> Artifact:
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
    return package(path, release=validate_release_id(release) if release else None)


def _require_app(inventory: Inventory) -> Any:
    if inventory.app is None:
        raise InventoryError("deploy needs an `app:` section (root, start, stop).",
                             where=f"{inventory.path}: app", hint="See inventories/example.yml.")
    return inventory.app


def _summary(state: State, plan: FlipPlan, *, release: str | None) -> dict[str, Any]:
    return {"live": state.live.value if state.live else None, "previous": _name(plan.previous),
            "release": release, "generation": state.generation, "colours": _colours(state)}


def _colours(state: State) -> dict[str, dict[str, str | None]]:
    return {name: {"release": c.release, "status": c.status} for name, c in state.colours.items()}


def _dry_run(lines: list[str]) -> dict[str, Any]:
    return {"dry_run": True, "plan": lines}


def _name(colour: Colour | None) -> str | None:
    return colour.value if colour else None
