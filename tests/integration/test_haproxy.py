"""HAProxy in reload and runtime mode, and all-or-nothing flips across several balancers."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bluegreen.balancer.base import parse_version
from tests.conftest import run_cli, write_inventory
from tests.integration.service import HAProxy, LoadDuring, Service


def ok(result: Any) -> None:
    assert result.returncode == 0, (result.stdout, result.stderr)


def runtime_inventory(service: Service) -> Path:
    return service.inventory(balancer={"flip": "runtime", "drain_timeout": 20})


def deployed_v1_then_v2(service: Service) -> Path:
    """v1 then v2 deployed in runtime mode (the first deploy reloads: HAProxy knows no servers
    yet; the second flips through the runtime API); the runtime inventory."""
    inventory = runtime_inventory(service)
    for release in ("v1", "v2"):
        ok(service.cli("deploy", "--source", str(service.release(release)), "--release",
                       release, inventory=inventory))
    return inventory


def worker_pids(server: HAProxy) -> set[int]:
    import subprocess

    master = (server.prefix / "haproxy.pid").read_text().strip()
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", master], capture_output=True,
                         text=True).stdout
    return {int(p) for p in out.split()}


def server_status(server: HAProxy) -> dict[str, str]:
    rows = server.runtime("show stat").splitlines()
    header = rows[0].lstrip("# ").split(",")
    result = {}
    for row in rows[1:]:
        cells = dict(zip(header, row.split(","), strict=False))
        if cells.get("pxname") == "shop" and cells["svname"] not in ("FRONTEND", "BACKEND"):
            result[cells["svname"]] = cells["status"]
    return result


def test_reload_mode_deploy_rollback_deploy(haproxy_service: Service) -> None:
    service = haproxy_service
    ok(service.deploy("v1"))
    assert service.fetch().startswith("release v1 (blue)")
    ok(service.deploy("v2"))
    assert service.fetch().startswith("release v2 (green)")
    text = service.nginx["lb1"].managed_file.read_text()
    assert f"server blue-app1 127.0.10.1:{service.ports['blue']} weight 0 disabled" in text
    assert f"server green-app2 127.0.10.2:{service.ports['green']} weight 100" in text
    ok(service.cli("rollback"))
    assert service.fetch().startswith("release v1 (blue)")
    ok(service.deploy("v3"))
    assert service.fetch().startswith("release v3 (green)")


def test_runtime_mode_flips_without_reloading(haproxy_service: Service) -> None:
    service = haproxy_service
    server = service.nginx["lb1"]
    assert isinstance(server, HAProxy)
    inventory = runtime_inventory(service)
    ok(service.cli("deploy", "--source", str(service.release("v1")), "--release", "v1",
                   inventory=inventory))  # the first deploy has to reload: no servers yet
    workers = worker_pids(server)
    ok(service.cli("deploy", "--source", str(service.release("v2")), "--release", "v2",
                   inventory=inventory))
    assert service.fetch().startswith("release v2 (green)")
    assert worker_pids(server) == workers  # no reload happened
    assert server_status(server)["blue-app1"] == "MAINT"
    result = service.cli("rollback", inventory=inventory)
    ok(result)
    assert "runtime API" in result.stderr
    assert service.fetch().startswith("release v1 (blue)")
    assert worker_pids(server) == workers
    statuses = server_status(server)
    assert statuses["green-app1"] == "MAINT" and statuses["green-app2"] == "MAINT"
    assert "MAINT" not in statuses["blue-app1"]
    # the file says the same, so a later reload or restart keeps serving blue
    assert f"server green-app1 127.0.10.1:{service.ports['green']} weight 0 disabled" in (
        server.managed_file.read_text())
    ok(service.cli("deploy", "--source", str(service.release("v3")), "--release", "v3",
                   inventory=inventory))
    assert service.fetch().startswith("release v3 (green)")


def test_runtime_flip_lets_a_long_request_finish_before_maintenance(
        haproxy_service: Service) -> None:
    service = haproxy_service
    server = service.nginx["lb1"]
    inventory = deployed_v1_then_v2(service)
    outcome: dict[str, Any] = {}

    def slow_request() -> None:
        started = time.monotonic()
        with urllib.request.urlopen(server.url + "slow?seconds=3", timeout=20) as response:
            outcome["status"] = response.status
            outcome["body"] = response.read().decode()
        outcome["finished"] = time.monotonic()
        outcome["took"] = outcome["finished"] - started

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.5)  # the request is in flight on green
    result = service.cli("rollback", inventory=inventory)
    rollback_done = time.monotonic()
    thread.join(timeout=20)
    ok(result)
    assert outcome["status"] == 200 and "slow response from release v2 (green)" in outcome["body"]
    assert outcome["finished"] <= rollback_done  # maint only after the session ended
    assert "after their sessions ended" in result.stderr
    assert service.fetch().startswith("release v1 (blue)")


def test_an_admin_socket_that_does_not_answer_leaves_traffic_and_the_record_as_they_were(
        haproxy_service: Service) -> None:
    """A runtime flip that cannot reach HAProxy's admin socket changes nothing: exit 6, the
    live colour keeps serving, `status` says so, and the next rollback flips."""
    service = haproxy_service
    server = service.nginx["lb1"]
    inventory = deployed_v1_then_v2(service)
    managed = server.managed_file.read_text()
    data = yaml.safe_load(inventory.read_text())
    data["hosts"]["balancer"][0]["balancer"]["admin_socket"] = str(server.prefix / "gone.sock")
    unreachable = write_inventory(service.root / "unreachable.yml", data)
    failed = service.cli("rollback", inventory=unreachable)
    assert failed.returncode == 6, (failed.stdout, failed.stderr)
    assert "admin socket" in failed.stderr and "Traceback" not in failed.stderr
    assert service.fetch().startswith("release v2 (green)")
    assert server.managed_file.read_text() == managed
    statuses = server_status(server)
    assert "MAINT" not in statuses["green-app1"] and statuses["blue-app1"] == "MAINT"
    status = service.cli("--json", "status", inventory=inventory)
    ok(status)
    data = json.loads(status.stdout)["data"]
    assert (data["live"], data["drift"]) == ("green", None)
    assert data["balancers"][0]["runtime_serving"] == "green"
    assert data["colours"]["green"]["release"] == "v2"
    ok(service.cli("rollback", inventory=inventory))
    assert service.fetch().startswith("release v1 (blue)")


def test_runtime_needs_haproxy_and_an_admin_socket(service: Service) -> None:
    result = service.cli("check", inventory=service.inventory(balancer={"flip": "runtime"}))
    assert result.returncode == 2 and "balancer.flip" in result.stderr


def test_check_reports_the_version_of_each_balancer(mixed_balancers: Service) -> None:
    def local(*argv: str) -> str | None:  # the binaries the balancer hosts run
        run = subprocess.run(argv, capture_output=True, text=True, check=True)
        return parse_version((run.stdout + run.stderr).strip())

    result = mixed_balancers.cli("--json", "check")
    rows = {(r["host"], r["check"]): r for r in json.loads(result.stdout)["data"]["checks"]}
    assert rows["lb1", "nginx installed"]["version"] == local("nginx", "-v")
    assert rows["lb2", "haproxy installed"]["version"] == local("haproxy", "-v")
    # and `--version` shows what this check found
    version = run_cli("--version").stdout
    assert ("found by `check` (shop, " in version and f"lb1 nginx {local('nginx', '-v')}, "
            f"lb2 haproxy {local('haproxy', '-v')}" in version), version
    assert all(rows[key]["ok"] for key in (("lb1", "nginx installed"),
                                           ("lb2", "haproxy installed")))
    assert rows["lb2", "haproxy installed"]["version"].startswith("2.")


def test_second_balancer_invalid_means_neither_flips(mixed_balancers: Service,
                                                     tmp_path: Path) -> None:
    service = mixed_balancers
    ok(service.deploy("v1"))
    before = {n: s.managed_file.read_bytes() for n, s in service.nginx.items()}
    broken = tmp_path / "broken.j2"
    broken.write_text("backend {{ upstream_name }}\n    servr x 127.0.0.1:1\n")
    data = service.with_balancer_override(1, template=str(broken))
    result = service.cli("deploy", "--source", str(service.release("v2")), "--release", "v2",
                         inventory=data)
    assert result.returncode == 6, result.stderr
    assert "lb2" in result.stderr and "failed validation" in result.stderr
    assert {n: s.managed_file.read_bytes() for n, s in service.nginx.items()} == before
    for name in ("lb1", "lb2"):
        assert service.fetch(name).startswith("release v1 (blue)")


def test_second_balancer_reload_failing_restores_the_first(mixed_balancers: Service) -> None:
    service = mixed_balancers
    ok(service.deploy("v1"))
    before = {n: s.managed_file.read_bytes() for n, s in service.nginx.items()}
    data = service.with_balancer_override(1, reload="exit 1")
    result = service.cli("deploy", "--source", str(service.release("v2")), "--release", "v2",
                         inventory=data)
    assert result.returncode == 6, result.stderr
    assert "lb1" in result.stderr and "traffic moved back" in result.stderr
    assert {n: s.managed_file.read_bytes() for n, s in service.nginx.items()} == before
    for name in ("lb1", "lb2"):
        assert service.fetch(name).startswith("release v1 (blue)")
    assert service.state("lb1")["generation"] == 1 and service.state("lb2")["generation"] == 1


def test_mixed_nginx_and_haproxy_flip_together(mixed_balancers: Service) -> None:
    service = mixed_balancers
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))
    for name in ("lb1", "lb2"):
        assert service.fetch(name).startswith("release v2 (green)")
    ok(service.cli("rollback"))
    for name in ("lb1", "lb2"):
        assert service.fetch(name).startswith("release v1 (blue)")
    assert service.state("lb1") == service.state("lb2")


def test_a_runtime_change_behind_our_back_is_drift(haproxy_service: Service) -> None:
    service = haproxy_service
    server = service.nginx["lb1"]
    assert isinstance(server, HAProxy)
    inventory = deployed_v1_then_v2(service)
    server.runtime("set server shop/blue-app1 state ready; set weight shop/blue-app1 100")
    status = service.cli("--json", "status", inventory=inventory)
    assert status.returncode == 9
    import json

    balancer = json.loads(status.stdout)["data"]["balancers"][0]
    assert balancer["runtime_serving"] == "blue+green" and "at runtime" in balancer["drift"]
    refused = service.cli("deploy", "--source", str(service.release("v3")), "--release", "v3",
                          inventory=inventory)
    assert refused.returncode == 9 and "runtime API" in refused.stderr
    ok(service.cli("switch", "--to", "green", inventory=inventory))
    assert service.cli("status", inventory=inventory).returncode == 0
    assert server_status(server)["blue-app1"] == "MAINT"


def test_a_reload_rotates_each_host_through_maintenance_without_reloading_haproxy(
        haproxy_service: Service) -> None:
    from tests.integration.test_reload import workers_of

    service = haproxy_service
    server = service.nginx["lb1"]
    assert isinstance(server, HAProxy)
    inventory = runtime_inventory(service)
    for release in ("v1", "v2", "v1"):  # both colours known to the running HAProxy
        ok(service.cli("deploy", "--source", str(service.release(release)), "--release",
                       release, inventory=inventory))
    live = service.state()["live"]
    haproxy_workers = worker_pids(server)
    app_workers = {h: workers_of(service.master_pid(h, live) or 0) for h in service.app_hosts}
    with LoadDuring(server.url) as load:
        result = service.cli("reload", inventory=inventory)
    counts = load.results
    ok(result)
    assert result.stderr.count("drained servers in maintenance") >= 2  # each host, in turn
    assert worker_pids(server) == haproxy_workers  # in and out through the runtime API only
    statuses = server_status(server)
    assert all(statuses[f"{live}-{h}"] in ("UP", "no check") for h in service.app_hosts), (
        statuses)
    for host in service.app_hosts:
        assert not workers_of(service.master_pid(host, live) or 0) & app_workers[host]
    assert counts["failed"] == 0 and counts["ok"] > 20, counts
    assert service.state()["colours"][live]["out"] == []
    ok(service.cli("status", inventory=inventory))  # no drift after the rotation
