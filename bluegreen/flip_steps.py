"""Every change of traffic as executor steps, built in one place: activate the new upstream on
every balancer (undo: every balancer gets its previous file and traffic back), optionally check
it through the public URL(s), then record it — the step that commits. A deploy's or rollback's
flip, a canary's step and a reload's hold-outs differ only in what they activate, check and
record."""

from __future__ import annotations

from collections.abc import Callable

from bluegreen.executor import Step
from bluegreen.flip import Flipper
from bluegreen.plan import FlipPlan
from bluegreen.session import Session

FLIP_SAYS = ("on {balancers} balancer(s): check that the state is unchanged and the lock "
             "still held, stage the managed file and validate it (restored byte for byte if "
             "invalid); then activate on every balancer at once — a confirmed reload, or the "
             "runtime API — (generation {generation})")
# a reload's hold-out: the live colour stays live, so there is nothing new to verify publicly
HOLD_OUT_SAYS = ("check that the state is unchanged and the lock still held, stage the "
                 "managed file and validate it, then activate on every balancer at once")


def activation_steps(session: Session, plan: Callable[[], FlipPlan], *, says: str,
                     record: Callable[[FlipPlan], None], records: str,
                     check: tuple[str, Callable[[], None]] | None = None,
                     details: tuple[str, ...] = ()) -> list[Step]:
    """`plan` is called when the activation runs (it may depend on what the steps before it
    did); `record` gets the plan that was activated. Every step holds interrupts, so a Ctrl-C
    lets the activation finish and is then handled by undoing it, unless it was recorded."""
    flipper = Flipper(session.inventory, session.connections, session.reporter,
                      sites=session.sites)
    activated: list[FlipPlan] = []

    def activate() -> None:
        activated[:] = [plan()]
        flipper.flip(activated[0], guards=session.flip_guards())

    def put_back() -> None:
        if activated:
            flipper.undo(activated[0])

    steps = [Step(says, activate, details=details, undo=put_back, holds_interrupts=True)]
    if check is not None:
        steps.append(Step(check[0], check[1], holds_interrupts=True))
    steps.append(Step(records, lambda: record(activated[0]), holds_interrupts=True,
                      commits=True))
    return steps
