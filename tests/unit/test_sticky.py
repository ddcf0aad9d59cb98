"""canary.sticky: what the shipped templates render for testers, where testers go at each flip
(and so when HAProxy's runtime API must give way to a reload), the inventory's checks, and the
tester verification that must hold for every request."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest

from bluegreen.errors import InventoryError
from bluegreen.health import HealthChecker
from bluegreen.inventory import HealthSettings, validate_inventory
from bluegreen.model import Colour
from bluegreen.plan import build_flip_plan
from bluegreen.state import Canary, State
from tests.unit.test_plan_and_render import INVENTORY

CANARY = {"blue": 90, "green": 10}


def inventory(kind: str = "nginx", **sticky: str) -> Any:
    data = copy.deepcopy(INVENTORY)
    data["balancer"]["kind"] = kind
    data["canary"] = {"sticky": sticky or {"header": "X-Canary", "value": "1"}}
    return validate_inventory(data, path=Path("inv.yml"), environ={})


def canary_plan(kind: str = "nginx", **sticky: str) -> Any:
    """Blue live, a 10 % canary of green starting."""
    return build_flip_plan(inventory(kind, **sticky),
                           state=State(service="shop", generation=4, live=Colour.BLUE),
                           target=Colour.BLUE, current={}, weights=CANARY)


def test_nginx_sends_testers_to_the_canary_through_a_map_and_an_upstream_of_its_own() -> None:
    text = canary_plan().configs["lb1"]
    testers = text.split("upstream shop_testers {")[1].split("}")[0]
    assert "10.0.0.11:9502" in testers and "10.0.0.12:9502" in testers and ":9501" not in testers
    assert ("map $http_x_canary $bluegreen_shop {\n    default shop;\n"
            '    "\\1" shop_testers;\n}') in text  # "\" keeps a value from being a regex
    cookie = canary_plan(cookie="canary", value="me").configs["lb1"]
    assert "map $cookie_canary $bluegreen_shop {" in cookie and '"\\me" shop_testers;' in cookie


def test_haproxy_sends_testers_to_the_canary_servers_by_use_server_rules() -> None:
    text = canary_plan("haproxy", cookie="canary", value="me").configs["lb1"]
    assert "    acl bluegreen_tester req.cook(canary) -i -m str -- me\n" in text
    assert ("    use-server green-app1 if bluegreen_tester { rand(2) -m int 0 }\n"
            "    use-server green-app2 if bluegreen_tester\n") in text


GREEN = ("green-app1", "green-app2")
BLUE = ("blue-app1", "blue-app2")


def test_testers_follow_the_canary_and_a_change_of_their_servers_is_known() -> None:
    plan = canary_plan()
    assert (plan.upstream.sticky.colour, plan.upstream.sticky.previous) == (
        Colour.GREEN, BLUE)  # the canary starts: testers move
    assert plan.upstream.testers_moved
    at_canary = State(service="shop", generation=5, live=Colour.BLUE, weights=CANARY,
                      canary=Canary(colour="green", release="v2", weight=10, since="t",
                                    by="me", steps=(10, 50)))
    step = build_flip_plan(inventory(), state=at_canary, target=Colour.BLUE, current={},
                           weights={"blue": 50, "green": 50})
    assert (step.upstream.sticky.previous, step.upstream.testers_moved) == (GREEN, False)
    full = build_flip_plan(inventory(), state=at_canary, target=Colour.GREEN, current={})
    assert (full.upstream.sticky.previous, full.upstream.testers_moved) == (GREEN, False)
    abort = build_flip_plan(inventory(), state=at_canary, target=Colour.BLUE, current={})
    assert (abort.upstream.sticky.previous, abort.upstream.testers_moved) == (GREEN, True)
    first = build_flip_plan(inventory(), state=State(service="shop"), target=Colour.BLUE,
                            current={})
    assert (first.upstream.sticky.previous, first.upstream.testers_moved) == (None, True)
    # a host held out of traffic (a worker reload) is no tester's server any more
    live = State(service="shop", generation=5, live=Colour.BLUE)
    held = build_flip_plan(inventory(), state=live, target=Colour.BLUE, current={},
                           out=("app1",))
    assert held.upstream.sticky.previous == BLUE and held.upstream.testers_moved


@pytest.mark.parametrize(("sticky", "says"), [
    ({"value": "1"}, "either `header` or `cookie`"),
    ({"header": "X-Canary", "cookie": "c", "value": "1"}, "either `header` or `cookie`"),
    ({"header": "X Canary", "value": "1"}, "canary.sticky.header"),
    ({"cookie": "can-ary", "value": "1"}, "canary.sticky.cookie"),
    ({"header": "X-Canary", "value": "a b"}, "canary.sticky.value"),
    ({"header": "X-Canary", "value": '1";'}, "canary.sticky.value"),
    ({"header": "X-Canary", "value": "~."}, "canary.sticky.value"),  # an nginx regex
    ({"header": "X-Canary", "value": "-f"}, "canary.sticky.value"),  # an HAProxy flag
])
def test_a_sticky_marker_that_could_break_the_balancer_config_is_refused(
        sticky: dict[str, str], says: str) -> None:
    data = copy.deepcopy(INVENTORY)
    data["canary"] = {"sticky": sticky}
    with pytest.raises(InventoryError) as caught:
        validate_inventory(data, path=Path("inv.yml"), environ={})
    assert says in f"{caught.value.where} {caught.value.message}"


def test_a_tester_check_holds_for_every_request_not_one_lucky_one() -> None:
    answers = iter(["v1", "v2", "v2", "v1", "v2"] + ["v2"] * 20)
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-Canary"))
        return httpx.Response(200, text=f"release {next(answers)}")

    checker = HealthChecker(httpx.Client(transport=httpx.MockTransport(answer)),
                            sleep=lambda _: None)
    spec = HealthSettings(path="/", retries=5, successes=1)
    outcome = checker.wait_then_hold("http://lb/", spec, hold=3, expect_body="release v2",
                                     headers={"X-Canary": "1"})
    assert not outcome.healthy and outcome.attempts == 4  # v1, v2, v2, then v1: refused
    assert seen == ["1"] * 4
    assert checker.wait_then_hold("http://lb/", spec, hold=3, expect_body="release v2").healthy
