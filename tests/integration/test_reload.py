"""`bluegreen reload`: in-place graceful worker reload with gunicorn (HUP), verified by PIDs."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from tests.integration.service import LoadDuring, Service, process_alive


def ok(result: Any) -> None:
    assert result.returncode == 0, (result.stdout, result.stderr)


def workers_of(master: int) -> set[int]:
    children = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == master:
                        children.add(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return children


def test_rolling_reload_onto_a_new_release_replaces_every_worker_and_drops_nothing(
        service: Service) -> None:
    ok(service.deploy("v1"))
    masters = {h: service.master_pid(h, "blue") for h in service.app_hosts}
    old_workers = {h: workers_of(m) for h, m in masters.items() if m}
    with LoadDuring(service.nginx["lb1"].url) as load:
        result = service.cli("reload", "--source", str(service.release("v1.1")),
                             "--release", "v1.1")
        load.wait_for_body("release v1.1 (blue)")
    counts = load.results
    ok(result)
    assert result.stderr.index("» reload app1") < result.stderr.index("» reload app2")
    for host in service.app_hosts:
        assert service.master_pid(host, "blue") == masters[host]  # the master is kept
        new = workers_of(masters[host])  # type: ignore[arg-type]
        assert len(new) == len(old_workers[host]) == 2
        assert not new & old_workers[host]  # every worker was replaced
        # the new code is a new release; the old one is untouched
        assert os.readlink(service.app_root(host) / "blue") == "releases/v1.1"
        assert (service.app_root(host) / "releases" / "v1" / "RELEASE").read_text() == "v1\n"
    assert counts["failed"] == 0 and counts["ok"] > 50, counts
    assert service.fetch().startswith("release v1.1 (blue)")
    blue = service.state()["colours"]["blue"]
    assert (blue["release"], blue["status"], blue["out"]) == ("v1.1", "running", [])
    record = service.history()[-1]
    assert (record["operation"], record["release"], record["replaced"]) == (
        "reload", "v1.1", "v1")
    assert record["hosts"] == ["app1", "app2"]
    # and back: a release the hosts keep, no upload
    ok(service.cli("reload", "--release", "v1"))
    assert service.fetch().startswith("release v1 (blue)")
    assert service.state()["colours"]["blue"]["release"] == "v1"
    missing = service.cli("reload", "--release", "v9")
    assert missing.returncode == 5 and "release v9 is not on this host" in missing.stderr


def test_a_stale_pid_file_stops_the_reload_before_other_hosts(service: Service) -> None:
    ok(service.deploy("v1"))
    real = service.master_pid("app1", "blue")
    assert real is not None
    os.kill(real, signal.SIGTERM)  # the server we started goes away, its pid file stays
    while process_alive(real):
        time.sleep(0.05)
    pid_file = service.app_root("app1") / "blue.pid"
    dead = 4_000_000
    pid_file.write_text(f"{dead}\n")
    app2_workers = workers_of(service.master_pid("app2", "blue"))  # type: ignore[arg-type]
    result = service.cli("reload")
    assert result.returncode == 5, result.stderr
    assert "stale pid file" in result.stderr and str(dead) in result.stderr
    assert "not reloaded: app1, app2" in result.stderr
    assert workers_of(service.master_pid("app2", "blue")) == app2_workers  # type: ignore[arg-type]
    pid_file.unlink()


def test_new_code_that_fails_to_start_stops_at_the_first_host_and_leaves_it_out(
        service: Service) -> None:
    ok(service.deploy("v1"))
    app2_workers = workers_of(service.master_pid("app2", "blue"))  # type: ignore[arg-type]
    (service.app_root("app1") / "releases" / "v1" / "CRASH").write_text("")
    inventory = service.inventory(app={"reload_timeout": 10})
    result = service.cli("reload", inventory=inventory)
    assert result.returncode == 5, result.stderr
    # gunicorn restarts workers that fail to boot, then gives up and exits: whichever is seen
    # first, the crash loop or the master's exit, fails the reload
    assert "exited during the reload" in result.stderr or "crash loop" in result.stderr
    assert "CRASH file present" in result.stderr  # the app's own log tells why
    assert "Reloaded: none; out of traffic: app1; not reloaded: app2." in result.stderr
    assert "bluegreen reload` again" in result.stderr  # how to recover
    assert workers_of(service.master_pid("app2", "blue")) == app2_workers  # type: ignore[arg-type]
    # app1 is out of every balancer, and the state says so: every request reaches app2
    managed = service.nginx["lb1"].managed_file.read_text()
    assert "# app1 blue" not in managed and "# app2 blue" in managed
    assert service.state()["colours"]["blue"]["out"] == ["app1"]
    assert service.state()["operation"] is None
    assert all(service.fetch().startswith("release v1 (blue)") for _ in range(10))
    assert service.history()[-1]["result"] == "failed"
    status = service.cli("--json", "status", inventory=inventory)
    data = json.loads(status.stdout)["data"]
    assert data["colours"]["blue"]["out_of_traffic"] == ["app1"]
    assert {(i["host"], i["in_traffic"]) for i in data["instances"] if i["live"]} == {
        ("app1", False), ("app2", True)}
    # a deploy stands up green on every host, all of it in traffic
    ok(service.deploy("v2"))
    assert "# app1 green" in service.nginx["lb1"].managed_file.read_text()
    assert service.state()["colours"]["green"]["out"] == []


def test_reload_dry_run_and_bad_options(service: Service) -> None:
    ok(service.deploy("v1"))
    plan = service.cli("reload", "--dry-run", "--colour", "blue", "--signal", "usr1")
    ok(plan)
    assert "SIGUSR1" in plan.stdout and "blue.pid" in plan.stdout
    assert service.cli("reload", "--colour", "purple").returncode == 2
    assert service.cli("reload", "--signal", "HUP; reboot").returncode == 2
    idle = service.cli("reload", "--colour", "idle")
    assert idle.returncode == 5 and "no pid file" in idle.stderr


def test_base_mode_reload_warns_that_connections_drop(service: Service) -> None:
    ok(service.deploy("v1"))
    result = service.cli("reload", inventory=service.inventory(app={"server_mode": "base"}))
    ok(result)
    assert "base mode closes every client connection" in result.stderr
    assert "use `bluegreen deploy`" in result.stderr


def test_a_master_the_deploy_user_may_not_signal_stops_before_any_host_leaves_traffic(
        service: Service) -> None:
    ok(service.deploy("v1"))
    # what `kill` says when the server runs as another user than the deploy user
    denied = service.inventory(app={
        "signal": 'echo "kill: ({{ pid }}) - Operation not permitted" >&2; exit 1'})
    check = service.cli("check", inventory=denied)
    assert check.returncode == 3, check.stdout
    assert "blue reload signal" in check.stdout and "Operation not permitted" in check.stdout
    managed = service.nginx["lb1"].managed_file.read_text()
    result = service.cli("reload", inventory=denied)
    assert result.returncode == 5, result.stderr
    assert "cannot signal the master" in result.stderr
    assert "Operation not permitted" in result.stderr and "app.signal" in result.stderr
    assert "not running" not in result.stderr  # EPERM is never read as a dead server
    assert "Reloaded: none; out of traffic: none; not reloaded: app1, app2." in result.stderr
    assert service.nginx["lb1"].managed_file.read_text() == managed  # no host left traffic
    assert service.state()["colours"]["blue"]["out"] == []
    # the signal command as configured is what reaches the master
    masters = {h: service.master_pid(h, "blue") for h in service.app_hosts}
    via = service.inventory(app={"signal": "kill -s {{ signal }} {{ pid }} && echo sent"})
    assert service.cli("check", inventory=via).returncode == 0
    ok(service.cli("reload", inventory=via))
    assert {h: service.master_pid(h, "blue") for h in service.app_hosts} == masters


def test_an_unhealthy_new_release_stays_out_of_traffic_and_a_reload_back_recovers(
        service: Service) -> None:
    ok(service.deploy("v1"))
    broken = service.release("v2", fail_health=True)
    started = time.monotonic()
    result = service.cli("reload", "--source", str(broken), "--release", "v2")
    took = time.monotonic() - started
    assert result.returncode == 5, result.stderr
    assert "failed its health check" in result.stderr
    assert "Reloaded: none; out of traffic: app1; not reloaded: app2." in result.stderr
    assert took < 60  # a quick health check, not every retry (a bound, not a benchmark)
    assert os.readlink(service.app_root("app1") / "blue") == "releases/v2"
    assert os.readlink(service.app_root("app2") / "blue") == "releases/v1"  # never touched
    assert all(service.fetch().startswith("release v1 (blue)") for _ in range(10))
    blue = service.state()["colours"]["blue"]
    assert (blue["status"], blue["release"], blue["replaced"], blue["out"]) == (
        "failed", "v2", "v1", ["app1"])
    # reloading back onto v1 puts app1 back into traffic
    ok(service.cli("reload", "--release", "v1"))
    blue = service.state()["colours"]["blue"]
    assert (blue["status"], blue["release"], blue["out"]) == ("running", "v1", [])
    assert "# app1 blue" in service.nginx["lb1"].managed_file.read_text()


def test_a_retry_puts_the_host_left_out_back_first_and_ends_running(service: Service) -> None:
    start = "FAIL_HEALTH_FILE={{ app_root }}/fail-health " + service.data["app"]["start"]
    inventory = service.inventory(app={"start": start}, health={"retries": 3})
    ok(service.cli("deploy", "--source", str(service.release("v1")), "--release", "v1",
                   inventory=inventory))
    (service.app_root("app2") / "fail-health").write_text("")  # app2 fails after its reload
    failed = service.cli("reload", "--source", str(service.release("v2")), "--release", "v2",
                         inventory=inventory)
    assert failed.returncode == 5, failed.stderr
    assert "Reloaded: app1; out of traffic: app2; not reloaded: none." in failed.stderr
    blue = service.state()["colours"]["blue"]
    assert (blue["status"], blue["release"], blue["out"]) == ("failed", "v2", ["app2"])

    (service.app_root("app2") / "fail-health").unlink()  # fixed: the same release again
    retry = service.cli("reload", "--release", "v2", inventory=inventory)
    ok(retry)
    # app2, out of traffic, goes first: app1 never leaves while app2 is out
    assert retry.stderr.index("» reload app2") < retry.stderr.index("» take app1 out")
    blue = service.state()["colours"]["blue"]
    assert (blue["status"], blue["release"], blue["out"]) == ("running", "v2", [])
    for host in service.app_hosts:
        assert os.readlink(service.app_root(host) / "blue") == "releases/v2"
    assert all(service.fetch().startswith("release v2 (blue)") for _ in range(6))
