"""`bluegreen reload` against real Swoole masters (the example server): a rolling reload onto a
new release under load, a user process that no reload replaces, task-worker-only reloads, and a
reload of broken code that must never reach clients. Skipped where PHP has no Swoole."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import Fleet
from tests.integration.service import LoadDuring, serve
from tests.integration.swoole import (
    TASK_WORKERS,
    WORKERS,
    SwooleService,
    descendants,
    require_swoole,
)
from tests.integration.test_swoole import TASK_WORKER_PATTERN, WORKER_PATTERN, masters

require_swoole()


@pytest.fixture
def swoole(fleet: Fleet, tmp_path: Path) -> Iterator[SwooleService]:
    under_test = SwooleService(fleet, tmp_path, ["app1", "app2"], ["lb1"])
    under_test.add_user_process()  # every master also runs an addProcess() user process
    yield from serve(under_test)


def ok(result: Any) -> None:
    assert result.returncode == 0, (result.stdout, result.stderr)


def named(master: int, pattern: Any) -> set[int]:
    return {p for p, args in descendants(master).items() if pattern.search(args)}


def user_process(master: int) -> int:
    (pid,) = [p for p, args in descendants(master).items() if args.endswith(": heartbeat")]
    return pid


def test_a_rolling_reload_onto_a_new_release_under_load_drops_nothing(
        swoole: SwooleService) -> None:
    ok(swoole.deploy("v1"))
    blue = masters(swoole, "blue")
    before = {h: named(m, WORKER_PATTERN) for h, m in blue.items()}
    users = {h: user_process(m) for h, m in blue.items()}
    with LoadDuring(swoole.nginx["lb1"].url) as load:
        result = swoole.cli("reload", "--source", str(swoole.release("v2")), "--release", "v2")
        load.wait_for_body("release v2 (blue)")
    ok(result)
    assert load.results["failed"] == 0, load.results["errors"][:5]
    assert load.results["bodies"] == {"release v1 (blue)", "release v2 (blue)"}
    assert masters(swoole, "blue") == blue  # masters kept
    for host, master in blue.items():
        after = named(master, WORKER_PATTERN)
        assert len(after) == WORKERS + TASK_WORKERS and not after & before[host]
        assert user_process(master) == users[host]  # the user process is no worker
    assert f"{WORKERS + TASK_WORKERS} worker(s) replaced" in result.stderr
    assert swoole.fetch().startswith("release v2 (blue)")
    blue_state = swoole.state()["colours"]["blue"]
    assert (blue_state["release"], blue_state["status"], blue_state["out"]) == (
        "v2", "running", [])


def test_a_task_worker_reload_replaces_and_counts_only_task_workers(
        swoole: SwooleService) -> None:
    ok(swoole.deploy("v1"))
    blue = masters(swoole, "blue")
    workers = {h: named(m, WORKER_PATTERN) - named(m, TASK_WORKER_PATTERN)
               for h, m in blue.items()}
    tasks = {h: named(m, TASK_WORKER_PATTERN) for h, m in blue.items()}
    result = swoole.cli("reload", "--task-workers")
    ok(result)
    assert result.stderr.count(f"{TASK_WORKERS} task worker(s) replaced") == 2
    for host, master in blue.items():
        assert named(master, WORKER_PATTERN) - named(master, TASK_WORKER_PATTERN) == (
            workers[host])
        now = named(master, TASK_WORKER_PATTERN)
        assert len(now) == TASK_WORKERS and not now & tasks[host]


def test_a_reload_of_code_that_does_not_parse_never_reaches_clients(
        swoole: SwooleService) -> None:
    ok(swoole.deploy("v1"))
    blue = masters(swoole, "blue")
    started = time.monotonic()
    with LoadDuring(swoole.nginx["lb1"].url) as load:
        result = swoole.cli("reload", "--source",
                            str(swoole.release("broken", crash=True)), "--release", "broken")
    took = time.monotonic() - started
    assert result.returncode == 5, result.stderr
    assert "crash loop" in result.stderr and "PHP Parse error" in result.stderr
    assert "Reloaded: none; out of traffic: app1; not reloaded: app2." in result.stderr
    assert took < 60  # caught by the settle check, not after every health retry (a bound)
    # no request failed or hung: app1 left traffic before its signal, and stays out
    assert load.results["failed"] == 0, load.results["errors"][:5]
    assert load.results["bodies"] == {"release v1 (blue)"}
    assert "# app1 blue" not in swoole.nginx["lb1"].managed_file.read_text()
    state = swoole.state()["colours"]["blue"]
    assert (state["status"], state["release"], state["out"]) == ("failed", "broken", ["app1"])
    assert masters(swoole, "blue") == blue  # the master survived its crashing workers

    # the way back: a reload onto the release that worked puts app1 back into traffic
    ok(swoole.cli("reload", "--release", "v1"))
    assert "# app1 blue" in swoole.nginx["lb1"].managed_file.read_text()
    state = swoole.state()["colours"]["blue"]
    assert (state["status"], state["release"], state["out"]) == ("running", "v1", [])
    assert masters(swoole, "blue") == blue


def test_a_request_longer_than_max_wait_time_is_reported_as_cut(swoole: SwooleService) -> None:
    import threading
    import urllib.error
    import urllib.request

    ok(swoole.deploy("v1"))
    outcome: dict[str, Any] = {}
    # 10 s, straight to app1's instance: longer than the example's max_wait_time (3 s)
    url = (f"http://{swoole.fleet['app1'].address}:{swoole.ports['blue']}/slow?seconds=10")

    def slow() -> None:
        try:
            with urllib.request.urlopen(url, timeout=20) as response:
                outcome["body"] = response.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            outcome["error"] = repr(exc)

    request = threading.Thread(target=slow)
    request.start()
    time.sleep(0.5)  # in flight
    # the drain wait ends after 1 s, long before the request does
    result = swoole.cli("reload", inventory=swoole.inventory(balancer={"drain_timeout": 1}))
    request.join(timeout=30)
    ok(result)
    assert "1 connection(s) still open after 1 s" in result.stderr
    # the report says what happened to the request: cut (its worker killed at max_wait_time,
    # the usual case) — or, if the request reached a worker only after the signal, served
    warned = "app1: 1 worker(s) were still busy at Swoole's max_wait_time" in result.stderr
    assert warned == ("body" not in outcome), (
        outcome, result.stderr[-3000:], swoole.log("app1", "blue")[-3000:])
