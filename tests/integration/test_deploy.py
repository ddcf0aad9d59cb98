"""deploy / rollback / switch against the real fleet: sshd per host, nginx, gunicorn."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

from tests.integration.service import Service


def ok(result: object) -> None:
    assert result.returncode == 0, (result.stdout, result.stderr)  # type: ignore[attr-defined]


def test_deploy_rollback_deploy_serves_the_expected_release(service: Service) -> None:
    ok(service.deploy("v1"))
    assert service.fetch().startswith("release v1 (blue)")
    blue_pids = {h: service.master_pid(h, "blue") for h in service.app_hosts}

    ok(service.deploy("v2"))
    assert service.fetch().startswith("release v2 (green)")
    # invariant 2: deploy never touches the live colour
    assert {h: service.master_pid(h, "blue") for h in service.app_hosts} == blue_pids
    green_pids = {h: service.master_pid(h, "green") for h in service.app_hosts}

    result = service.cli("rollback")
    ok(result)
    assert service.fetch().startswith("release v1 (blue)")
    # invariant 6: rollback starts (and stops) no process
    assert {h: service.master_pid(h, "blue") for h in service.app_hosts} == blue_pids
    assert {h: service.master_pid(h, "green") for h in service.app_hosts} == green_pids

    ok(service.deploy("v3"))
    assert service.fetch().startswith("release v3 (green)")
    state = service.state()
    assert state["live"] == "green" and state["generation"] == 4
    assert state["colours"]["blue"]["release"] == "v1"
    assert state["colours"]["green"]["release"] == "v3"
    for host in service.app_hosts:
        root = service.app_root(host)
        assert (root / "green").resolve() == (root / "releases" / "v3").resolve()
        assert (root / "releases" / "v3" / ".bluegreen-release").is_file()
    assert [r["operation"] for r in service.history()] == ["deploy", "deploy", "rollback",
                                                           "deploy"]
    assert all(r["result"] == "ok" for r in service.history())
    assert (service.root / "state-lb1" / "state.json").stat().st_mode & 0o777 == 0o600
    assert not service.lock_dir().exists()

    ok(service.deploy("v4"))  # blue
    ok(service.deploy("v5"))  # green
    for host in service.app_hosts:  # release.keep 3: v1 and v2 are gone, on every host
        releases = service.app_root(host) / "releases"
        assert sorted(p.name for p in releases.iterdir()) == ["v3", "v4", "v5"]


def test_an_unhealthy_target_never_gets_traffic(service: Service) -> None:
    ok(service.deploy("v1"))
    before = service.nginx["lb1"].managed_file.read_bytes()

    failing = service.deploy("v2", fail_health=True)
    assert failing.returncode == 5, failing.stderr
    assert "failed its health check" in failing.stderr and "500" in failing.stderr
    assert "app1" in failing.stderr and "app2" in failing.stderr  # every instance reported
    assert service.nginx["lb1"].managed_file.read_bytes() == before
    assert service.fetch().startswith("release v1 (blue)")
    last = service.history()[-1]
    assert last["result"] == "failed" and last["error"]["code"] == "health_check_failed"
    assert last["error"]["exit_code"] == 5
    assert not service.lock_dir().exists()


def test_a_target_that_crashes_at_start_fails_with_its_log(service: Service) -> None:
    ok(service.deploy("v1"))
    before = service.nginx["lb1"].managed_file.read_bytes()
    inventory = service.inventory(health={"timeout": 0.5, "retries": 10})
    result = service.cli("deploy", "--source", str(service.release("broken", crash=True)),
                         "--release", "broken", inventory=inventory)
    assert result.returncode == 5, result.stderr
    assert "CRASH file present" in result.stderr  # the app's own log, shown to the user
    assert "Traceback (most recent call last)" not in result.stderr.split("log tail")[0]
    assert service.nginx["lb1"].managed_file.read_bytes() == before
    assert service.fetch().startswith("release v1 (blue)")


def test_an_invalid_rendered_config_is_never_activated(service: Service, tmp_path: Path
                                                       ) -> None:
    ok(service.deploy("v1"))
    before = service.nginx["lb1"].managed_file.read_bytes()
    broken = tmp_path / "broken.j2"
    broken.write_text("upstream {{ upstream_name }} { servr 127.0.0.1:1; }\n")
    inventory = service.inventory(balancer={"template": str(broken)})
    result = service.cli("deploy", "--source", str(service.release("v2")), "--release", "v2",
                         inventory=inventory)
    assert result.returncode == 6, result.stderr
    assert "failed validation" in result.stderr and "servr" in result.stderr
    assert service.nginx["lb1"].managed_file.read_bytes() == before
    assert service.fetch().startswith("release v1 (blue)")
    assert service.history()[-1]["error"]["code"] == "balancer_error"


def test_failed_verification_flips_back(service: Service) -> None:
    ok(service.deploy("v1"))
    before = service.nginx["lb1"].managed_file.read_bytes()
    inventory = service.inventory(verify={"expect_body": "release NOPE-{{ release }}",
                                          "attempts": 2})
    result = service.cli("deploy", "--source", str(service.release("v2")), "--release", "v2",
                         inventory=inventory)
    assert result.returncode == 7, result.stderr
    assert "flipped back" in result.stderr
    assert service.fetch().startswith("release v1 (blue)")
    assert service.nginx["lb1"].managed_file.read_bytes() == before
    assert service.state()["live"] == "blue" and service.state()["generation"] == 1


def test_dry_run_prints_the_plan_and_changes_nothing(service: Service) -> None:
    ok(service.deploy("v1"))
    before = service.nginx["lb1"].managed_file.read_bytes()
    state_before = service.state()
    result = service.cli("deploy", "--dry-run", "--source", str(service.release("v2")),
                         "--release", "v2")
    ok(result)
    assert "dry run" in result.stdout
    assert "gunicorn" in result.stdout and "v2" in result.stdout
    assert f"+    server 127.0.10.1:{service.ports['green']}" in result.stdout
    assert f"-    server 127.0.10.1:{service.ports['blue']}" in result.stdout
    assert service.nginx["lb1"].managed_file.read_bytes() == before
    assert service.state() == state_before
    assert service.master_pid("app1", "green") is None
    rollback = service.cli("--json", "rollback", "--dry-run")
    assert rollback.returncode == 8  # nothing to roll back to: green was never deployed


def test_switch_and_json_output(service: Service) -> None:
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))
    result = service.cli("--json", "switch", "--to", "blue")
    ok(result)
    document = json.loads(result.stdout)
    assert document["data"]["live"] == "blue" and document["data"]["release"] == "v1"
    assert service.fetch().startswith("release v1 (blue)")
    status = service.cli("--json", "status")
    ok(status)
    data = json.loads(status.stdout)["data"]
    assert data["live"] == "blue" and data["drift"] is None
    rows = {(i["host"], i["colour"]): i for i in data["instances"]}
    assert rows[("app2", "green")]["release"] == "v2" and rows[("app2", "green")]["healthy"]
    assert rows[("app1", "blue")]["live"] and rows[("app1", "blue")]["running"]
    history = json.loads(service.cli("--json", "history", "-n", "2").stdout)["data"]
    assert [r["operation"] for r in history] == ["deploy", "switch"]


def test_deploy_to_the_live_colour_is_refused(service: Service) -> None:
    ok(service.deploy("v1"))
    result = service.deploy("v2", "--to", "blue")
    assert result.returncode == 2 and "deploy never touches the live colour" in result.stderr


def test_release_ids_reach_the_hosts_as_literal_text(service: Service) -> None:
    nasty = "$(touch PWNED1) `touch PWNED2`; touch PWNED3 'q' \"d\""
    source = service.release(nasty)  # its RELEASE file holds the same text, served back
    result = service.cli("deploy", "--source", str(source), "--release", nasty)
    ok(result)
    assert service.fetch().startswith(f"release {nasty} (blue)")
    for host in service.app_hosts:
        root = service.app_root(host)
        assert (root / "releases" / nasty / "app.py").is_file()
        assert not list(root.rglob("PWNED*"))
    assert not list(Path.cwd().glob("PWNED*")) and not list(Path("/").glob("PWNED*"))
    assert service.state()["colours"]["blue"]["release"] == nasty
    newline = service.cli("deploy", "--source", str(source), "--release", "a\nb")
    assert newline.returncode == 2 and "--release" in newline.stderr


def test_a_release_already_on_the_host_is_not_uploaded_again(service: Service) -> None:
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))
    result = service.deploy("v1")  # to blue again
    ok(result)
    assert result.stderr.count("release v1 already present") == 2
    assert service.fetch().startswith("release v1 (blue)")


def test_health_checks_can_go_direct_instead_of_through_ssh(service: Service) -> None:
    inventory = service.inventory(health={"via": "direct"})
    result = service.cli("deploy", "--source", str(service.release("v1")), "--release", "v1",
                         inventory=inventory)
    ok(result)
    assert service.fetch().startswith("release v1 (blue)")
    history = service.cli("--no-color", "history", inventory=inventory)
    assert "deploy" in history.stdout and "- → blue" in history.stdout


def test_a_release_is_unpacked_without_setuid_bits_and_stale_uploads_are_cleaned(
        service: Service) -> None:
    import os
    import stat

    source = service.release("v1")
    tool = source / "tool.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o4755)
    stale = service.app_root("app1") / "releases" / ".incoming.cut-off"
    stale.mkdir(parents=True)
    os.utime(stale, (1_000_000_000, 1_000_000_000))  # left by an upload cut off long ago
    ok(service.cli("deploy", "--source", str(source), "--release", "v1"))
    for host in service.app_hosts:
        mode = (service.app_root(host) / "releases" / "v1" / "tool.sh").stat().st_mode
        assert mode & 0o777 == 0o755 and not mode & (stat.S_ISUID | stat.S_ISGID)
    assert not stale.exists()


def test_status_watch_prints_a_json_line_per_refresh_and_sees_a_deploy(service: Service
                                                                       ) -> None:
    import signal
    import time

    from tests.integration.test_lock_and_drift import start_cli

    ok(service.deploy("v1"))
    watcher = start_cli(service, "--json", "status", "--watch")
    assert watcher.stdout is not None
    try:
        first = json.loads(watcher.stdout.readline())["data"]
        assert (first["live"], first["colours"]["blue"]["release"]) == ("blue", "v1")
        ok(service.deploy("v2"))
        deadline = time.monotonic() + 30
        live = None
        while live != "green" and time.monotonic() < deadline:  # bounded: 30 s
            live = json.loads(watcher.stdout.readline())["data"]["live"]
        assert live == "green"
    finally:
        watcher.send_signal(signal.SIGINT)
        code = watcher.wait(timeout=20)
    assert code == 0  # Ctrl-C is how a watch ends


def test_unhealthy_instances_within_max_unhealthy_stay_out_and_the_deploy_flips(
        service: Service) -> None:
    ok(service.deploy("v1"))
    start = "FAIL_HEALTH_FILE={{ app_root }}/fail-health " + service.data["app"]["start"]
    (service.app_root("app1") / "fail-health").write_text("")  # app1's new instance is sick
    strict = service.inventory(app={"start": start}, health={"retries": 3})
    refused = service.cli("deploy", "--source", str(service.release("v2")), "--release", "v2",
                          inventory=strict)
    assert refused.returncode == 5 and "app1" in refused.stderr  # default: none may fail
    assert service.fetch().startswith("release v1 (blue)")

    lenient = service.inventory(app={"start": start}, health={"retries": 3},
                                deploy={"max_unhealthy": "50%"})
    result = service.cli("--json", "deploy", "--source", str(service.release("v3")),
                         "--release", "v3", inventory=lenient)
    ok(result)
    assert "within deploy.max_unhealthy (1)" in result.stderr
    assert json.loads(result.stdout)["data"]["out_of_traffic"] == ["app1"]
    managed = service.nginx["lb1"].managed_file.read_text()
    assert "# app1 green" not in managed and "# app2 green" in managed
    assert all(service.fetch().startswith("release v3 (green)") for _ in range(6))
    assert service.state()["colours"]["green"]["out"] == ["app1"]
    assert service.history()[-1]["out_of_traffic"] == ["app1"]
    # both failing is more than 50 % allows: nothing flips
    (service.app_root("app2") / "fail-health").write_text("")
    beyond = service.cli("deploy", "--source", str(service.release("v4")), "--release", "v4",
                         inventory=lenient)
    assert beyond.returncode == 5 and "more than deploy.max_unhealthy allows" in beyond.stderr
    assert service.fetch().startswith("release v3 (green)")


def test_a_status_command_that_hangs_is_bounded_by_the_command_timeout(service: Service
                                                                       ) -> None:
    ok(service.deploy("v1"))
    inventory = service.inventory(app={"status": "sleep 60"}, ssh={"command_timeout": 3})
    result = service.cli("deploy", "--source", str(service.release("v2")), "--release", "v2",
                         inventory=inventory)
    assert result.returncode == 3, result.stderr
    assert "sleep 60" in result.stderr and "did not finish within 3 s" in result.stderr
    assert service.fetch().startswith("release v1 (blue)")


def test_deploy_batch_starts_and_checks_one_batch_before_the_next(service: Service) -> None:
    ok(service.deploy("v1"))  # blue
    batched = service.inventory(deploy={"batch": 1})
    dry = service.cli("deploy", "--dry-run", "--source", str(service.release("v2")),
                      "--release", "v2", inventory=batched)
    ok(dry)
    assert "in 2 batches (deploy.batch)" in dry.stdout and "batch 2:" in dry.stdout
    result = service.cli("--json", "deploy", "--source", str(service.release("v2")),
                         "--release", "v2", inventory=batched)
    ok(result)
    lines = result.stderr.splitlines()

    def at(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    # app1's batch is started and healthy before app2's batch starts
    first, second = "batch 1 of 2: app1", "batch 2 of 2: app2"
    assert at(f"health-check 1 green instance(s) — {first}") < at(
        f"start green with release v2 — {second}")
    assert at("app1 green:") < at(f"start green with release v2 — {second}") < at(
        "app2 green started")
    assert service.history()[-1]["batches"] == [["app1"], ["app2"]]
    assert all(service.fetch().startswith("release v2 (green)") for _ in range(4))


def test_a_batch_that_fails_its_health_check_leaves_the_next_batches_unstarted(
        service: Service) -> None:
    ok(service.deploy("v1"))  # blue
    result = service.cli("deploy", "--source", str(service.release("v2", fail_health=True)),
                         "--release", "v2",
                         inventory=service.inventory(deploy={"batch": "50%"},
                                                     health={"retries": 3}))
    assert result.returncode == 5, result.stderr
    assert "Batch 2 was not started (deploy.batch)" in result.stderr
    assert "app2 green started" not in result.stderr
    assert not (service.app_root("app2") / "green.pid").exists()  # never started there
    assert service.fetch().startswith("release v1 (blue)")  # live traffic untouched


def test_hosts_fetch_a_release_from_release_url_and_verify_its_checksum(
        service: Service, tmp_path: Path) -> None:
    from bluegreen.release import package

    ok(service.deploy("v1"))  # blue, uploaded from here
    store = tmp_path / "artifacts"
    store.mkdir()
    artifact = package(service.release("v2"), release="v2")
    (store / "shop-v2.tar.gz").write_bytes(artifact.read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(store))
    address = service.fleet["lb1"].address  # an artifact store the app hosts can reach
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://{address}:{server.server_port}/{{{{ service }}}}-{{{{ release }}}}.tar.gz"
        inventory = service.inventory(release={"url": url})
        wrong = service.cli("deploy", "--release", "v2", "--sha256", "0" * 64,
                            inventory=inventory)
        assert wrong.returncode == 5 and "checksum mismatch" in wrong.stderr, wrong.stderr
        assert service.fetch().startswith("release v1 (blue)")  # nothing flipped
        result = service.cli("--json", "deploy", "--release", "v2", "--sha256",
                             artifact.sha256, inventory=inventory)
        ok(result)
        assert f"fetch release v2 on 2 app host(s) from http://{address}" in result.stderr
        assert "fetched release v2 from its URL (checksum verified)" in result.stderr
        missing = service.cli("deploy", "--release", "v3", "--sha256", artifact.sha256,
                              inventory=inventory)
        assert missing.returncode == 5 and "404" in missing.stderr, missing.stderr
    finally:
        server.shutdown()
        server.server_close()
    for host in ("app1", "app2"):
        release_dir = service.app_root(host) / "releases" / "v2"
        assert (release_dir / "RELEASE").read_text() == "v2\n"
        assert (release_dir / ".bluegreen-release").read_text() == artifact.sha256
    assert all(service.fetch().startswith("release v2 (green)") for _ in range(4))
    assert service.fetch().startswith("release v2 (green)")
