"""Canary releases: a new release with part of the traffic, by weight, on nginx (reload) and
HAProxy (runtime API); promote and abort; deploy and rollback wait for it; drift covers weights."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from typing import Any

from tests.integration.service import Service


def ok(result: Any) -> None:
    assert result.returncode == 0, (result.stdout, result.stderr)


def served(service: Service, count: int = 200) -> Counter[str]:
    """Which release answers `count` requests, each on a new connection (bounded)."""
    releases: Counter[str] = Counter()
    for _ in range(count):
        with urllib.request.urlopen(service.nginx["lb1"].url, timeout=5) as response:
            releases[response.headers["X-Release"]] += 1
    return releases


def run_canary(service: Service, inventory: Any = None) -> tuple[str, str]:
    """v1 live, then a 25 % canary of v2: (the stable colour, the canary's)."""
    ok(service.cli("deploy", "--source", str(service.release("v1")), "--release", "v1",
                   inventory=inventory))
    stable = service.state()["live"]
    canary = "green" if stable == "blue" else "blue"
    result = service.cli("--json", "deploy", "--canary", "25", "--source",
                         str(service.release("v2")), "--release", "v2", inventory=inventory)
    ok(result)
    data = json.loads(result.stdout)["data"]
    assert data["live"] == stable and data["canary"]["colour"] == canary
    assert data["canary"]["weight"] == 25
    split = served(service)
    assert set(split) == {"v1", "v2"} and 20 <= split["v2"] <= 90, split  # ~50 of 200
    status = json.loads(service.cli("--json", "status", inventory=inventory).stdout)["data"]
    assert status["drift"] is None and status["weights"] == {stable: 75, canary: 25}
    assert status["canary"]["release"] == "v2"
    # nothing else moves traffic while the canary runs
    refused = service.cli("deploy", "--source", str(service.release("v3")), "--release", "v3",
                          inventory=inventory)
    assert refused.returncode == 12 and "canary promote" in refused.stderr
    assert service.cli("rollback", inventory=inventory).returncode == 12
    return stable, canary


def test_a_canary_on_nginx_then_promote(service: Service) -> None:
    run_canary(service)
    managed = service.nginx["lb1"].managed_file.read_text()
    assert "weights=blue:75,green:25" in managed and "weight=25" in managed
    ok(service.cli("canary", "promote"))
    assert served(service, 20) == Counter({"v2": 20})
    state = service.state()
    assert (state["live"], state["canary"], state["weights"]) == (
        "green", None, {"green": 100, "blue": 0})
    assert service.history()[-1]["operation"] == "canary promote"
    ok(service.cli("rollback"))  # the stable colour was kept: an ordinary rollback
    assert served(service, 20) == Counter({"v1": 20})


def test_a_canary_on_haproxy_runtime_then_abort(haproxy_service: Service) -> None:
    service = haproxy_service
    inventory = service.inventory(balancer={"flip": "runtime", "drain_timeout": 5})
    ok(service.cli("deploy", "--source", str(service.release("v0")), "--release", "v0",
                   inventory=inventory))  # both colours become known to HAProxy
    _, canary = run_canary(service, inventory)
    abort = service.cli("canary", "abort", "--reason", "error rate", inventory=inventory)
    ok(abort)
    assert served(service, 20) == Counter({"v1": 20})
    aborted = service.state()["colours"][canary]
    assert (aborted["status"], aborted["release"], aborted["error"]) == (
        "failed", "v2", "canary aborted: error rate")
    assert service.state()["canary"] is None
    refused = service.cli("rollback", inventory=inventory)  # never back to an aborted canary
    assert refused.returncode == 8
    assert service.cli("canary", "abort", inventory=inventory).returncode == 2  # none running
