"""Canary releases: a new release with part of the traffic, by weight, on nginx (reload) and
HAProxy (runtime API); promote and abort; deploy and rollback wait for it; drift covers weights."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from tests.integration.prometheus import prometheus_scraping, wait_for_a_scrape
from tests.integration.service import HAProxy, LoadDuring, Service

STEP_REQUESTS = 400  # per step: smooth weighted round robin is exact to a request or two


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
    for waiting in (["rollback"], ["switch", "--to", stable], ["retire"], ["reload"]):
        assert service.cli(*waiting, inventory=inventory).returncode == 12, waiting
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


BackgroundT = TypeVar("BackgroundT", bound="Background")


class Background:
    """`with Subclass(…) as load:` runs its `_run` in a thread for the block's span (`_run`
    itself bounds it, by `limit` seconds)."""

    def __init__(self, limit: float):
        self.limit = limit
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self: BackgroundT) -> BackgroundT:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        raise NotImplementedError


class KeepAliveClient(Background):
    """One strict keep-alive client, in its own thread: requests on one connection for as long
    as it lasts, never retried — a request that fails counts as failed (bounded in time and
    count)."""

    def __init__(self, host: str, port: int, *, limit: float = 120, max_requests: int = 60000):
        super().__init__(limit)
        self.address = (host, port)
        self.max_requests = max_requests
        self.ok = self.failed = self.connections = 0
        self.errors: list[str] = []
        self.hold = threading.Event()  # set: send nothing, keeping the connection open
        self.holding = threading.Event()  # the client is holding (no request in flight)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No request of this client while the body runs, its connection kept open: a share
        measured meanwhile is the balancer's alone (HAProxy keeps a keep-alive client on its
        server instead of balancing each request; counted in, it skewed a share of 50 to
        66.7 % on a busy machine)."""
        self.hold.set()
        try:
            assert self.holding.wait(10)
            yield
        finally:
            self.hold.clear()

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        connection: http.client.HTTPConnection | None = None
        while not self.stop.is_set() and time.monotonic() < deadline and (
                self.ok + self.failed < self.max_requests):
            if self.hold.is_set():
                self.holding.set()
                time.sleep(0.01)
                continue
            self.holding.clear()
            if connection is None:
                connection = http.client.HTTPConnection(*self.address, timeout=5)
                self.connections += 1
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    self.ok += 1
                else:
                    self.failed += 1
                    self.errors.append(f"status {response.status}")
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                self.failed += 1
                self.errors.append(repr(exc))
                connection.close()
                connection = None
            time.sleep(0.002)
        if connection is not None:
            connection.close()


def figures(name: str, **values: Any) -> None:
    """What the test measured, on stdout (`pytest -s` shows it), for docs/benchmarks.md."""
    print(f"\nFIGURES {name}: {json.dumps(values, sort_keys=True)}")


def canary_share(service: Service, colour: str = "green") -> float:
    """The canary's share, in points, of what the balancer sent upstream while this sends
    `STEP_REQUESTS` new-connection requests: counted from nginx's access log, so the load
    running beside it is counted too (smooth weighted round robin is exact over all the
    requests, not over any one client's, whose requests interleave with the others')."""
    log = service.nginx["lb1"].access_log
    start = log.stat().st_size
    served(service, STEP_REQUESTS)
    with log.open("rb") as handle:
        handle.seek(start)
        lines = handle.read().decode().splitlines()
    ports = [line.split("|")[0].rsplit(":", 1)[-1] for line in lines]
    return 100 * ports.count(str(service.ports[colour])) / len(ports)


def haproxy_admin(service: Service, command: str) -> str:
    """HAProxy's answer to a runtime API command on its admin socket."""
    return subprocess.run(["socat", "stdio", f"unix-connect:{service.nginx['lb1'].admin_socket}"],
                          input=f"{command}\n", capture_output=True, text=True, timeout=10,
                          check=True).stdout


def haproxy_share(service: Service, colour: str) -> float:
    """As `canary_share`, from HAProxy's per-server request counters (`show stat`)."""
    from bluegreen.balancer.haproxy import HAProxyBalancer

    def requests() -> dict[str, int]:
        stats = HAProxyBalancer.parse_stats(haproxy_admin(service, "show stat"), "shop")
        return {c: sum(s.requests for name, s in stats.items() if name.startswith(f"{c}-"))
                for c in ("blue", "green")}

    before = requests()
    served(service, STEP_REQUESTS)
    after = requests()
    sent = {c: after[c] - before[c] for c in after}
    return 100 * sent[colour] / sum(sent.values())


def test_canary_steps_5_25_50_then_all_under_load_with_the_shares_of_their_weights(
        service: Service) -> None:
    ok(service.deploy("v1"))  # blue
    url = service.nginx["lb1"].url
    shares: dict[int, float] = {}
    with LoadDuring(url) as load:
        started = service.cli("--json", "deploy", "--canary", "5,25,50", "--source",
                              str(service.release("v2")), "--release", "v2")
        ok(started)
        canary = json.loads(started.stdout)["data"]["canary"]
        assert (canary["colour"], canary["weight"], canary["steps"]) == ("green", 5, [5, 25, 50])
        for weight in (5, 25, 50):
            if weight != 5:
                promoted = service.cli("--json", "canary", "promote")
                ok(promoted)
                assert json.loads(promoted.stdout)["data"]["canary"]["weight"] == weight
            state = service.state()
            assert state["live"] == "blue" and state["canary"]["weight"] == weight
            assert state["weights"] == {"blue": 100 - weight, "green": weight}
            shares[weight] = canary_share(service)
        shown = service.cli("canary", "status")
        assert "with 50% of the traffic" in shown.stdout and "gives it all the traffic" in (
            shown.stdout)
        ok(service.cli("canary", "promote"))  # after the last step: all of it, verified
        load.wait_for_body("release v2 (green)")
    for weight, share in shares.items():
        assert abs(share - weight) <= 3, shares
    assert load.results["failed"] == 0, load.results["errors"][:5]
    assert served(service, 20) == Counter({"v2": 20})
    state = service.state()
    assert (state["live"], state["canary"]) == ("green", None)
    steps = [(r["operation"], r.get("canary")) for r in service.history()[-4:]]
    assert steps == [("deploy", 5), ("canary promote", 25), ("canary promote", 50),
                     ("canary promote", None)]
    figures("canary steps on nginx", shares=shares, requests_per_step=STEP_REQUESTS,
            load_ok=load.results["ok"], load_failed=load.results["failed"])


def test_canary_steps_on_haproxy_runtime_keep_strict_keep_alive_clients_whole(
        haproxy_service: Service) -> None:
    service = haproxy_service
    inventory = service.inventory(balancer={"flip": "runtime", "drain_timeout": 5})
    for release in ("v0", "v1"):  # both colours become known to HAProxy; v1 live on green
        ok(service.cli("deploy", "--source", str(service.release(release)), "--release",
                       release, inventory=inventory))
    server = service.nginx["lb1"]
    shares: dict[int, float] = {}
    servers: dict[int, str] = {}  # what HAProxy said of its servers, to explain an odd share
    with KeepAliveClient(server.address, server.port) as client:
        ok(service.cli("deploy", "--canary", "10,50", "--source", str(service.release("v2")),
                       "--release", "v2", inventory=inventory))
        with client.paused():
            shares[10] = haproxy_share(service, "blue")
            servers[10] = haproxy_admin(service, "show servers state shop")
        promoted = service.cli("canary", "promote", inventory=inventory)
        ok(promoted)
        assert "runtime API" in promoted.stderr and "reload" not in promoted.stderr.lower()
        with client.paused():
            shares[50] = haproxy_share(service, "blue")
            servers[50] = haproxy_admin(service, "show servers state shop")
        ok(service.cli("canary", "promote", "--full", inventory=inventory))
        time.sleep(0.5)  # the client keeps going on its connection after the last flip
    assert client.failed == 0, client.errors[:5]
    assert client.ok > 100 and client.connections == 1  # one connection, never cut
    for weight, share in shares.items():
        assert abs(share - weight) <= 3, (shares, promoted.stderr, servers[weight])
    assert served(service, 20) == Counter({"v2": 20})
    figures("canary steps on HAProxy runtime", shares=shares, keep_alive_ok=client.ok,
            keep_alive_failed=client.failed, connections=client.connections)


def served_with_errors(service: Service, count: int) -> tuple[Counter[str], Counter[str]]:
    """`count` new-connection requests: how many each release answered, and how many it
    answered with an error (5xx)."""
    answered: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for _ in range(count):
        try:
            with urllib.request.urlopen(service.nginx["lb1"].url, timeout=5) as response:
                answered[response.headers["X-Release"]] += 1
        except urllib.error.HTTPError as error:
            release = error.headers.get("X-Release") or "balancer"
            answered[release] += 1
            failed[release] += 1
    return answered, failed


def analysed(service: Service, **canary: Any) -> Any:
    """HAProxy flipped through its runtime API, both colours known to it, v1 live on green;
    the canary judged against `canary`."""
    inventory = service.inventory(balancer={"flip": "runtime", "drain_timeout": 5},
                                  canary=canary)
    for release in ("v0", "v1"):
        ok(service.cli("deploy", "--source", str(service.release(release)), "--release",
                       release, inventory=inventory))
    return inventory


def test_a_canary_answering_5_percent_errors_is_aborted_by_its_analysis(
        haproxy_service: Service) -> None:
    service = haproxy_service
    inventory = analysed(service, max_error_rate=1, min_requests=100)
    ok(service.cli("deploy", "--canary", "20,50", "--source",
                   str(service.release("v2", error_every=20)), "--release", "v2",
                   inventory=inventory))
    early = service.cli("--json", "canary", "promote", inventory=inventory)
    assert early.returncode == 12, early.stderr  # nothing served yet: not judged
    assert json.loads(early.stdout)["error"]["code"] == "canary_not_judged"
    assert service.state()["canary"]["weight"] == 20
    answered, failed = served_with_errors(service, 1000)
    status = json.loads(service.cli("--json", "canary", "status",
                                    inventory=inventory).stdout)["data"]
    assert status["analysis"]["judged"] and status["analysis"]["breach"].startswith("error rate")
    result = service.cli("--json", "canary", "promote", inventory=inventory)
    assert result.returncode == 13, result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "canary_aborted" and "error rate" in error["message"]
    assert "> 1%" in error["message"]
    assert served(service, 20) == Counter({"v1": 20})  # all back on the stable colour
    state = service.state()
    assert state["canary"] is None and state["live"] == "green"
    assert state["colours"]["blue"]["status"] == "failed"
    assert "canary aborted by its analysis: error rate" in state["colours"]["blue"]["error"]
    record = service.history()[-1]
    assert (record["operation"], record["result"]) == ("canary abort", "ok")
    assert record["analysis"]["breach"].startswith("error rate")
    assert 150 <= answered["v2"] <= 250 and failed["v1"] == 0 and failed["balancer"] == 0
    assert failed["v2"] == record["analysis"]["errors"]  # every error the canary's, counted
    figures("canary analysis aborts a release failing 5%", canary_requests=answered["v2"],
            canary_errors=failed["v2"], stable_requests=answered["v1"],
            stable_errors=failed["v1"], error_rate=record["analysis"]["error_rate"],
            threshold=1)


def test_failure_limit_holds_a_breaching_canary_then_judges_it_again_on_fresh_traffic(
        haproxy_service: Service) -> None:
    service = haproxy_service
    inventory = analysed(service, max_error_rate=1, min_requests=100, failure_limit=1)
    # v2 fails its first 5 requests per worker (warming up), then recovers
    ok(service.cli("deploy", "--canary", "20,50", "--source",
                   str(service.release("v2", error_first=5)), "--release", "v2",
                   inventory=inventory))
    answered, failed = served_with_errors(service, 1000)
    assert failed["v2"] > 0 and failed["v1"] == 0
    held = service.cli("--json", "canary", "promote", inventory=inventory)
    assert held.returncode == 12, held.stderr
    error = json.loads(held.stdout)["error"]
    assert error["code"] == "canary_held" and "error rate" in error["message"]
    assert "this is breach 1" in error["message"]
    state = service.state()
    assert (state["canary"]["weight"], state["canary"]["breaches"]) == (20, 1)
    record = service.history()[-1]
    assert (record["result"], record["breaches"], record["canary"]) == ("held", 1, 20)
    assert (record["analysis"]["requests"], record["analysis"]["errors"]) == (
        answered["v2"], failed["v2"])
    status = json.loads(service.cli("--json", "canary", "status",
                                    inventory=inventory).stdout)["data"]
    assert status["canary"]["breaches"] == 1
    assert not status["analysis"]["judged"]  # counted afresh from the breach on
    # recovered: the traffic after the breach passes, and the next step starts the count again
    answered, failed = served_with_errors(service, 1000)
    assert failed["v2"] == 0
    ok(service.cli("canary", "promote", inventory=inventory))
    record = service.history()[-1]
    assert record["analysis"]["passed"] and record["analysis"]["requests"] == answered["v2"]
    assert (service.state()["canary"]["weight"], service.state()["canary"]["breaches"]) == (
        50, 0)
    ok(service.cli("canary", "promote", "--full", "--skip-analysis", inventory=inventory))
    # a release that keeps failing is held once, then aborted at the second breach in a row
    ok(service.cli("deploy", "--canary", "20", "--source",
                   str(service.release("v3", error_every=20)), "--release", "v3",
                   inventory=inventory))
    served_with_errors(service, 1000)
    assert service.cli("canary", "promote", inventory=inventory).returncode == 12
    served_with_errors(service, 1000)
    aborted = service.cli("--json", "canary", "promote", inventory=inventory)
    assert aborted.returncode == 13, aborted.stderr
    message = json.loads(aborted.stdout)["error"]["message"]
    assert "2 analyses in a row, canary.failure_limit 1" in message
    assert served(service, 20) == Counter({"v2": 20})
    assert [r["result"] for r in service.history()[-3:]] == ["ok", "held", "ok"]
    assert service.history()[-1]["operation"] == "canary abort"


# HAProxy's own exporter, scraped by Prometheus: the share of the canary's answers that were
# 5xx since the traffic being judged began
ERROR_RATIO = (
    'sum(increase(haproxy_server_http_responses_total{proxy="{{ service }}",'
    'server=~"{{ canary }}-.*",code="5xx"}[{{ window }}])) / '
    'sum(increase(haproxy_server_http_responses_total{proxy="{{ service }}",'
    'server=~"{{ canary }}-.*"}[{{ window }}]))')


def test_a_canary_judged_by_a_prometheus_query_is_aborted_over_its_bound_and_passes_under(
        haproxy_service: Service, tmp_path: Path) -> None:
    service = haproxy_service
    lb1 = service.nginx["lb1"]
    assert isinstance(lb1, HAProxy)
    with prometheus_scraping(tmp_path / "prometheus", lb1.metrics_target) as url:
        inventory = analysed(service, prometheus={"url": url, "queries": [
            {"name": "error ratio", "query": ERROR_RATIO, "max": 0.01}]})
        ok(service.cli("deploy", "--canary", "20,50", "--source",
                       str(service.release("v2", error_every=20)), "--release", "v2",
                       inventory=inventory))
        early = service.cli("--json", "canary", "promote", inventory=inventory)
        assert early.returncode == 12, early.stderr  # no canary traffic yet: no number
        assert "error ratio: no data yet" in json.loads(early.stdout)["error"]["message"]
        wait_for_a_scrape(url)  # a sample of the step before its traffic: what it increases from
        answered, failed = served_with_errors(service, 1000)
        wait_for_a_scrape(url)
        status = json.loads(service.cli("--json", "canary", "status",
                                        inventory=inventory).stdout)["data"]
        measured = status["analysis"]["metrics"][0]["value"]
        assert 0.02 <= measured <= 0.08, status  # every 20th of v2's answers failed
        result = service.cli("--json", "canary", "promote", inventory=inventory)
        assert result.returncode == 13, result.stderr
        message = json.loads(result.stdout)["error"]["message"]
        assert "error ratio 0.0" in message and "> 0.01" in message
        assert served(service, 20) == Counter({"v1": 20})
        assert service.history()[-1]["analysis"]["metrics"][0]["breach"].startswith(
            "error ratio")
        assert failed["v1"] == 0 and failed["v2"] > 0
        # a good release: 0 errors measured, it goes on to its next step
        ok(service.cli("deploy", "--canary", "25,50", "--source", str(service.release("v3")),
                       "--release", "v3", inventory=inventory))
        wait_for_a_scrape(url)
        served(service, 400)
        wait_for_a_scrape(url)
        ok(service.cli("canary", "promote", inventory=inventory))
        record = service.history()[-1]
        assert record["analysis"]["passed"] and record["canary"] == 50
        assert record["analysis"]["metrics"][0]["value"] == 0
    figures("canary judged by a Prometheus query", canary_requests=answered["v2"],
            canary_errors=failed["v2"], measured_error_ratio=measured, bound=0.01)


def served_to(service: Service, headers: dict[str, str], count: int = 60) -> Counter[str]:
    """Which release answers `count` requests carrying `headers` (bounded)."""
    releases: Counter[str] = Counter()
    for _ in range(count):
        request = urllib.request.Request(service.nginx["lb1"].url, headers=headers)
        with urllib.request.urlopen(request, timeout=5) as response:
            releases[response.headers["X-Release"]] += 1
    return releases


TESTER = {"X-Canary": "1"}


def test_sticky_testers_reach_the_canary_whatever_its_weight_on_nginx(
        sticky_service: Service) -> None:
    service = sticky_service
    inventory = service.inventory(canary={"sticky": {"header": "X-Canary", "value": "1"}})
    ok(service.cli("deploy", "--source", str(service.release("v1")), "--release", "v1",
                   inventory=inventory))
    assert served_to(service, TESTER, 20) == Counter({"v1": 20})  # no canary: the live colour
    ok(service.cli("deploy", "--canary", "10", "--source", str(service.release("v2")),
                   "--release", "v2", inventory=inventory))
    assert served_to(service, TESTER) == Counter({"v2": 60})
    assert served_to(service, {"X-Canary": "0"}, 100)["v2"] <= 20  # others: ~10 of 100
    everyone = served(service, 100)
    assert set(everyone) == {"v1", "v2"} and everyone["v2"] <= 20
    ok(service.cli("canary", "abort", inventory=inventory))
    assert served_to(service, TESTER, 20) == Counter({"v1": 20})  # back on the stable colour
    ok(service.cli("deploy", "--canary", "10", "--source", str(service.release("v3")),
                   "--release", "v3", inventory=inventory))
    assert served_to(service, TESTER, 20) == Counter({"v3": 20})
    ok(service.cli("canary", "promote", inventory=inventory))
    assert served_to(service, TESTER, 20) == Counter({"v3": 20})
    assert served(service, 20) == Counter({"v3": 20})


def test_a_sticky_canary_testers_cannot_reach_is_undone_with_the_reason(
        service: Service) -> None:
    # nginx's proxy_pass names the upstream itself, not through $bluegreen_shop
    inventory = service.inventory(canary={"sticky": {"header": "X-Canary", "value": "1"}})
    ok(service.cli("deploy", "--source", str(service.release("v1")), "--release", "v1",
                   inventory=inventory))
    result = service.cli("--json", "deploy", "--canary", "10", "--source",
                         str(service.release("v2")), "--release", "v2", inventory=inventory)
    assert result.returncode == 7, result.stderr
    error = json.loads(result.stdout)["error"]
    assert "as a tester (header X-Canary: 1)" in error["message"]
    assert "$bluegreen_shop" in error["hint"]
    assert served(service, 40) == Counter({"v1": 40})  # the canary's step was undone
    state = service.state()
    assert state["canary"] is None and state["weights"][state["live"]] == 100
    assert json.loads(service.cli("--json", "status", inventory=inventory).stdout)[
        "data"]["drift"] is None


def haproxy_pid(service: Service) -> str:
    lb1 = service.nginx["lb1"]
    assert isinstance(lb1, HAProxy)
    return next(line.split(":")[1].strip() for line in lb1.runtime("show info").splitlines()
                if line.startswith("Pid:"))


def test_sticky_testers_on_haproxy_runtime_reload_only_when_their_colour_changes(
        haproxy_service: Service) -> None:
    service = haproxy_service
    inventory = analysed(service, sticky={"cookie": "canary", "value": "me"})
    tester = {"Cookie": "session=1; canary=me"}
    ok(service.cli("deploy", "--canary", "20,50", "--source", str(service.release("v2")),
                   "--release", "v2", inventory=inventory))
    assert served_to(service, tester) == Counter({"v2": 60})
    assert served_to(service, {"Cookie": "canary=you"}, 100)["v2"] <= 30  # ~20 of 100
    before = haproxy_pid(service)
    ok(service.cli("canary", "promote", "--skip-analysis", inventory=inventory))  # 20 → 50
    assert haproxy_pid(service) == before  # a weight step: the runtime API, no reload
    assert served_to(service, tester) == Counter({"v2": 60})
    result = service.cli("canary", "abort", inventory=inventory)
    ok(result)
    assert "testers go to green servers now, which takes a reload" in result.stderr
    assert haproxy_pid(service) != before
    assert served_to(service, tester, 20) == Counter({"v1": 20})
    assert served(service, 20) == Counter({"v1": 20})


def test_a_good_canary_passes_its_analysis_at_each_step(haproxy_service: Service) -> None:
    service = haproxy_service
    inventory = analysed(service, max_error_rate=1, max_latency_ratio=20, min_requests=50)
    ok(service.cli("deploy", "--canary", "25,50", "--source", str(service.release("v2")),
                   "--release", "v2", inventory=inventory))
    served(service, 400)
    ok(service.cli("canary", "promote", inventory=inventory))  # 25 → 50
    record = service.history()[-1]
    assert record["canary"] == 50 and record["analysis"]["passed"]
    assert record["analysis"]["errors"] == 0 and record["analysis"]["requests"] >= 50
    served(service, 200)
    ok(service.cli("canary", "promote", inventory=inventory))  # all of it
    assert service.history()[-1]["analysis"]["passed"]
    assert served(service, 20) == Counter({"v2": 20})


def test_a_canary_on_nginx_is_judged_from_its_access_log(service: Service) -> None:
    inventory = service.inventory(
        balancer={"access_log": str(service.nginx["lb1"].access_log)},
        canary={"max_error_rate": 1, "max_latency_ratio": 20, "min_requests": 100})
    for release in ("v0", "v1"):
        ok(service.cli("deploy", "--source", str(service.release(release)), "--release",
                       release, inventory=inventory))
    ok(service.cli("deploy", "--canary", "20,50", "--source",
                   str(service.release("v2", error_every=20)), "--release", "v2",
                   inventory=inventory))
    early = service.cli("--json", "canary", "promote", inventory=inventory)
    assert early.returncode == 12, early.stderr  # nothing served since the step: not judged
    answered, failed = served_with_errors(service, 1000)
    result = service.cli("--json", "canary", "promote", inventory=inventory)
    assert result.returncode == 13, result.stderr
    assert "error rate" in json.loads(result.stdout)["error"]["message"]
    assert served(service, 20) == Counter({"v1": 20})  # all back on the stable colour
    record = service.history()[-1]
    assert (record["operation"], record["analysis"]["breach"][:10]) == (
        "canary abort", "error rate")
    # every request and error the canary answered since its step, counted from the log
    assert (record["analysis"]["requests"], record["analysis"]["errors"]) == (
        answered["v2"], failed["v2"])
    assert 150 <= answered["v2"] <= 250 and failed["v1"] == 0 and failed["v2"] > 0
    # a good release passes, with a response time measured against the stable colour's
    ok(service.cli("deploy", "--canary", "25", "--source", str(service.release("v3")),
                   "--release", "v3", inventory=inventory))
    served(service, 400)
    ok(service.cli("canary", "promote", inventory=inventory))
    analysis = service.history()[-1]["analysis"]
    assert analysis["passed"] and analysis["errors"] == 0 and analysis["requests"] >= 100
    assert analysis["latency_ratio"] is not None
    assert served(service, 20) == Counter({"v3": 20})
    figures("canary analysis from nginx's access log", canary_requests=answered["v2"],
            canary_errors=failed["v2"], stable_errors=failed["v1"],
            error_rate=record["analysis"]["error_rate"], good_release=analysis)


class ReleaseLoad(Background):
    """Bounded background load (new connections, ~100/s): per release, requests and errors."""

    def __init__(self, service: Service, limit: float = 90):
        super().__init__(limit)
        self.service = service
        self.answered: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self.stop.is_set() and time.monotonic() < deadline:
            answered, failed = served_with_errors(self.service, 10)
            self.answered.update(answered)
            self.failed.update(failed)
            time.sleep(0.05)


def test_a_stepping_canary_failing_5_percent_is_aborted_at_its_first_step_by_itself(
        haproxy_service: Service) -> None:
    service = haproxy_service
    inventory = analysed(service, max_error_rate=1, min_requests=60)
    with ReleaseLoad(service) as load:
        result = service.cli("--json", "deploy", "--canary", "20,50", "--step-pause", "4s",
                             "--source", str(service.release("v2", error_every=20)),
                             "--release", "v2", inventory=inventory)
        after = served(service, 20)
    assert result.returncode == 13, result.stderr
    assert json.loads(result.stdout)["error"]["code"] == "canary_aborted"
    assert "canary at 20%: pause 4 s" in result.stderr
    assert after == Counter({"v1": 20})
    operations = [(r["operation"], r.get("canary")) for r in service.history()[-2:]]
    assert operations == [("deploy", 20), ("canary abort", None)]
    assert service.state()["canary"] is None
    assert load.failed["v1"] == 0 and load.failed["balancer"] == 0  # only the canary failed
    assert load.failed["v2"] > 0
    figures("stepping canary aborted by itself", load_answered=dict(load.answered),
            load_failed=dict(load.failed), analysis=service.history()[-1]["analysis"])


def test_a_good_stepping_canary_goes_live_by_itself(haproxy_service: Service) -> None:
    service = haproxy_service
    inventory = analysed(service, max_error_rate=1, min_requests=30)
    with ReleaseLoad(service) as load:
        result = service.cli("--json", "deploy", "--canary", "20,50", "--step-pause", "3s",
                             "--source", str(service.release("v2")), "--release", "v2",
                             inventory=inventory)
    ok(result)
    data = json.loads(result.stdout)["data"]
    assert data["live"] == "blue" and data["release"] == "v2"
    assert served(service, 20) == Counter({"v2": 20})
    steps = [(r["operation"], r.get("canary")) for r in service.history()[-3:]]
    assert steps == [("deploy", 20), ("canary promote", 50), ("canary promote", None)]
    assert all(r["analysis"]["passed"] for r in service.history()[-2:])
    assert sum(load.failed.values()) == 0


def test_the_inventory_steps_make_deploys_canaries_timed_and_manual(service: Service) -> None:
    inventory = service.inventory(canary={"steps": [{"weight": 20, "pause": 1},
                                                    {"weight": 50},
                                                    {"weight": 80, "pause": 1}]})
    first = service.cli("deploy", "--source", str(service.release("v1")), "--release", "v1",
                        inventory=inventory)
    ok(first)  # nothing live to share the traffic with: straight to all of it
    assert "first deploy takes all the traffic" in first.stderr
    assert service.state()["canary"] is None
    planned = service.cli("deploy", "--dry-run", "--source", str(service.release("v2")),
                          "--release", "v2", inventory=inventory)
    ok(planned)
    assert "takes 20% (1 s), 50% (until `canary promote`), 80% (1 s)" in planned.stdout
    result = service.cli("--json", "deploy", "--source", str(service.release("v2")),
                         "--release", "v2", inventory=inventory)
    ok(result)  # 20 % for its pause, then 50 %, which waits for a promote
    canary = json.loads(result.stdout)["data"]["canary"]
    assert (canary["weight"], canary["pause"], canary["next_weight"]) == (50, None, 80)
    assert service.state()["weights"] == {"blue": 50, "green": 50}
    assert [(r["operation"], r.get("canary")) for r in service.history()[-2:]] == [
        ("deploy", 20), ("canary promote", 50)]
    ok(service.cli("canary", "promote", inventory=inventory))  # 80 %, its pause, then all
    assert [(r["operation"], r.get("canary")) for r in service.history()[-2:]] == [
        ("canary promote", 80), ("canary promote", None)]
    state = service.state()
    assert (state["live"], state["canary"]) == ("green", None)
    assert served(service, 20) == Counter({"v2": 20})
    straight = service.cli("--json", "deploy", "--no-canary", "--source",
                           str(service.release("v3")), "--release", "v3", inventory=inventory)
    ok(straight)
    assert json.loads(straight.stdout)["data"].get("canary") is None
    assert served(service, 20) == Counter({"v3": 20})


def test_step_and_abort_hooks_run_around_each_weight_change(service: Service) -> None:
    log = service.root / "hooks.log"
    line = f'echo "$BLUEGREEN_HOOK ${{BLUEGREEN_CANARY_WEIGHT:-}} ${{BLUEGREEN_REASON:-}}" >> {log}'
    hooks = {point: [{"run": line}] for point in ("pre_step", "post_step", "on_abort")}
    inventory = service.inventory(hooks=hooks)
    ok(service.cli("deploy", "--source", str(service.release("v1")), "--release", "v1",
                   inventory=inventory))
    ok(service.cli("deploy", "--canary", "10,50", "--source", str(service.release("v2")),
                   "--release", "v2", inventory=inventory))
    ok(service.cli("canary", "promote", inventory=inventory))
    ok(service.cli("canary", "abort", "--reason", "enough", inventory=inventory))
    assert [entry.strip() for entry in log.read_text().splitlines()] == [
        "pre_step 10", "post_step 10", "pre_step 50", "post_step 50",
        "on_abort 50 canary aborted: enough"]
    assert served(service, 20) == Counter({"v1": 20})


def stepping(service: Service, inventory: Any, pause: str) -> subprocess.Popen[str]:
    """`deploy --canary 20,50 --step-pause PAUSE` of v2, started in the background; returns
    once the canary is recorded at its first step (bounded)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bluegreen", "-i", str(inventory), "--json", "deploy",
         "--canary", "20,50", "--step-pause", pause, "--source", str(service.release("v2")),
         "--release", "v2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")})
    deadline = time.monotonic() + 60
    while (service.state().get("canary") or {}).get("weight") != 20:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    return process


def test_a_stepping_canary_killed_in_its_pause_is_read_and_finished_from_another_terminal(
        service: Service) -> None:
    ok(service.deploy("v1"))
    inventory = service.inventory()
    process = stepping(service, inventory, "4s")
    time.sleep(0.5)  # into the pause
    os.kill(process.pid, signal.SIGKILL)  # the process this test started
    process.communicate(timeout=30)
    status = service.cli("--json", "canary", "status", inventory=inventory)
    ok(status)
    canary = json.loads(status.stdout)["data"]["canary"]
    assert (canary["colour"], canary["weight"], canary["steps"], canary["pause"]) == (
        "green", 20, [20, 50], 4)
    assert json.loads(service.cli("--json", "lock", "status").stdout)["data"]["lock"] is None
    # the schedule is in the state: a promote takes the next step, and the ones after it
    ok(service.cli("canary", "promote", inventory=inventory))
    assert [(r["operation"], r.get("canary")) for r in service.history()[-3:]] == [
        ("deploy", 20), ("canary promote", 50), ("canary promote", None)]
    assert served(service, 20) == Counter({"v2": 20})


def test_an_abort_from_another_terminal_during_a_pause_ends_the_stepping(
        service: Service) -> None:
    ok(service.deploy("v1"))
    inventory = service.inventory()
    process = stepping(service, inventory, "4s")
    ok(service.cli("canary", "abort", "--reason", "from a second terminal",
                   inventory=inventory))  # no lock is held during the pause
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "the canary was ended by another operation" in stderr
    assert json.loads(stdout)["data"]["ended_elsewhere"] is True
    assert served(service, 20) == Counter({"v1": 20})
    assert [r["operation"] for r in service.history()[-2:]] == ["deploy", "canary abort"]


def test_a_pause_from_another_terminal_holds_the_stepping_and_resume_continues_it(
        service: Service) -> None:
    ok(service.deploy("v1"))
    inventory = service.inventory()
    # a pause long enough for the two commands below to land in it on a busy machine
    process = stepping(service, inventory, "8s")
    not_paused = service.cli("--json", "canary", "resume", "--lock-wait", "10",
                             inventory=inventory)
    ok(not_paused)  # nothing to resume: it returns at once, stepping nothing itself
    assert json.loads(not_paused.stdout)["data"]["changed"] is False
    assert "not paused: nothing to do" in not_paused.stderr
    paused = service.cli("--json", "canary", "pause", "--reason", "looking at the logs",
                         "--lock-wait", "10", inventory=inventory)
    ok(paused)
    assert json.loads(paused.stdout)["data"]["canary"]["paused_by"]
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "paused by" in stderr and "canary resume" in stderr
    data = json.loads(stdout)["data"]
    assert data["paused"] is True and data["canary"]["weight"] == 20
    time.sleep(8.5)  # longer than the step's pause: nothing follows by itself
    assert service.state()["canary"]["weight"] == 20
    status = service.cli("canary", "status", inventory=inventory)
    assert "canary resume" in status.stdout and "paused by" in status.stdout
    assert "paused by" in service.cli("status", inventory=inventory).stdout
    record = service.history()[-1]
    assert (record["operation"], record["reason"]) == ("canary pause", "looking at the logs")
    # resumed: the step's pause from now, then the next step and all the traffic
    resumed = service.cli("--json", "canary", "resume", inventory=inventory)
    ok(resumed)
    assert json.loads(resumed.stdout)["data"]["live"] == "green"
    assert [(r["operation"], r.get("canary")) for r in service.history()[-3:]] == [
        ("canary resume", 20), ("canary promote", 50), ("canary promote", None)]
    assert served(service, 20) == Counter({"v2": 20})
