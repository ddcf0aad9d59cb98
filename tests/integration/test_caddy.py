"""Caddy as the balancer: flips through its admin API (no process restart), validation against
the real Caddyfile before anything is applied, byte-for-byte restore, and drift when the running
config changes behind bluegreen's back."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from typing import Any

from bluegreen.balancer.base import parse_version
from tests.integration.conftest import migrating_queued_connections
from tests.integration.service import Caddy, LoadDuring, Service


def ok(result: Any) -> None:
    assert result.returncode == 0, (result.stdout, result.stderr)


def test_deploy_rollback_and_deploy_through_the_admin_api(caddy_service: Service) -> None:
    service = caddy_service
    server = service.nginx["lb1"]
    assert isinstance(server, Caddy) and server.process is not None
    caddy_pid = server.process.pid
    ok(service.deploy("v1"))
    assert service.fetch().startswith("release v1 (blue)")
    with LoadDuring(server.url) as load:
        deploy = service.deploy("v2")
        rollback = service.cli("rollback")
    counts = load.results
    ok(deploy)
    ok(rollback)
    assert "admin API: new upstreams running" in rollback.stderr
    assert counts["failed"] == 0 and counts["ok"] > 20, counts
    assert service.fetch().startswith("release v1 (blue)")
    assert server.process.pid == caddy_pid and server.process.poll() is None  # no restart
    text = server.managed_file.read_text()
    assert text.startswith("# bluegreen service=shop colour=blue generation=3")
    assert f"\tto 127.0.10.1:{service.ports['blue']} 127.0.10.2:{service.ports['blue']}\n" in text
    status = json.loads(service.cli("--json", "status").stdout)["data"]
    assert status["drift"] is None and status["balancers"][0]["serving"] == "blue"


def test_an_invalid_config_is_refused_and_the_file_restored_byte_for_byte(
        caddy_service: Service) -> None:
    service = caddy_service
    server = service.nginx["lb1"]
    ok(service.deploy("v1"))
    before = server.managed_file.read_bytes()
    broken = service.root / "broken.j2"
    broken.write_text("({{ upstream_name }}_upstream) {\n\tnot_a_subdirective 1\n}\n")
    result = service.cli("deploy", "--source", str(service.release("v2")), "--release", "v2",
                         inventory=service.inventory(balancer={"template": str(broken)}))
    assert result.returncode == 6, result.stderr
    assert "failed validation" in result.stderr and "caddy validate" in result.stderr
    assert server.managed_file.read_bytes() == before
    assert service.fetch().startswith("release v1 (blue)")


def test_a_config_changed_through_the_admin_api_is_drift(caddy_service: Service) -> None:
    service = caddy_service
    server = service.nginx["lb1"]
    assert isinstance(server, Caddy)
    ok(service.deploy("v1"))
    ok(service.deploy("v2"))  # green live
    # someone points Caddy at blue through the admin API, leaving the file alone
    with urllib.request.urlopen(f"http://{server.admin_address}/config/") as response:
        config = response.read().decode()
    blue = {f"127.0.10.{n}:{service.ports['green']}": f"127.0.10.{n}:{service.ports['blue']}"
            for n in (1, 2)}
    for green_dial, blue_dial in blue.items():
        config = config.replace(green_dial, blue_dial)
    request = urllib.request.Request(f"http://{server.admin_address}/load", method="POST",
                                     data=config.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    assert service.fetch().startswith("release v1 (blue)")
    status = service.cli("--json", "status")
    assert status.returncode == 9
    balancer = json.loads(status.stdout)["data"]["balancers"][0]
    assert balancer["serving"] == "none" and "none at runtime" in balancer["drift"]
    refused = service.cli("rollback")
    assert refused.returncode == 9
    ok(service.cli("switch", "--to", "green"))  # reconciles: the file is loaded again
    assert service.fetch().startswith("release v2 (green)")
    assert json.loads(service.cli("--json", "status").stdout)["data"]["drift"] is None


def test_check_reports_the_version_of_caddy_on_the_balancer(caddy_service: Service) -> None:
    local = subprocess.run(["caddy", "version"], capture_output=True, text=True,
                           check=True).stdout  # the same binary the balancer host runs
    result = caddy_service.cli("--json", "check")
    rows = {(r["host"], r["check"]): r for r in json.loads(result.stdout)["data"]["checks"]}
    installed = rows["lb1", "caddy installed"]
    assert installed["ok"] and installed["version"] == parse_version(local)
    assert f"(caddy {installed['version']})" in installed["detail"]
    handover = rows["lb1", "caddy listener hand-over"]
    assert handover["ok"] and "warning" not in handover
    assert "net.ipv4.tcp_migrate_req = 1" in handover["detail"]
    with migrating_queued_connections(0):  # the kernel's default: advised, not failed
        advised = caddy_service.cli("check")
        advised_json = caddy_service.cli("--json", "check")
    assert advised.returncode == 0 and advised_json.returncode == 0, advised.stdout
    line = next(line for line in advised.stdout.splitlines() if "hand-over" in line)
    assert "│ ! │" in line
    row = next(r for r in json.loads(advised_json.stdout)["data"]["checks"]
               if r["check"] == "caddy listener hand-over")
    assert row["ok"] and row["warning"] and "sysctl -w net.ipv4.tcp_migrate_req=1" in row["detail"]


def test_a_canary_is_refused_with_the_reason_and_traffic_untouched(
        caddy_service: Service) -> None:
    service = caddy_service
    ok(service.deploy("v1"))
    before = service.state()
    result = service.cli("--json", "deploy", "--canary", "10", "--source",
                         str(service.release("v2")), "--release", "v2")
    assert result.returncode == 2, result.stderr
    error = json.loads(result.stdout)["error"]
    assert "cannot split traffic by weight" in error["message"] and error["where"] == "--canary"
    assert service.fetch().startswith("release v1 (blue)")
    assert service.state()["generation"] == before["generation"]
    assert service.state()["canary"] is None
