from __future__ import annotations

import pytest

from bluegreen import cancel
from bluegreen.errors import Interrupted
from bluegreen.waiting import poll_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_polls_until_done_and_returns_the_value_that_was() -> None:
    clock, answers = FakeClock(), iter([3, 2, 1, 0])
    value = poll_until(lambda: next(answers), lambda n: n == 0, timeout=10, interval=0.5,
                       clock=clock, sleep=clock.sleep)
    assert value == 0 and clock.pauses == [0.5, 0.5, 0.5]


def test_gives_up_at_the_deadline_with_the_last_value_and_a_last_look() -> None:
    clock, probes = FakeClock(), []
    value = poll_until(lambda: probes.append(clock.now) or False, timeout=1.0, interval=0.4,
                       clock=clock, sleep=clock.sleep)
    assert value is False
    assert probes == pytest.approx([0.0, 0.4, 0.8, 1.0])  # the last pause is cut to the deadline


def test_an_interruptible_wait_ends_once_the_operation_is_cancelled() -> None:
    cancel.CANCELLED.set()
    try:
        with pytest.raises(Interrupted):
            poll_until(lambda: False, timeout=30, interval=1)
        # one that must finish (an activation under way) runs on
        assert poll_until(lambda: False, timeout=0.05, interval=0.01,
                          interruptible=False) is False
    finally:
        cancel.CANCELLED.clear()
