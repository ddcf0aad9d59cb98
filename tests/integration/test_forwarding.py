"""Health checks through a forwarded port (`health.via: ssh`) need port forwarding: an sshd that
refuses it is named at once, by `check` before any deploy and by `deploy` (exit 3), never
reported as unhealthy apps. Checks run on the host (`health.via: host`, the default) need none."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import write_inventory
from tests.fleet import Fleet
from tests.integration.service import Service


def _app1_without_forwarding(service: Service, fleet: Fleet, via: str) -> Path:
    """The service's inventory with app1 reached through a second sshd on app1's address that
    has AllowTcpForwarding no."""
    if "app1-nofwd" not in fleet.hosts:
        fleet.add_host("app1-nofwd", fleet["app1"].address, forwarding=False)
    path = service.inventory(health={"via": via})
    data = yaml.safe_load(path.read_text())
    data["hosts"]["app"][0]["port"] = fleet["app1-nofwd"].port
    return write_inventory(service.root / "nofwd.yml", data)


def test_a_refused_tunnel_is_named_by_check_and_deploy(service: Service, fleet: Fleet) -> None:
    inventory = _app1_without_forwarding(service, fleet, "ssh")
    check = service.cli("--json", "check", inventory=inventory)
    assert check.returncode == 3, check.stdout
    rows = {(r["host"], r["check"]): r for r in json.loads(check.stdout)["data"]["checks"]}
    assert not rows[("app1", "port forwarding")]["ok"]
    assert "AllowTcpForwarding" in rows[("app1", "port forwarding")]["detail"]
    assert rows[("app2", "port forwarding")]["ok"]

    deploy = service.cli("--json", "deploy", "--source", str(service.release("v1")),
                         "--release", "v1", inventory=inventory)
    assert deploy.returncode == 3, deploy.stderr
    error = json.loads(deploy.stdout)["error"]
    assert error["code"] == "forwarding_refused"
    text = json.dumps(error)
    assert "refused port forwarding" in text and "health.via: direct" in text
    assert "reset by peer" not in text
    assert service.state()["colours"]["blue"]["status"] == "failed"


def test_a_closed_port_is_reported_as_connection_refused(service: Service) -> None:
    inventory = service.inventory(app={"start": "true", "status": "false"},
                                  health={"retries": 2, "interval": 0.05})
    deploy = service.cli("deploy", "--source", str(service.release("v1")), "--release", "v1",
                         inventory=inventory)
    assert deploy.returncode == 5, deploy.stderr
    assert "connection refused" in deploy.stderr and "reset by peer" not in deploy.stderr


def test_checks_on_the_host_need_no_forwarding(service: Service, fleet: Fleet) -> None:
    inventory = _app1_without_forwarding(service, fleet, "host")
    check = service.cli("--json", "check", inventory=inventory)
    assert check.returncode == 0, check.stdout
    rows = {(r["host"], r["check"]): r for r in json.loads(check.stdout)["data"]["checks"]}
    assert rows[("app1", "health checks")]["ok"]
    assert "bash on the host" in rows[("app1", "health checks")]["detail"]
    assert ("app1", "port forwarding") not in rows

    deploy = service.cli("--json", "deploy", "--source", str(service.release("v1")),
                         "--release", "v1", inventory=inventory)
    assert deploy.returncode == 0, deploy.stderr
    assert "release v1" in service.fetch()
    status = service.cli("--json", "status", inventory=inventory)
    instances = json.loads(status.stdout)["data"]["instances"]
    live = [i for i in instances if i["live"]]
    assert {i["host"] for i in live} == {"app1", "app2"}
    assert all(i["healthy"] and i["release"] == "v1" for i in live)
