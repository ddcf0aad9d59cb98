"""`bluegreen retire`, `rollback --restart` and `deploy --retire-after`."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from tests.conftest import run_cli
from tests.integration.service import Service


def ok(result: Any) -> None:
    assert result.returncode == 0, (result.stdout, result.stderr)


def slow_request(service: Service, host: str, colour: str, seconds: float,
                 outcome: dict[str, Any]) -> threading.Thread:
    """A long request straight to one instance of `colour` (not through the balancer)."""
    url = (f"http://{service.fleet[host].address}:{service.ports[colour]}/slow"
           f"?seconds={seconds}")

    def fetch() -> None:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                outcome["body"] = response.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            outcome["error"] = exc
        outcome["finished"] = time.monotonic()

    thread = threading.Thread(target=fetch)
    thread.start()
    time.sleep(0.5)  # the connection is established and the request in flight
    return thread


def test_retire_waits_for_a_long_connection_then_stops_the_idle_colour(service: Service) -> None:
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))  # blue (v1) is idle now
    outcome: dict[str, Any] = {}
    request = slow_request(service, "app1", "blue", 3, outcome)
    result = service.cli("retire")
    retired_at = time.monotonic()
    request.join(timeout=30)
    ok(result)
    assert "slow response from release v1 (blue)" in outcome["body"]
    assert outcome["finished"] <= retired_at  # it waited for the request to finish
    assert "after its connections drained" in result.stderr
    for host in service.app_hosts:
        assert service.master_pid(host, "blue") is None  # stopped: gunicorn removed its pid file
    assert service.state()["colours"]["blue"]["status"] == "retired"
    assert service.fetch().startswith("release v2 (green)")
    record = service.history()[-1]
    assert (record["operation"], record["colour"], record["release"]) == ("retire", "blue", "v1")
    assert (record["connections_cut"], record["drained"]) == (0, True)


def test_drain_timeout_cuts_and_counts_the_remaining_connections(service: Service) -> None:
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))
    outcome: dict[str, Any] = {}
    request = slow_request(service, "app1", "blue", 20, outcome)
    started = time.monotonic()
    result = service.cli("retire", "--drain-timeout", "1")
    request.join(timeout=30)
    ok(result)
    stopped = "1 connection(s) still open at the drain timeout were closed by its stop"
    assert stopped in result.stderr
    assert "app1" in result.stderr.split(stopped)[0].rsplit("\n", 1)[-1]
    assert time.monotonic() - started < 15
    assert "body" not in outcome  # the cut request did not complete
    assert ("blue retired (release v1), 1 connection(s) still open at the drain timeout closed "
            "by the stop") in result.stdout
    record = service.history()[-1]
    assert (record["operation"], record["colour"], record["release"]) == ("retire", "blue", "v1")
    assert (record["connections_cut"], record["drained"]) == (1, False)
    assert record["cut_by_host"] == {"app1": 1, "app2": 0}


def test_rollback_to_a_retired_colour_needs_restart(service: Service) -> None:
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))
    ok(service.cli("retire", "--drain-timeout", "5"))
    refused = service.cli("rollback")
    assert refused.returncode == 8, refused.stderr
    assert "bluegreen rollback --restart" in refused.stderr
    assert service.fetch().startswith("release v2 (green)")
    restarted = service.cli("rollback", "--restart")
    ok(restarted)
    assert service.fetch().startswith("release v1 (blue)")
    assert all(service.master_pid(h, "blue") for h in service.app_hosts)
    assert service.state()["colours"]["blue"]["status"] == "running"


def test_deploy_can_retire_the_old_colour_afterwards(service: Service) -> None:
    ok(service.deploy("v1"))
    result = service.deploy("v2", "--retire-after", "5s")
    ok(result)
    assert service.fetch().startswith("release v2 (green)")
    assert all(service.master_pid(h, "blue") is None for h in service.app_hosts)
    assert service.state()["colours"]["blue"]["status"] == "retired"
    bad = service.deploy("v3", "--retire-after", "soon")
    assert bad.returncode == 2 and "--retire-after" in bad.stderr


def test_deploy_drains_the_idle_colour_before_stopping_it_and_counts_what_it_cuts(
        service: Service) -> None:
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))  # blue (v1) idle, still running
    inventory = service.inventory(app={"drain": "touch {{ app_root }}/asked-{{ colour }}",
                                       "drain_timeout": 20})
    outcome: dict[str, Any] = {}
    # a client left on blue, still in flight when the deploy reaches blue's stop
    request = slow_request(service, "app1", "blue", 8, outcome)
    result = service.cli("deploy", "--source", str(service.release("v3")), "--release", "v3",
                         inventory=inventory)
    request.join(timeout=30)
    ok(result)
    assert "slow response from release v1 (blue)" in outcome["body"]  # drained, not cut
    assert (service.app_root("app1") / "asked-blue").exists()  # app.drain was run
    assert not (service.app_root("app2") / "asked-blue").exists()  # nothing to drain there
    assert "asked to drain (app.drain)" in result.stderr
    assert "cut" not in result.stderr

    outcome = {}
    request = slow_request(service, "app2", "green", 20, outcome)  # green (v2) is idle now
    cut = service.cli("--json", "deploy", "--no-drain", "--source",
                      str(service.release("v4")), "--release", "v4", inventory=inventory)
    request.join(timeout=30)
    ok(cut)
    assert "body" not in outcome  # cut at once
    assert "app2: 1 connection(s) to green still open, closed by its stop (no drain)" \
        in cut.stderr
    assert json.loads(cut.stdout)["data"]["idle_connections_cut"] == 1
    assert not (service.app_root("app2") / "asked-green").exists()  # --no-drain asks nothing


def test_retire_runs_its_hooks(service: Service) -> None:
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))
    marks = service.root / "marks"
    inventory = service.inventory(hooks={
        "pre_retire": [{"run": f"echo pre $BLUEGREEN_HOOK $BLUEGREEN_TO >> {marks}"}],
        "post_retire": [{"run": f"echo post $BLUEGREEN_RESULT >> {marks}"}]})
    ok(service.cli("retire", "--drain-timeout", "2", inventory=inventory))
    assert marks.read_text().split("\n")[:2] == ["pre pre_retire green", "post ok"]


def test_status_shows_connections_per_colour_and_balancer_workers_still_draining(
        service: Service) -> None:
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))  # green live
    outcome: dict[str, Any] = {}

    def through_nginx() -> None:
        with urllib.request.urlopen(service.nginx["lb1"].url + "slow?seconds=6",
                                    timeout=30) as response:
            outcome["body"] = response.read().decode()

    request = threading.Thread(target=through_nginx)
    request.start()
    time.sleep(0.5)  # in flight on green, through nginx's current worker
    ok(service.cli("rollback"))  # that worker now shuts down, still holding the request
    status = service.cli("--json", "status")
    request.join(timeout=30)
    ok(status)
    data = json.loads(status.stdout)["data"]
    assert data["balancers"][0]["old_workers"] == 1
    assert data["colours"]["green"]["connections"] >= 1  # idle, but not idle yet
    green = [i for i in data["instances"] if i["colour"] == "green"]
    assert sum(i["connections"] for i in green) == data["colours"]["green"]["connections"]
    assert "slow response from release v2 (green)" in outcome["body"]
    human = run_cli("-i", str(service.inventory()), "status", env={"COLUMNS": "200"})
    assert "still draining" in human.stdout and "connections" in human.stdout
