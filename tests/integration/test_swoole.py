"""The Swoole example (examples/swoole/) deployed by the real CLI on the loopback fleet: two app
hosts behind nginx, each colour a real Swoole master. Skipped where PHP has no Swoole."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import Fleet
from tests.integration.service import LoadDuring, serve
from tests.integration.swoole import (
    EXAMPLE_INVENTORY,
    TASK_WORKERS,
    WORKERS,
    SwooleService,
    descendants,
    process_args,
    require_swoole,
    running,
)

require_swoole()

WORKER_PATTERN = re.compile(EXAMPLE_INVENTORY["app"]["worker_pattern"])
TASK_WORKER_PATTERN = re.compile(EXAMPLE_INVENTORY["app"]["task_worker_pattern"])


@pytest.fixture
def swoole(fleet: Fleet, tmp_path: Path) -> Iterator[SwooleService]:
    """Two app hosts running the Swoole example, one nginx balancer."""
    yield from serve(SwooleService(fleet, tmp_path, ["app1", "app2"], ["lb1"]))


def ok(result: Any) -> None:
    assert result.returncode == 0, (result.stdout, result.stderr)


def masters(service: SwooleService, colour: str) -> dict[str, int]:
    found = {host: service.master_pid(host, colour) for host in service.app_hosts}
    assert all(found.values()), f"{colour} has no pid file on some host: {found}"
    return {host: pid for host, pid in found.items() if pid}


def assert_serves(service: SwooleService, release: str, colour: str) -> None:
    """nginx serves `release` from `colour`, and from both app hosts (round robin)."""
    workers = {host: set(descendants(pid)) for host, pid in masters(service, colour).items()}
    served_by = set()
    for _ in range(8):
        with urllib.request.urlopen(service.nginx["lb1"].url, timeout=10) as response:
            body = response.read().decode()
            assert response.headers["X-Release"] == release
        assert body.startswith(f"release {release} ({colour}) pid "), body
        pid = int(body.split(" pid ")[1])
        served_by |= {host for host, pids in workers.items() if pid in pids}
    assert served_by == set(service.app_hosts)


def wait_replaced(master: int, old: set[int], pattern: re.Pattern[str], what: str) -> None:
    """Until none of `old` runs under `master` and as many processes match `pattern` again."""
    deadline = time.monotonic() + 15
    while True:
        now = {p for p, args in descendants(master).items() if pattern.search(args)}
        if not now & old and len(now) == len(old):
            return
        assert time.monotonic() < deadline, f"{what} did not replace {sorted(old)}: {sorted(now)}"
        time.sleep(0.02)


def test_deploy_and_rollback_serve_each_release_through_nginx(swoole: SwooleService) -> None:
    ok(swoole.deploy("v1"))
    assert_serves(swoole, "v1", "blue")
    blue = masters(swoole, "blue")

    ok(swoole.deploy("v2"))
    assert_serves(swoole, "v2", "green")
    # the old colour still runs, untouched: that is what makes the rollback instant
    assert masters(swoole, "blue") == blue and all(running(p) for p in blue.values())
    green = masters(swoole, "green")

    rollback = swoole.cli("rollback")
    ok(rollback)
    assert_serves(swoole, "v1", "blue")
    # no process was started or stopped
    assert masters(swoole, "blue") == blue and masters(swoole, "green") == green
    assert all(running(p) for p in [*blue.values(), *green.values()])
    for host in swoole.app_hosts:
        root = swoole.app_root(host)
        assert (root / "blue").resolve() == (root / "releases" / "v1").resolve()
        assert (root / "green").resolve() == (root / "releases" / "v2").resolve()
        for colour in ("blue", "green"):
            assert "onFinish" not in swoole.log(host, colour)

    # a deploy onto the idle colour that still runs stops its masters and starts new ones
    ok(swoole.deploy("v3"))
    assert_serves(swoole, "v3", "green")
    assert not set(masters(swoole, "green").values()) & set(green.values())
    deadline = time.monotonic() + 10  # the stop waited for the port and the pid file only
    while any(running(p) for p in green.values()):
        assert time.monotonic() < deadline, f"the old green masters {green} still run"
        time.sleep(0.05)
    assert masters(swoole, "blue") == blue
    assert [r["operation"] for r in swoole.history()] == ["deploy", "deploy", "rollback",
                                                           "deploy"]
    assert all(r["result"] == "ok" for r in swoole.history())


def test_worker_patterns_name_exactly_what_a_reload_replaces(swoole: SwooleService) -> None:
    swoole.add_user_process()
    ok(swoole.deploy("v1"))
    workers = {f"shop-blue: worker #{n}" for n in range(WORKERS)}
    tasks = {f"shop-blue: task #{n}" for n in range(TASK_WORKERS)}
    for host, master in masters(swoole, "blue").items():
        assert process_args()[master][1] == "shop-blue: master"
        processes = descendants(master)
        assert sorted(processes.values()) == sorted(
            ["shop-blue: manager", "shop-blue: heartbeat", *workers, *tasks]), host
        matched = {pid for pid, args in processes.items() if WORKER_PATTERN.search(args)}
        task_matched = {pid for pid, args in processes.items() if TASK_WORKER_PATTERN.search(args)}
        assert {processes[p] for p in matched} == workers | tasks
        assert {processes[p] for p in task_matched} == tasks
        # the user process has no children, like a worker: only its name tells them apart
        (heartbeat,) = [p for p, args in processes.items() if args == "shop-blue: heartbeat"]
        assert not WORKER_PATTERN.search(processes[heartbeat])
        assert heartbeat not in {ppid for ppid, _ in process_args().values()}

        # Swoole itself agrees: SIGUSR1 replaces every matched process and keeps the user
        # process; SIGUSR2 replaces the task workers only
        os.kill(master, signal.SIGUSR1)
        wait_replaced(master, matched, WORKER_PATTERN, f"{host}: SIGUSR1")
        after = descendants(master)
        assert heartbeat in after
        workers_now = {p for p, args in after.items() if WORKER_PATTERN.search(args)
                       and not TASK_WORKER_PATTERN.search(args)}
        tasks_now = {p for p, args in after.items() if TASK_WORKER_PATTERN.search(args)}
        os.kill(master, signal.SIGUSR2)
        wait_replaced(master, tasks_now, TASK_WORKER_PATTERN, f"{host}: SIGUSR2")
        final = descendants(master)
        assert workers_now <= set(final) and heartbeat in final
    assert swoole.fetch().startswith("release v1 (blue)")


def test_no_request_fails_during_deploy_and_rollback(swoole: SwooleService) -> None:
    ok(swoole.deploy("v1"))
    url = swoole.nginx["lb1"].url
    old, new = "release v1 (blue)", "release v2 (green)"

    with LoadDuring(url) as load:
        deploy = swoole.deploy("v2")
        load.wait_for_body(new)
    ok(deploy)
    assert load.results["failed"] == 0, load.results["errors"][:5]
    assert load.results["bodies"] == {old, new}, load.results["bodies"]

    with LoadDuring(url) as load:
        rollback = swoole.cli("rollback")
        load.wait_for_body(old)
    ok(rollback)
    assert load.results["failed"] == 0, load.results["errors"][:5]
    assert load.results["bodies"] == {old, new}, load.results["bodies"]


def test_a_release_that_does_not_parse_never_gets_traffic(swoole: SwooleService) -> None:
    ok(swoole.deploy("v1"))
    before = swoole.nginx["lb1"].managed_file.read_bytes()
    blue = masters(swoole, "blue")
    inventory = swoole.inventory(health={"timeout": 0.5, "retries": 10})
    result = swoole.cli("deploy", "--source", str(swoole.release("broken", crash=True)),
                        "--release", "broken", inventory=inventory)
    assert result.returncode == 5, result.stderr
    assert "PHP Parse error" in result.stderr  # the server's own log, shown to the user
    assert swoole.nginx["lb1"].managed_file.read_bytes() == before
    assert masters(swoole, "blue") == blue
    assert swoole.fetch().startswith("release v1 (blue)")
    assert swoole.history()[-1]["error"]["code"] == "health_check_failed"
