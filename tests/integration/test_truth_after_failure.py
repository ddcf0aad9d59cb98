"""After any failed or cut-short operation the state says what runs where, and rollback never
flips to a colour that no longer runs the release it served."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

from tests.integration.service import Service, process_alive
from tests.integration.test_lock_and_drift import start_cli, wait_for_line


def ok(result: object) -> None:
    assert result.returncode == 0, (result.stdout, result.stderr)  # type: ignore[attr-defined]


def status_data(service: Service) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = service.cli("--json", "status")
    return result.returncode, json.loads(result.stdout)["data"]


def test_a_failed_verification_leaves_a_truthful_state_and_rollback_refuses_it(
        service: Service) -> None:
    ok(service.deploy("v1"))  # blue
    ok(service.deploy("v2"))  # green live, blue keeps v1 for rollback
    inventory = service.inventory(verify={"expect_body": "release NOPE-{{ release }}",
                                          "attempts": 2})
    failed = service.cli("deploy", "--source", str(service.release("v5")), "--release", "v5",
                         inventory=inventory)
    assert failed.returncode == 7, failed.stderr
    assert service.fetch().startswith("release v2 (green)")

    blue = service.state()["colours"]["blue"]
    assert (blue["status"], blue["release"], blue["replaced"]) == ("failed", "v5", "v1")
    assert "verify_failed" in blue["error"]
    assert service.state()["operation"] is None
    code, data = status_data(service)
    assert code == 0 and data["colours"]["blue"]["status"] == "failed"
    assert {i["release"] for i in data["instances"] if i["colour"] == "blue"} == {"v5"}
    human = service.cli("--no-color", "status")
    assert "failed" in human.stdout and "replacing v1" in human.stdout

    # rollback would serve v5: refused, naming what runs there and what to do
    refused = service.cli("rollback")
    assert refused.returncode == 8, refused.stderr
    assert "v5" in refused.stderr and "deploy --to blue --release v1" in refused.stderr
    assert service.fetch().startswith("release v2 (green)")
    assert service.history()[-1]["operation"] == "rollback"

    # the next deploy to blue makes it a rollback target again
    ok(service.deploy("v6"))
    assert service.fetch().startswith("release v6 (blue)")
    ok(service.cli("rollback"))
    assert service.fetch().startswith("release v2 (green)")


def test_a_failed_health_check_marks_the_colour_and_json_names_the_failure(
        service: Service) -> None:
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))
    inventory = service.inventory(health={"retries": 3})
    failed = service.cli("--json", "deploy", "--source",
                         str(service.release("bad", fail_health=True)), "--release", "bad",
                         inventory=inventory)
    assert failed.returncode == 5, failed.stderr
    error = json.loads(failed.stdout)["error"]
    assert error["code"] == "health_check_failed" and error["exit_code"] == 5
    blue = service.state()["colours"]["blue"]
    assert (blue["status"], blue["release"]) == ("failed", "bad")
    refused = service.cli("--json", "rollback")
    assert refused.returncode == 8
    assert json.loads(refused.stdout)["error"]["code"] == "rollback_impossible"
    assert service.fetch().startswith("release v2 (green)")
    record = service.history()[-1]  # a refusal is history too
    assert (record["operation"], record["result"], record["error"]["exit_code"]) == (
        "rollback", "failed", 8)


def test_a_balancer_that_fails_to_validate_leaves_the_target_marked_failed(
        service: Service, tmp_path: object) -> None:
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))
    broken = service.root / "broken.j2"
    broken.write_text("upstream {{ upstream_name }} { servr 127.0.0.1:1; }\n")
    failed = service.cli("deploy", "--source", str(service.release("v3")), "--release", "v3",
                         inventory=service.inventory(balancer={"template": str(broken)}))
    assert failed.returncode == 6, failed.stderr
    blue = service.state()["colours"]["blue"]
    assert (blue["status"], blue["release"]) == ("failed", "v3")
    assert service.cli("rollback").returncode == 8
    assert service.fetch().startswith("release v2 (green)")


def signal_slow_deploy(service: Service, signum: int, *, repeat: int = 1,
                       meanwhile: Callable[[], None] = lambda: None) -> tuple[int, str]:
    """Deploy v3 with v1 and v2 deployed before (green live): a release whose workers take 30 s
    to come up, so the signal (`repeat` of them, 20 ms apart) lands during its health checks.
    Returns the exit code and stderr."""
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))
    process = start_cli(service, "deploy", "--source",
                        str(service.release("v3", slow_start=30)), "--release", "v3")
    try:
        wait_for_line(process, "health-check")
        meanwhile()
        for _ in range(repeat):
            if process.poll() is not None:
                break
            process.send_signal(signum)
            time.sleep(0.02)
        code = process.wait(timeout=30)
        return code, process.stderr.read()  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            process.kill()


def test_kill_9_mid_deploy_leaves_a_state_that_says_so(service: Service) -> None:
    def in_progress_is_not_drift() -> None:
        code, data = status_data(service)
        assert code == 0 and data["operation"]["in_progress"]
        assert data["operation"]["command"] == "deploy v3"

    signal_slow_deploy(service, signal.SIGKILL, meanwhile=in_progress_is_not_drift)
    state = service.state()
    assert state["colours"]["blue"]["status"] == "starting"
    assert state["colours"]["blue"]["release"] == "v3"
    assert state["operation"]["command"] == "deploy v3"
    assert service.fetch().startswith("release v2 (green)")

    human = service.cli("--no-color", "status", inventory=service.inventory(
        lock={"stale_after": 1}))
    assert "cut short" in human.stdout and "deploy v3" in human.stdout
    assert "starting" in human.stdout

    # the killed holder's lock is recognised as such, even by --lock-wait, which stops waiting
    held = service.cli("rollback", "--lock-wait", "60")
    assert held.returncode == 4, held.stderr
    assert "holder looks dead" in held.stderr and "lock release" in held.stderr
    ok(service.cli("lock", "release"))  # no --force needed: its holder is gone
    refused = service.cli("rollback")
    assert refused.returncode == 8, refused.stderr
    assert "did not finish" in refused.stderr and "deploy v3" in refused.stderr

    ok(service.deploy("v4"))
    assert service.fetch().startswith("release v4 (blue)")
    assert service.state()["operation"] is None


def test_ctrl_c_during_the_start_marks_the_colour_failed_and_says_so(service: Service) -> None:
    code, stderr = signal_slow_deploy(service, signal.SIGINT)
    assert code == 130
    assert "live traffic was left as it was" in stderr and "marked failed" in stderr
    blue = service.state()["colours"]["blue"]
    assert (blue["status"], blue["release"]) == ("failed", "v3")
    assert "interrupted" in blue["error"]
    last = service.history()[-1]
    assert last["result"] == "interrupted" and last["flipped"] is False
    assert not service.lock_dir().exists()
    assert service.fetch().startswith("release v2 (green)")
    assert service.cli("rollback").returncode == 8


def test_rollback_refuses_a_colour_changed_behind_its_back(service: Service) -> None:
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))
    # someone repoints blue by hand on one host: the state still says v1
    root = service.app_root("app2")
    (root / "blue").unlink()
    (root / "blue").symlink_to("releases/v2")
    refused = service.cli("rollback")
    assert refused.returncode == 8, refused.stderr
    assert "app2 points blue at v2" in refused.stderr
    assert service.fetch().startswith("release v2 (green)")


def test_retire_is_written_ahead_and_a_retired_failure_cannot_be_restarted(
        service: Service) -> None:
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))
    ok(service.cli("retire", "--drain-timeout", "2"))
    blue = service.state()["colours"]["blue"]
    assert (blue["status"], blue["release"], blue["error"]) == ("retired", "v1", None)
    assert service.state()["operation"] is None
    ok(service.cli("rollback", "--restart"))
    assert service.fetch().startswith("release v1 (blue)")

    # green (idle now) fails a deploy, is then retired: --restart must not start the failure
    failed = service.cli("deploy", "--source", str(service.release("bad", fail_health=True)),
                         "--release", "bad", inventory=service.inventory(health={"retries": 3}))
    assert failed.returncode == 5
    ok(service.cli("retire", "--drain-timeout", "2"))
    refused = service.cli("rollback", "--restart")
    assert refused.returncode == 8, refused.stderr
    assert "bad" in refused.stderr


def test_a_stale_server_on_the_target_port_fails_the_deploy_by_name(service: Service) -> None:
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))
    ok(service.cli("rollback"))  # blue v1 live; green v2 idle and running
    for host in service.app_hosts:  # green's pid files vanish: bluegreen sees it stopped
        (service.app_root(host) / "green.pid").rename(service.app_root(host) / "green.pid.kept")
    try:
        failed = service.deploy("v3")
        assert failed.returncode == 5, failed.stderr
        assert "still in use by gunicorn" in failed.stderr and "stale server" in failed.stderr
        assert service.fetch().startswith("release v1 (blue)")
        green = service.state()["colours"]["green"]
        assert (green["status"], green["release"]) == ("failed", "v3")
    finally:
        for host in service.app_hosts:  # so that the fixture stops these servers
            (service.app_root(host) / "green.pid.kept").rename(service.app_root(host) / "green.pid")


def test_ctrl_c_during_a_slow_verification_cuts_it_short_and_flips_back(service: Service
                                                                        ) -> None:
    ok(service.deploy("v1"))
    inventory = service.inventory(verify={"expect_body": "release NOPE-{{ release }}",
                                          "attempts": 500})
    process = start_cli(service, "deploy", "--source", str(service.release("v2")),
                        "--release", "v2", inventory=inventory)
    try:
        wait_for_line(process, "verify through")
        signalled = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        took = time.monotonic() - signalled
        stderr = process.stderr.read()  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            process.kill()
    assert "flip back" in stderr and "live traffic was left as it was" in stderr
    assert service.fetch().startswith("release v1 (blue)")
    last = service.history()[-1]
    assert last["result"] == "interrupted" and last["flipped"] is False
    assert service.state()["colours"]["green"]["status"] == "failed"
    assert not service.lock_dir().exists()
    print(f"signal to exit during verification: {took:.2f} s")  # all 500 attempts: ~100 s


def test_a_full_disk_on_the_balancer_restores_traffic_and_blocks_nothing(
        service: Service) -> None:
    import subprocess

    import pytest

    state_dir = service.root / "state-lb1"
    state_dir.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=700", "tmpfs",
                              str(state_dir)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {mounted.stderr.strip()}")
    try:
        ok(service.deploy("v1"))
        ok(service.deploy("v2"))
        # just before the flip, the state directory's disk fills up
        fill = f"dd if=/dev/zero of={state_dir}/fill bs=4096 2>/dev/null; true"
        inventory = service.inventory(hooks={"pre_flip": [{"run": fill, "on": "balancer"}]})
        full = service.cli("deploy", "--source", str(service.release("v3")), "--release", "v3",
                           inventory=inventory)
        assert full.returncode == 11, full.stderr
        assert "could not write the state" in full.stderr
        assert "Traceback" not in full.stderr
        assert service.fetch().startswith("release v2 (green)")  # flipped back
        assert not service.lock_dir().exists()
        # the state written ahead still tells the truth: blue was being changed to v3
        blue = service.state()["colours"]["blue"]
        assert (blue["status"], blue["release"]) == ("starting", "v3")
        assert service.state()["live"] == "green"

        # still full: the next operation cannot even take the lock, and leaves none behind
        blocked = service.deploy("v4")
        assert blocked.returncode == 11, blocked.stderr
        assert "could not" in blocked.stderr and "No space left on device" in blocked.stderr
        assert not service.lock_dir().exists()

        (state_dir / "fill").unlink()
        code, data = status_data(service)
        assert code == 0 and data["live"] == "green" and data["drift"] is None
        assert service.cli("rollback").returncode == 8  # blue no longer runs v1
        ok(service.deploy("v4"))
        assert service.fetch().startswith("release v4 (blue)")
    finally:
        subprocess.run(["umount", "-l", str(state_dir)], check=False)


def test_status_tells_a_file_nginx_has_not_loaded_from_what_it_serves(service: Service
                                                                      ) -> None:
    import os

    ok(service.deploy("v1"))
    code, data = status_data(service)
    balancer = data["balancers"][0]
    assert code == 0 and balancer["file_loaded"] is True and balancer["serving"] == "blue"
    # the file is written after nginx's workers started, as a staged file left in place is
    managed = service.nginx["lb1"].managed_file
    later = time.time() + 30
    os.utime(managed, (later, later))
    code, data = status_data(service)
    balancer = data["balancers"][0]
    assert code == 9 and balancer["file_loaded"] is False and balancer["serving"] is None
    assert "staged but not loaded" in data["drift"]


def test_repeated_ctrl_c_cannot_leave_the_lock_or_lose_the_record(service: Service) -> None:
    code, _ = signal_slow_deploy(service, signal.SIGINT, repeat=5)  # an impatient user
    assert code == 130
    assert not service.lock_dir().exists()
    last = service.history()[-1]
    assert last["operation"] == "deploy" and last["result"] == "interrupted"
    assert service.state()["colours"]["blue"]["status"] == "failed"
    assert service.fetch().startswith("release v2 (green)")


def test_a_listener_on_another_address_of_the_host_is_not_the_instance(service: Service
                                                                        ) -> None:
    import socket

    ok(service.deploy("v1"))
    # someone else's server on green's port, but on another address of app1's machine
    other = socket.socket()
    other.bind(("127.0.10.99", service.ports["green"]))
    other.listen()
    try:
        ok(service.deploy("v2"))  # not "port in use", and really started on app1's address
        assert service.fetch().startswith("release v2 (green)")
        green = service.master_pid("app1", "green")
        assert green is not None
        ok(service.cli("rollback"))
        # stopping green waits for *its* port to be free, not for the other listener
        ok(service.cli("retire", "--drain-timeout", "1"))
        deadline = time.monotonic() + 10  # the port closes just before the process ends
        while process_alive(green) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process_alive(green)
        assert service.state()["colours"]["green"]["status"] == "retired"
    finally:
        other.close()
