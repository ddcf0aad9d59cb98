"""The lock (held, waited for, released on Ctrl-C), and drift between balancers and state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.service import Service


def start_cli(service: Service, *args: str, inventory: Path | None = None
              ) -> subprocess.Popen[str]:
    # faulthandler: a CLI that does not end when it should is made to say where it stands
    return subprocess.Popen(
        [sys.executable, "-m", "bluegreen", "-i", str(inventory or service.inventory()), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"})


def wait_or_say_where(process: subprocess.Popen[str], timeout: float) -> int:
    """The CLI's exit code; if it has not ended within `timeout`, a failure with what it
    printed since and every thread's stack (SIGABRT makes faulthandler print them)."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        _, stderr = process.communicate(timeout=10)
        raise AssertionError(f"the CLI did not end within {timeout:g} s; it printed:\n"
                             f"{stderr}") from None


def wait_for_line(process: subprocess.Popen[str], needle: str, timeout: float = 30) -> str:
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"never saw {needle!r}; stderr so far:\n{seen}")


def test_a_second_deploy_is_refused_then_queues_with_lock_wait(service: Service) -> None:
    assert service.deploy("v1").returncode == 0
    # slow enough that the refusal, the lock status and the queued deploy below all happen
    # while it holds the lock, also with the CPUs busy
    slow = service.release("v2", slow_start=12)
    first = start_cli(service, "deploy", "--source", str(slow), "--release", "v2")
    try:
        wait_for_line(first, "health-check")
        refused = service.cli("deploy", "--source", str(service.release("v3")),
                              "--release", "v3")
        assert refused.returncode == 4, refused.stderr
        assert "deploy v2" in refused.stderr and "held by" in refused.stderr
        assert "--lock-wait" in refused.stderr
        status = json.loads(service.cli("--json", "lock", "status").stdout)["data"]["lock"]
        assert status["command"] == "deploy v2" and status["stale"] is False
        queued = service.cli("deploy", "--lock-wait", "60", "--source",
                             str(service.release("v3")), "--release", "v3")
        assert first.wait(timeout=60) == 0, first.stderr.read()  # type: ignore[union-attr]
    finally:
        if first.poll() is None:
            first.kill()
    assert queued.returncode == 0, queued.stderr
    assert "waiting up to 60 s for the lock" in queued.stderr
    assert service.fetch().startswith("release v3 (blue)")
    assert [r["release"] for r in service.history()] == ["v1", "v2", "v3"]


def test_sigint_during_health_checks_releases_the_lock_and_leaves_traffic(
        service: Service) -> None:
    assert service.deploy("v1").returncode == 0
    before = service.nginx["lb1"].managed_file.read_bytes()
    slow = service.release("v2", slow_start=20)
    process = start_cli(service, "deploy", "--source", str(slow), "--release", "v2")
    try:
        wait_for_line(process, "health-check")
        assert service.lock_dir().is_dir()
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        code = wait_or_say_where(process, 20)
        assert time.monotonic() - started < 5  # does not sit out the health-check retries
    finally:
        if process.poll() is None:
            process.kill()
    assert process.stderr is not None
    said = process.stderr.read()
    assert code == 130, said  # what it said, should another error replace the interrupt's
    assert "interrupted" in said
    assert not service.lock_dir().exists()
    assert service.nginx["lb1"].managed_file.read_bytes() == before
    assert service.fetch().startswith("release v1 (blue)")
    assert service.history()[-1]["result"] == "interrupted"


def test_sigterm_is_handled_like_ctrl_c(service: Service) -> None:
    assert service.deploy("v1").returncode == 0
    process = start_cli(service, "deploy", "--source",
                        str(service.release("v2", slow_start=20)), "--release", "v2")
    try:
        wait_for_line(process, "health-check")
        process.send_signal(signal.SIGTERM)
        code = wait_or_say_where(process, 20)
        assert process.stderr is not None
        assert code == 130, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert not service.lock_dir().exists()
    assert service.fetch().startswith("release v1 (blue)")


def plant_lock(service: Service, *, owner: str, pid: int, host: str, command: str,
               heartbeat_age: float) -> Path:
    """A lock as another operation leaves it, its heartbeat `heartbeat_age` seconds old."""
    lock = service.lock_dir()
    lock.mkdir(mode=0o700)
    (lock / "owner.json").write_text(json.dumps({
        "owner": owner, "pid": pid, "host": host, "command": command,
        "started": "2026-01-01T00:00:00+00:00", "token": "not ours"}))
    (lock / "heartbeat").write_text("")
    beat = time.time() - heartbeat_age
    os.utime(lock / "heartbeat", (beat, beat))
    return lock


def test_a_stale_lock_is_reported_and_can_be_released(service: Service) -> None:
    assert service.deploy("v1").returncode == 0
    lock = plant_lock(service, owner="ci@runner-7", pid=999999, host="runner-7",
                      command="deploy v9", heartbeat_age=3600)
    refused = service.deploy("v2")
    assert refused.returncode == 4
    assert "ci@runner-7" in refused.stderr and "deploy v9" in refused.stderr
    assert "looks dead" in refused.stderr and "lock release" in refused.stderr
    released = service.cli("lock", "release")
    assert released.returncode == 0 and "released" in released.stdout
    assert not lock.exists()
    assert service.deploy("v2").returncode == 0


def test_a_live_lock_needs_force(service: Service) -> None:
    assert service.deploy("v1").returncode == 0
    lock = plant_lock(service, owner="ops@laptop", pid=1, host="laptop",
                      command="switch --to green", heartbeat_age=0)
    refused = service.cli("lock", "release")
    assert refused.returncode == 4 and "--force" in refused.stderr
    assert lock.exists()
    assert service.cli("lock", "release", "--force").returncode == 0
    assert not lock.exists()


def test_balancers_that_disagree_block_deploy_until_switch_reconciles(
        two_balancers: Service) -> None:
    service = two_balancers
    assert service.deploy("v1").returncode == 0
    assert service.deploy("v2").returncode == 0
    for name in ("lb1", "lb2"):
        assert service.fetch(name).startswith("release v2 (green)")
    # lb2's state goes back one generation, as if a write had been lost there
    path = service.root / "state-lb2" / "state.json"
    state = json.loads(path.read_text())
    state.update(live="blue", generation=1)
    path.write_text(json.dumps(state))

    refused = service.deploy("v3")
    assert refused.returncode == 9, refused.stderr
    assert "disagree" in refused.stderr and "lb2" in refused.stderr
    status = service.cli("--json", "status")
    assert status.returncode == 9
    data = json.loads(status.stdout)["data"]
    assert data["drift"] and "disagree" in data["drift"]
    assert any(b["host"] == "lb2" and b["drift"] for b in data["balancers"])

    reconciled = service.cli("switch", "--to", "green")
    assert reconciled.returncode == 0, reconciled.stderr
    assert service.cli("status").returncode == 0
    assert service.state("lb1") == service.state("lb2")
    assert service.deploy("v3").returncode == 0
    for name in ("lb1", "lb2"):
        assert service.fetch(name).startswith("release v3 (blue)")
    # the read-only commands talk to the primary balancer only
    history = service.cli("--json", "history", "-n", "1")
    assert history.returncode == 0 and '"release": "v3"' in history.stdout
    assert service.cli("lock", "status").returncode == 0


def test_a_hand_edited_balancer_file_is_drift(service: Service) -> None:
    assert service.deploy("v1").returncode == 0
    managed: Path = service.nginx["lb1"].managed_file
    managed.write_text(managed.read_text().replace("keepalive 32", "keepalive 8"))
    status = service.cli("status")
    assert status.returncode == 9 and "DRIFT" in status.stdout
    refused = service.deploy("v2")
    assert refused.returncode == 9 and "edited" in refused.stderr
    assert service.cli("switch", "--to", "blue").returncode == 0
    assert service.cli("status").returncode == 0


def test_a_deploy_whose_lock_was_taken_over_stops_before_moving_traffic(
        service: Service) -> None:
    assert service.deploy("v1").returncode == 0
    # while v2 starts, someone forces the lock away and switches: the state changes under the
    # deploy, which must then refuse to flip (the check runs on the balancer as it stages)
    first = start_cli(service, "deploy", "--source",
                      str(service.release("v2", slow_start=12)), "--release", "v2")
    try:
        wait_for_line(first, "health-check")
        assert service.cli("lock", "release", "--force").returncode == 0
        switched = service.cli("switch", "--to", "blue")
        assert switched.returncode == 0, switched.stderr
        after_switch = service.nginx["lb1"].managed_file.read_bytes()
        code = first.wait(timeout=60)
        stderr = first.stderr.read()  # type: ignore[union-attr]
    finally:
        if first.poll() is None:
            first.kill()
    assert code == 9, stderr
    assert "the state changed after this operation read it" in stderr
    assert "nothing was flipped" in stderr and "Traceback" not in stderr
    assert service.nginx["lb1"].managed_file.read_bytes() == after_switch  # put back
    assert service.fetch().startswith("release v1 (blue)")
    assert service.state()["live"] == "blue"
    assert service.history()[-1]["operation"] == "deploy"
    assert service.history()[-1]["error"]["code"] == "drift"
