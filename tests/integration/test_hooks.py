"""Hooks fire once each, in order, inside the lock, with the documented variables."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.service import Service, process_alive
from tests.integration.test_lock_and_drift import start_cli, wait_for_line

VARIABLES = ("$BLUEGREEN_HOOK $BLUEGREEN_COMMAND $BLUEGREEN_SERVICE release=$BLUEGREEN_RELEASE "
             "from=$BLUEGREEN_FROM to=$BLUEGREEN_TO result=$BLUEGREEN_RESULT "
             "hosts=$BLUEGREEN_APP_HOSTS")
POINTS = ("pre_deploy", "post_deploy", "pre_flip", "post_flip", "post_rollback", "on_failure")


def ok(result: Any) -> None:
    assert result.returncode == 0, (result.stdout, result.stderr)


def hooked(service: Service, log: Path, remote_log: Path, **replace: list[dict[str, Any]]
           ) -> Path:
    hooks: dict[str, list[dict[str, Any]]] = {
        point: [{"run": f'echo "{VARIABLES}" >> {log}'}] for point in POINTS}
    hooks["pre_deploy"].append({"run": f'echo "$BLUEGREEN_HOOK $(hostname)" >> {remote_log}',
                                "on": "app"})
    hooks.update(replace)
    return service.inventory(hooks=hooks)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_each_hook_fires_once_in_order_with_its_variables(service: Service, tmp_path: Path
                                                           ) -> None:
    log, remote = tmp_path / "hooks.log", tmp_path / "remote.log"
    inventory = hooked(service, log, remote)
    ok(service.cli("deploy", "--source", str(service.release("v1")), "--release", "v1",
                   inventory=inventory))
    assert lines(log) == [
        "pre_deploy deploy shop release=v1 from= to=blue result= hosts=app1,app2",
        "pre_flip deploy shop release=v1 from= to=blue result= hosts=app1,app2",
        "post_flip deploy shop release=v1 from= to=blue result= hosts=app1,app2",
        "post_deploy deploy shop release=v1 from= to=blue result=ok hosts=app1,app2",
    ]
    assert len(lines(remote)) == 2 and all(line.startswith("pre_deploy ") for line in
                                           lines(remote))  # once on each app host
    ok(service.cli("deploy", "--source", str(service.release("v2")), "--release", "v2",
                   inventory=inventory))
    log.write_text("")
    ok(service.cli("rollback", inventory=inventory))
    assert [line.split()[0] for line in lines(log)] == ["pre_flip", "post_flip", "post_rollback"]
    assert "from=green to=blue" in lines(log)[0] and "release=v1" in lines(log)[0]
    assert service.history()[-1]["hooks"] == [
        {"hook": point, "index": 0, "on": "local", "ok": True}
        for point in ("pre_flip", "post_flip", "post_rollback")]


def test_a_failing_pre_deploy_hook_changes_nothing(service: Service, tmp_path: Path) -> None:
    ok(service.deploy("v1"))
    before = service.nginx["lb1"].managed_file.read_bytes()
    log = tmp_path / "hooks.log"
    inventory = hooked(service, log, tmp_path / "remote.log",
                       pre_deploy=[{"run": "echo migrations pending >&2; exit 3"}])
    result = service.cli("deploy", "--source", str(service.release("v2")), "--release", "v2",
                         inventory=inventory)
    assert result.returncode == 10, result.stderr
    assert "pre_deploy hook #1" in result.stderr and "migrations pending" in result.stderr
    assert "Nothing was changed" in result.stderr
    assert service.nginx["lb1"].managed_file.read_bytes() == before
    assert all(service.master_pid(h, "green") is None for h in service.app_hosts)
    assert not (service.app_root("app1") / "releases" / "v2").exists()
    assert [line.split()[0] for line in lines(log)] == ["on_failure"]
    assert "result=failed" in lines(log)[0]
    last = service.history()[-1]
    assert last["result"] == "failed" and last["error"]["code"] == "hook_failed"
    assert not service.lock_dir().exists()


def test_a_failing_post_hook_is_reported_and_undoes_nothing(service: Service,
                                                            tmp_path: Path) -> None:
    inventory = hooked(service, tmp_path / "hooks.log", tmp_path / "remote.log",
                       post_deploy=[{"run": "exit 1"}])
    result = service.cli("deploy", "--source", str(service.release("v1")), "--release", "v1",
                         inventory=inventory)
    ok(result)
    assert "post_deploy hook #1" in result.stderr and "nothing is undone" in result.stderr
    assert service.fetch().startswith("release v1 (blue)")
    outcome = service.history()[-1]["hooks"][-1]
    assert outcome["hook"] == "post_deploy" and outcome["ok"] is False


def interrupt_hooks(service: Service, tmp_path: Path, hooks: list[dict[str, Any]], *,
                    running: int) -> None:
    """Deploy with `hooks` as pre_deploy, send SIGINT once `running` of them run, and check
    that each one that started ended with what it started, and that nothing else is left."""
    pids, finished = tmp_path / "pids", tmp_path / "finished"
    body = f'echo $$ >> {pids}; sleep 30; touch {finished}'
    ok(service.deploy("v1"))
    inventory = service.inventory(hooks={"pre_deploy": [{**hook, "run": body}
                                                        for hook in hooks]})
    process = start_cli(service, "deploy", "--source", str(service.release("v2")),
                        "--release", "v2", inventory=inventory)
    try:
        wait_for_line(process, "hooks: pre_deploy")
        deadline = time.monotonic() + 20
        while len(lines(pids)) < running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(lines(pids)) == running
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            process.kill()
    started = [int(pid) for pid in lines(pids)]
    deadline = time.monotonic() + 10
    while any(process_alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(process_alive(pid) for pid in started)
    assert not finished.exists()
    assert not service.lock_dir().exists()
    assert service.fetch().startswith("release v1 (blue)")


def test_an_interrupt_stops_a_local_hook_with_what_it_started(service: Service,
                                                              tmp_path: Path) -> None:
    # the remote hook comes after the local one: it never starts
    interrupt_hooks(service, tmp_path, [{"on": "local"}, {"on": "app"}], running=1)


@pytest.mark.parametrize("role", ["app", "balancer"])  # two hosts; one (run without threads)
def test_an_interrupt_stops_a_hook_running_on_the_hosts(service: Service, tmp_path: Path,
                                                        role: str) -> None:
    hosts = service.app_hosts if role == "app" else service.balancer_hosts
    interrupt_hooks(service, tmp_path, [{"on": role}], running=len(hosts))
