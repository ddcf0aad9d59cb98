"""Canary steps: what `--canary` accepts, and where each promote goes."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from bluegreen.errors import UsageError
from bluegreen.model import Colour
from bluegreen.operations import canary_steps
from bluegreen.state import Canary, State
from tests.conftest import run_cli


@pytest.mark.parametrize(("text", "steps"), [("10", (10,)), ("5,25,50", (5, 25, 50)),
                                             ("1,99", (1, 99))])
def test_canary_steps_are_rising_percentages(text: str, steps: tuple[int, ...]) -> None:
    assert canary_steps(text) == steps


@pytest.mark.parametrize("text", ["", "0", "100", "50,25", "5,5", "5,,25", "ten", "5;25"])
def test_other_canary_steps_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        canary_steps(text)
    assert caught.value.exit_code == 2 and caught.value.where == "--canary"


def test_a_bad_canary_is_refused_before_the_inventory_is_read() -> None:
    result = run_cli("-i", "/nonexistent/inventory.yml", "deploy", "--canary", "50,25")
    assert result.returncode == 2 and "--canary" in result.stderr
    assert "inventory" not in result.stderr.split("error")[1].split(":")[0]


def test_each_promote_moves_to_the_next_step_then_to_all() -> None:
    canary = Canary(colour="green", release="v2", weight=5, since="t", by="me", steps=(5, 25, 50))
    assert (canary.next_weight, canary.step) == (25, "1/3")
    at_50 = Canary(**{**asdict(canary), "weight": 50})
    assert (at_50.next_weight, at_50.step) == (None, "3/3")  # next: all the traffic
    single = Canary(colour="green", release="v2", weight=25, since="t", by="me")
    assert single.next_weight is None and "step" not in single.describe()
    assert "step 1/3 of 5/25/50%" in canary.describe()


def test_a_canary_with_steps_round_trips_and_older_states_read_without_them() -> None:
    canary = Canary(colour="green", release="v2", weight=25, since="t", by="me",
                    steps=(5, 25, 50))
    state = State(service="shop", generation=3, live=Colour.BLUE, canary=canary)
    again = State.from_json(state.to_json(), service="shop")
    assert again.canary == canary and again.canary.steps == (5, 25, 50)
    older = json.loads(state.to_json())
    del older["canary"]["steps"]
    read = State.from_json(json.dumps(older), service="shop")
    assert read.canary is not None and read.canary.steps == () and read.canary.next_weight is None
