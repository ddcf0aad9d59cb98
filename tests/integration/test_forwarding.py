"""Health checks through SSH need port forwarding: an sshd that refuses it is named at once, by
`check` before any deploy and by `deploy` (exit 3), never reported as unhealthy apps."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import write_inventory
from tests.fleet import Fleet
from tests.integration.service import Service


def _app1_without_forwarding(service: Service, fleet: Fleet) -> Path:
    """The service's inventory with app1 reached through a second sshd on app1's address that
    has AllowTcpForwarding no."""
    if "app1-nofwd" not in fleet.hosts:
        fleet.add_host("app1-nofwd", fleet["app1"].address, forwarding=False)
    path = service.inventory()
    data = yaml.safe_load(path.read_text())
    data["hosts"]["app"][0]["port"] = fleet["app1-nofwd"].port
    return write_inventory(service.root / "nofwd.yml", data)


def test_a_refused_tunnel_is_named_by_check_and_deploy(service: Service, fleet: Fleet) -> None:
    inventory = _app1_without_forwarding(service, fleet)
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
