"""The one executor. An operation is a `Plan`: the steps it takes, each saying what it does, with
the guard checked right before it, its action and its undo. `execute` runs a plan in order; steps
that hold interrupts run together under held signals (a flip in progress finishes); when a step
fails, the undo of every step done since the last committing step runs, latest first. `--dry-run`
prints the same plan (`Plan.describe`), so what it shows is what runs.

`recorded` puts an operation between its hooks and writes its history however it ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from bluegreen import cancel
from bluegreen.errors import BluegreenError, Interrupted
from bluegreen.hooks import HookRunner
from bluegreen.session import Session


@dataclass(frozen=True)
class Step:
    says: str  # one line: what the step does, as --dry-run prints it
    action: Callable[[], None]
    details: tuple[str, ...] = ()  # printed under it: the commands it runs, the diffs it makes
    guard: Callable[[], None] | None = None  # raises to refuse the step, right before it runs
    undo: Callable[[], None] | None = None  # puts back what the action changed
    holds_interrupts: bool = False  # with its neighbours that hold them too: one held block
    commits: bool = False  # once done, the steps before it are never undone


@dataclass(frozen=True)
class Plan:
    heading: str
    steps: tuple[Step, ...]
    # what runs around the steps (`recorded`'s hooks), as --dry-run prints it
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        lines = [self.heading, *(f"before step 1: {line}" for line in self.before)]
        for number, step in enumerate(self.steps, start=1):
            lines.append(f"{number}. {step.says}")
            lines += [f"   {detail}" for detail in step.details]
        return lines + list(self.after)


def enveloped(session: Session, plan: Plan, *, pre: str | None = None,
              post: tuple[str, ...] = ()) -> Plan:
    """`plan` with the hooks run around it (`pre` before its steps, the `post` points after
    them, `on_failure` if one fails) described, for --dry-run."""
    def said(point: str | None) -> list[str]:
        hooks = getattr(session.inventory.hooks, point) if point else None
        return [_hooks_say(point, hooks)] if point and hooks else []

    return replace(plan, before=tuple(said(pre)), after=(
        *(f"after the last step: {line}" for point in post for line in said(point)),
        *(f"if a step fails: {line}" for line in said("on_failure"))))


def _hooks_say(point: str, hooks: Any) -> str:
    return f"run the {point} hook(s): {', '.join(f'`{h.run}` on {h.on}' for h in hooks)}"


def execute(plan: Plan) -> None:
    """Run every step of `plan`: its guard, then its action. A failure anywhere — an interrupt
    included, and one held until the end of a step group — undoes the steps done since the last
    commit, latest first, then stands. A failure inside steps that hold interrupts is undone
    before the block lets any signal through."""
    done: list[Step] = []
    try:
        for group in _groups(plan.steps):
            if group[0].holds_interrupts:
                with cancel.deferred_interrupts():
                    _run(group, done)
            else:
                _run(group, done)
    except BaseException:
        _undo(done)  # a signal let through at the end of a held group
        raise


def _run(steps: list[Step], done: list[Step]) -> None:
    try:
        for step in steps:
            if step.guard is not None:
                step.guard()
            step.action()
            if step.commits:
                done.clear()
            else:
                done.append(step)
    except BaseException:
        _undo(done)
        raise


def _undo(done: list[Step]) -> None:
    """Every undo of `done`, latest first, under held signals; each runs even when one before
    it failed, and the first failure is then raised (the step's own error as its context)."""
    failures: list[BaseException] = []
    with cancel.deferred_interrupts(then_raise=False):
        for step in reversed(done):
            if step.undo is None:
                continue
            try:
                step.undo()
            except BluegreenError as error:
                failures.append(error)
    done.clear()
    if failures:
        raise failures[0]


def _groups(steps: tuple[Step, ...]) -> Iterator[list[Step]]:
    """Consecutive steps that hold interrupts together, and the others one by one."""
    group: list[Step] = []
    for step in steps:
        if group and not (step.holds_interrupts and group[-1].holds_interrupts):
            yield group
            group = []
        group.append(step)
    if group:
        yield group


def hook_steps(session: Session, point: str) -> list[Step]:
    """The step running the inventory's hooks at `point`; none when it has no hooks there."""
    hooks = getattr(session.inventory.hooks, point)
    if not hooks:
        return []
    return [Step(_hooks_say(point, hooks), lambda: session.hooks.run(point))]


class _Outcome(Protocol):
    @property
    def generation(self) -> int: ...


Outcome = TypeVar("Outcome", bound=_Outcome)


def recorded(session: Session, record: dict[str, Any], body: Callable[[], Outcome],
             *, pre: str | None = None, post: str | None = None, last: bool = False
             ) -> Outcome:
    """Run an operation's body between its hooks, and record it in the history however it
    ends: a colour it was changing is marked failed, on_failure hooks run for failures, and an
    interrupt is reported with what it left (flipped, and to which generation, or not). Records
    are written under held signals — after the outcome's hooks, so their outcomes are in it,
    except after an interrupt, when the record comes first — so a Ctrl-C can cut a hook short
    but never a record. `last`: the caller does nothing more under the lock, so a record that
    ends the operation also releases it (one round trip for both)."""
    hooks = session.hooks
    hooks.describe(release=record.get("release"), **{"from": record.get("from"),
                                                      "to": record.get("to")})
    what = " ".join(str(p) for p in (record["operation"], record.get("release")) if p)
    try:
        if pre:
            hooks.run(pre)
        result = body()
    except (KeyboardInterrupt, Interrupted) as caught:
        cancel.CANCELLED.set()
        with cancel.deferred_interrupts(then_raise=False):
            hooks.stop_running()
            interrupted = _interrupted(session, caught)
            session.fail_change(f"{what} was interrupted")
            flipped = session.flipped
            session.record({**record, "result": "interrupted", "hooks": hooks.outcomes,
                            "flipped": flipped is not None,
                            "generation": flipped.generation if flipped else None,
                            "error": {"code": Interrupted.code, "exit_code": 130,
                                      "message": interrupted.message}})
        if flipped is not None and post:
            hooks.describe(result="interrupted", error=interrupted.message)
            run_hooks_after(hooks, post)
        raise interrupted from None
    except BluegreenError as error:
        with cancel.deferred_interrupts(then_raise=False):
            session.fail_change(f"{what} failed ({error.code})")
        hooks.describe(result="failed", error=error.message)
        run_hooks_after(hooks, "on_failure")
        with cancel.deferred_interrupts(then_raise=False):
            session.record({**record, "result": "failed", "hooks": hooks.outcomes,
                            "error": {"code": error.code, "exit_code": error.exit_code,
                                      "message": error.message, "where": error.where}},
                           last=last)
        raise
    hooks.describe(result="ok", error=None)
    completed = run_hooks_after(hooks, post) if post else True
    with cancel.deferred_interrupts(then_raise=False):
        session.record({**record, "result": "ok", "generation": result.generation,
                        "hooks": hooks.outcomes,
                        **({} if completed else {"interrupted": f"during the {post} hooks"})},
                       last=last)
    if not completed:
        raise _interrupted(session, KeyboardInterrupt()) from None
    return result


def run_hooks_after(hooks: HookRunner, point: str) -> bool:
    """Run the hooks of a point that comes after the operation's records; a Ctrl-C stops them
    (and what they started). False when it did."""
    try:
        hooks.run(point)
    except KeyboardInterrupt:
        with cancel.deferred_interrupts(then_raise=False):
            hooks.stop_running()
        return False
    return True


def _interrupted(session: Session, caught: BaseException) -> Interrupted:
    """What an interrupt left: the flip done (and recorded), or live traffic as it was — plus
    whatever the interrupted step itself had to say (e.g. a restore that failed)."""
    said = f" {caught.message}" if isinstance(caught, Interrupted) \
        and caught.message not in ("cancelled", "interrupted") else ""
    flipped = session.flipped
    if flipped is not None and flipped.live is not None:
        return Interrupted(
            f"interrupted after the flip: {flipped.live} is live with release "
            f"{flipped.colour(flipped.live).release} (generation {flipped.generation}), "
            f"recorded in the state and history; the steps after the flip did not run.{said}",
            hint=caught.hint if isinstance(caught, Interrupted) else None)
    changed = (f" {session.changing} was being changed and is marked failed, so rollback "
               "will not flip to it." if session.changing else "")
    traffic = (f"{', '.join(session.held_out)} stay out of traffic (recorded in the state); the "
               "rest of live traffic was left as it was" if session.held_out
               else "live traffic was left as it was")
    return Interrupted(f"interrupted; {traffic}.{changed}{said}",
                       hint=caught.hint if isinstance(caught, Interrupted) else None)
