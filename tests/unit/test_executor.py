"""The executor's rules, on plans of recording steps: guards before actions, undo of what was
done (latest first) when a later step fails, nothing undone before a commit, and a signal during
steps that hold interrupts let through only once they have all run."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator

import pytest

from bluegreen import cancel
from bluegreen.errors import BalancerError, DriftError, HealthCheckFailed, Interrupted
from bluegreen.executor import Plan, Step, execute


@pytest.fixture(autouse=True)
def clean_cancel() -> Iterator[None]:
    handlers = {sig: signal.getsignal(sig) for sig in cancel.SIGNALS}
    cancel.CANCELLED.clear()
    yield
    cancel.CANCELLED.clear()
    for sig, handler in handlers.items():  # a held signal leaves later ones ignored
        signal.signal(sig, handler)


def recording(done: list[str]) -> Callable[..., Step]:
    def step(name: str, *, fails: bool = False, undo: bool = True,
             then: Callable[[], None] | None = None, **options: object) -> Step:
        def action() -> None:
            done.append(name)
            if then is not None:
                then()
            if fails:
                raise HealthCheckFailed(f"{name} failed")

        return Step(name, action, undo=(lambda: done.append(f"undo {name}")) if undo else None,
                    **options)  # type: ignore[arg-type]

    return step


def test_steps_run_in_order_and_describe_numbers_them_with_their_details() -> None:
    done: list[str] = []
    step = recording(done)
    plan = Plan("heading", (step("a", details=("cmd 1", "cmd 2")), step("b")))
    execute(plan)
    assert done == ["a", "b"]
    assert plan.describe() == ["heading", "1. a", "   cmd 1", "   cmd 2", "2. b"]


def test_a_failure_undoes_what_was_done_latest_first_and_stands() -> None:
    done: list[str] = []
    step = recording(done)
    with pytest.raises(HealthCheckFailed):
        execute(Plan("h", (step("a"), step("b", undo=False), step("c"), step("d", fails=True),
                           step("e"))))
    assert done == ["a", "b", "c", "d", "undo c", "undo a"]  # d failed: it has nothing to undo


def test_a_guard_refuses_its_step_before_it_runs() -> None:
    done: list[str] = []
    step = recording(done)

    def refuse() -> None:
        raise DriftError("the state changed")

    with pytest.raises(DriftError):
        execute(Plan("h", (step("a"), step("flip", guard=refuse))))
    assert done == ["a", "undo a"]


def test_nothing_before_a_commit_is_undone() -> None:
    done: list[str] = []
    step = recording(done)
    with pytest.raises(HealthCheckFailed):
        execute(Plan("h", (step("flip"), step("record", commits=True), step("c"),
                           step("prune", fails=True))))
    assert done == ["flip", "record", "c", "prune", "undo c"]


def test_a_signal_during_held_steps_lets_them_all_run_then_undoes_them() -> None:
    done: list[str] = []
    step = recording(done)
    with pytest.raises(KeyboardInterrupt):
        execute(Plan("h", (
            step("flip", holds_interrupts=True,
                 then=lambda: os.kill(os.getpid(), signal.SIGINT)),
            step("verify", holds_interrupts=True),
            step("after"))))
    assert done == ["flip", "verify", "undo verify", "undo flip"]
    assert cancel.CANCELLED.is_set()  # the waits of the steps still running end early


def test_a_held_step_can_cut_itself_short_and_the_group_is_undone_at_once() -> None:
    done: list[str] = []
    step = recording(done)

    def verify() -> None:
        cancel.check_cancelled()  # what the verification does after each request

    with pytest.raises(Interrupted):
        execute(Plan("h", (
            step("flip", holds_interrupts=True,
                 then=lambda: os.kill(os.getpid(), signal.SIGINT)),
            step("verify", holds_interrupts=True, then=verify),
            step("record", holds_interrupts=True, commits=True))))
    assert done == ["flip", "verify", "undo flip"]  # never recorded


def test_every_undo_runs_even_when_one_fails_and_that_failure_is_raised() -> None:
    done: list[str] = []
    step = recording(done)

    def failing_undo() -> None:
        done.append("undo b (fails)")
        raise BalancerError("flipping back failed on lb2")

    with pytest.raises(BalancerError) as caught:
        execute(Plan("h", (step("a"), Step("b", lambda: done.append("b"), undo=failing_undo),
                           step("c", fails=True))))
    assert done == ["a", "b", "c", "undo b (fails)", "undo a"]
    assert isinstance(caught.value.__context__, HealthCheckFailed)  # what made it undo


def test_a_dry_run_describes_the_hooks_run_around_the_steps() -> None:
    from types import SimpleNamespace

    from bluegreen.executor import enveloped
    from bluegreen.inventory.model import Hook, Hooks

    hooks = Hooks(pre_deploy=[Hook(run="make migrate", on="app")],
                  post_deploy=[Hook(run="notify")], on_failure=[Hook(run="page me")])
    session = SimpleNamespace(inventory=SimpleNamespace(hooks=hooks))
    plan = Plan("deploy", (Step("stand up", lambda: None), Step("flip", lambda: None)))
    assert enveloped(session, plan, pre="pre_deploy",  # type: ignore[arg-type]
                     post=("post_deploy", "post_retire")).describe() == [
        "deploy",
        "before step 1: run the pre_deploy hook(s): `make migrate` on app",
        "1. stand up", "2. flip",
        "after the last step: run the post_deploy hook(s): `notify` on local",
        "if a step fails: run the on_failure hook(s): `page me` on local"]
    assert enveloped(SimpleNamespace(inventory=SimpleNamespace(  # type: ignore[arg-type]
        hooks=Hooks())), plan, pre="pre_deploy").describe() == ["deploy", "1. stand up",
                                                                "2. flip"]
