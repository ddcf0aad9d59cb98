"""Canary steps: what `--canary` accepts, and where each promote goes."""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import asdict
from typing import Any

import msgspec
import pytest

from bluegreen.balancer.base import BalancerTraffic, ServerTraffic
from bluegreen.canary_analysis import baseline_of, judge
from bluegreen.errors import CanaryHeld, UsageError
from bluegreen.inventory import CanarySettings, CanaryStep, Inventory
from bluegreen.model import Colour
from bluegreen.operations.canary import canary_schedule, canary_steps
from bluegreen.operations.shared import Options
from bluegreen.results import CanaryView, Moved
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


def inventory_with_steps(*steps: CanaryStep) -> Inventory:
    return msgspec.convert({"service": "shop", "hosts": {"app": ["app1"], "balancer": ["lb1"]},
                            "canary": {"steps": [msgspec.to_builtins(s) for s in steps]}},
                           Inventory)


def test_the_inventory_steps_make_every_deploy_a_canary_unless_told_otherwise() -> None:
    stepped = inventory_with_steps(CanaryStep(weight=10, pause=60), CanaryStep(weight=50))
    plain = inventory_with_steps()
    assert canary_schedule(stepped, Options()) == ((10, 50), (60.0, None))
    assert canary_schedule(stepped, Options(step_pause=5)) == ((10, 50), (5.0, 5.0))
    assert canary_schedule(stepped, Options(canary=(30,))) == ((30,), (None,))
    assert canary_schedule(stepped, Options(no_canary=True)) is None
    assert canary_schedule(plain, Options()) is None
    assert canary_schedule(plain, Options(canary=(5, 25), step_pause=9)) == ((5, 25), (9, 9))
    for refused in (Options(no_canary=True, canary=(5,)), Options(no_canary=True, step_pause=1)):
        with pytest.raises(UsageError, match="--no-canary"):
            canary_schedule(stepped, refused)
    with pytest.raises(UsageError, match=r"canary\.steps") as caught:
        canary_schedule(plain, Options(step_pause=30))
    assert caught.value.where == "--step-pause"


def test_each_step_has_its_own_pause_and_older_canaries_wait_for_promote() -> None:
    canary = Canary(colour="green", release="v2", weight=5, since="t", by="me",
                    steps=(5, 25, 50), pauses=(30.0, None, 60.0))
    assert [Canary(**{**asdict(canary), "weight": w}).pause for w in (5, 25, 50)] == [
        30.0, None, 60.0]
    again = State.from_json(State(service="shop", canary=canary).to_json(), service="shop")
    assert again.canary == canary and CanaryView.of(again.canary).pause == 30.0
    older = json.loads(State(service="shop", canary=canary).to_json())
    del older["canary"]["pauses"]
    read = State.from_json(json.dumps(older), service="shop")
    assert read.canary is not None and read.canary.pause is None


def counts(epoch: str = "100", **servers: tuple[int, int, int]) -> dict[str, BalancerTraffic]:
    return {"lb1": BalancerTraffic(epoch, {name.replace("_", "-"): ServerTraffic(*values)
                                           for name, values in servers.items()})}


def test_the_analysis_counts_the_canary_since_its_step_began() -> None:
    settings = CanarySettings(max_error_rate=1, min_requests=100)
    baseline = baseline_of(counts(green_app1=(1000, 3, 5), blue_app1=(5000, 0, 5)))
    # since the baseline: 200 canary requests, 10 of them 5xx
    verdict = judge(settings, baseline, counts(green_app1=(1200, 13, 5), blue_app1=(5800, 0, 5)),
                    canary="green", stable="blue")
    assert (verdict.requests, verdict.errors, verdict.error_rate) == (200, 10, 5.0)
    assert verdict.judged and not verdict.passed
    assert verdict.breach == "error rate 5.0% > 1%"
    assert verdict.describe().startswith("error rate 5.0% > 1%: 10 of 200 request(s)")


def test_too_few_requests_are_not_judged() -> None:
    settings = CanarySettings(max_error_rate=1, min_requests=100)
    baseline = baseline_of(counts(green_app1=(1000, 3, 5)))
    few = judge(settings, baseline, counts(green_app1=(1050, 3, 5)), canary="green",
                stable="blue")
    assert not few.judged and few.breach is None and few.requests == 50
    assert few.describe().startswith("not judged yet")


def test_a_balancer_reloaded_since_the_baseline_counts_from_its_reload() -> None:
    settings = CanarySettings(max_error_rate=1, min_requests=100)
    baseline = baseline_of(counts("100", green_app1=(1000, 0, 5)))
    # reloaded (a new worker, pid 200): 1500 requests, 300 of them 5xx, since the reload
    verdict = judge(settings, baseline, counts("200", green_app1=(1500, 300, 5)),
                    canary="green", stable="blue")
    assert (verdict.requests, verdict.errors, verdict.error_rate) == (1500, 300, 20.0)


def test_without_a_baseline_the_canary_is_not_judged() -> None:
    settings = CanarySettings(max_error_rate=1, min_requests=10)
    verdict = judge(settings, {}, counts(green_app1=(900, 400, 5)), canary="green",
                    stable="blue")  # e.g. thresholds added after the canary started
    assert not verdict.judged and verdict.breach is None and verdict.unbased == ("lb1",)
    assert "were not read when the step began" in verdict.describe()


def test_a_slow_canary_breaches_the_latency_ratio() -> None:
    settings = CanarySettings(max_latency_ratio=2, min_requests=10)
    base = baseline_of(counts(green_app1=(0, 0, 0), green_app2=(0, 0, 0), blue_app1=(0, 0, 0),
                              blue_app2=(0, 0, 0)))
    verdict = judge(settings, base, counts(green_app1=(100, 0, 90), green_app2=(100, 0, 110),
                                           blue_app1=(100, 0, 20), blue_app2=(100, 0, 30)),
                    canary="green", stable="blue")
    assert verdict.latency_ratio == 4.0 and verdict.breach is not None
    assert verdict.breach.startswith("response time 4.00×")
    # a stable colour answering in under a millisecond (rtime 0) still counts
    fast = judge(settings, base, counts(green_app1=(100, 0, 800), blue_app1=(100, 0, 0)),
                 canary="green", stable="blue")
    assert fast.latency_ratio == 800.0 and fast.breach is not None


def test_haproxy_stats_give_each_servers_requests_errors_and_response_time() -> None:
    from bluegreen.balancer.haproxy import HAProxyBalancer

    header = ("# pxname,svname,scur,status,weight,req_tot,hrsp_5xx,rtime\n")
    rows = ("shop,blue-app1,0,UP,100,812,0,3\nshop,green-app1,0,UP,0,204,11,4\n"
            "shop,BACKEND,0,UP,100,1016,11,3\n")
    stats = HAProxyBalancer.parse_stats(header + rows, "shop")
    assert set(stats) == {"blue-app1", "green-app1"}
    green = stats["green-app1"]
    assert (green.requests, green.errors, green.response_ms) == (204, 11, 4)


def test_haproxy_traffic_reads_the_worker_pid_and_the_servers_in_one_answer() -> None:
    from bluegreen.balancer.haproxy import HAProxyBalancer

    output = ("Name: HAProxy\nVersion: 2.6.12-1+deb12u4\nPid: 4242\nUptime_sec: 12\n\n"
              "# pxname,svname,scur,status,weight,req_tot,hrsp_5xx,rtime\n"
              "shop,blue-app1,0,UP,100,812,0,3\nshop,green-app1,0,UP,0,204,11,4\n\n")
    traffic = HAProxyBalancer.parse_traffic(output, "shop")
    assert traffic is not None and traffic.epoch == "4242"
    assert traffic.servers["green-app1"] == ServerTraffic(204, 11, 4)
    assert HAProxyBalancer.parse_traffic("Unknown command\n", "shop") is None


NGINX_LOG = """\
127.0.10.2:8001|200|0.004
127.0.10.2:8001|200|0.006
127.0.10.2:8002|500|0.020|2026-11-29T13:40:01+00:00 GET /
127.0.10.2:8002|200|0.010
127.0.10.2:8002, 127.0.10.2:8001|502, 200|0.001, 0.003
-|-|-
127.0.10.9:8001|200|0.001
[::1]:8003|503|0.002
"""


def test_the_nginx_access_log_counts_every_server_a_request_tried() -> None:
    import subprocess

    from bluegreen.balancer.base import Server, Upstream
    from bluegreen.balancer.nginx import NginxBalancer, parse_log_counts
    from bluegreen.inventory import BalancerSettings

    driver = NginxBalancer(BalancerSettings(managed_file="/x", access_log="/x"))
    upstream = Upstream("shop", "shop", Colour.BLUE, 1, {"blue": 100, "green": 0}, (
        Server("app1", "127.0.10.2", 8001, Colour.BLUE, 100),
        Server("app1", "127.0.10.2", 8002, Colour.GREEN, 0),
        Server("app2", "0:0::1", 8003, Colour.GREEN, 0)))  # logged as [::1]
    with tempfile.NamedTemporaryFile("w", suffix=".log") as log:
        log.write(NGINX_LOG)
        log.flush()
        command = driver.count_log(log.name)  # the real script, run here by a real awk
        output = subprocess.run(command.wire_argv(), capture_output=True, text=True,
                                check=True).stdout
    traffic = parse_log_counts(output, upstream)
    assert traffic is not None and re.fullmatch(r"log \d+:\d+", traffic.epoch)
    assert traffic.servers == {  # 127.0.10.9 is no server of this upstream
        "blue-app1": ServerTraffic(3, 0, 4.3, 13.0),
        "green-app1": ServerTraffic(3, 2, 10.3, 31.0),
        "green-app2": ServerTraffic(1, 1, 2.0, 2.0)}
    assert parse_log_counts("stat: cannot stat '/x'\n", upstream) is None
    missing = subprocess.run(driver.count_log("/nonexistent.log").wire_argv(),
                             capture_output=True, text=True)
    assert missing.returncode == 4


def test_log_counts_are_judged_since_the_step_with_their_own_response_times() -> None:
    settings = CanarySettings(max_latency_ratio=2, min_requests=10)
    before = {"lb1": BalancerTraffic("log 1:2", {
        "blue-app1": ServerTraffic(1000, 0, 50.0, 50_000.0),  # slow history of the stable one
        "green-app1": ServerTraffic(0, 0, 0.0, 0.0)})}
    now = {"lb1": BalancerTraffic("log 1:2", {
        "blue-app1": ServerTraffic(1090, 0, 46.7, 50_900.0),  # 90 requests of 10 ms since
        "green-app1": ServerTraffic(10, 1, 30.0, 300.0)})}  # 10 requests of 30 ms
    verdict = judge(settings, baseline_of(before), now, canary="green", stable="blue")
    assert (verdict.requests, verdict.errors) == (10, 1)
    assert verdict.latency_ratio == pytest.approx(3.0)
    assert verdict.breach is not None and "3.00×" in verdict.breach
    rotated = {"lb1": BalancerTraffic("log 1:3", now["lb1"].servers)}  # counts from rotation
    assert judge(settings, baseline_of(before), rotated, canary="green",
                 stable="blue").requests == 10
    truncated = {"lb1": BalancerTraffic("log 1:2", {  # copytruncate: same file, counts restart
        "blue-app1": ServerTraffic(40, 0, 10.0, 400.0),
        "green-app1": ServerTraffic(12, 0, 10.0, 120.0)})}
    verdict = judge(settings, baseline_of(now), truncated, canary="green", stable="blue")
    assert (verdict.requests, verdict.latency_ratio) == (12, pytest.approx(1.0))


def test_stepping_judges_every_step_and_yields_to_a_step_taken_elsewhere(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import bluegreen.operations.canary as operations
    from tests.unit.test_flip import Recorder

    def at(weight: int | None) -> Moved:
        canary = Canary(colour="green", release="v2", weight=weight or 0, since="t", by="me",
                        steps=(5, 25, 50), pauses=(0.0, 0.0, 0.0))
        return Moved(live="blue" if weight else "green", previous=None, release="v2",
                     generation=1, colours={},
                     canary=CanaryView.of(canary) if weight else None)

    asked: list[tuple[bool, int | None]] = []
    answers: list[Any] = [operations._MovedElsewhere(CanaryView.of(Canary(
                              colour="green", release="v2", weight=25, since="t", by="me",
                              steps=(5, 25, 50), pauses=(0.0, 0.0, 0.0)))),
                          CanaryHeld("the canary breached its analysis"), at(50), at(None)]

    def promote(inventory: Any, reporter: Any, *, options: Options) -> Moved:
        asked.append((options.skip_analysis, options.expect_weight))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(operations, "_promote_once", promote)
    reporter = Recorder()
    result = operations.step_through(None, reporter,  # type: ignore[arg-type]
                                     Options(skip_analysis=True), at(5))
    assert result == at(None)
    # never skipping the analysis; from 5, found at 25 (moved elsewhere), held at 25 once
    # (a breach within canary.failure_limit: one more pause there), then from 25 and 50
    assert asked == [(False, 5), (False, 25), (False, 25), (False, 50)]
    assert any("moved the canary to 25%" in line for line in reporter.lines)
    assert any("One more pause" in line for line in reporter.lines)
