"""A health probe that passes shows what the default status check would (something listens on
the instance's port), so `rollback`'s running check and `status`'s facts run the probe first
and ask `ss` only when it fails. Run for real on this machine (the local transport, sh, bash,
ss) against an HTTP server each test starts; a PATH without `ss` proves it was not asked."""

from __future__ import annotations

import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bluegreen.app import AppStack, instance_specs
from bluegreen.instances import host_check, host_check_outcome
from bluegreen.inventory import Inventory, validate_inventory
from bluegreen.model import Colour
from bluegreen.shell import Command
from bluegreen.transport.local import LocalTransport
from tests.fleet import free_port
from tests.unit.test_host_probe import host_path

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("bash", "ss", "readlink", "grep")),
    reason="needs bash, ss, readlink and grep")


class Server:
    """Answers every request with `status` and a body naming release v3."""

    def __init__(self) -> None:
        self.status = 200
        self.served = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.served += 1
                body = b"ok release v3"
                self.send_response(server.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server()
    thread = threading.Thread(target=server.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def inventory_for(tmp_path: Path, port: int, *, status: str | None = None) -> Inventory:
    inventory = validate_inventory({
        "service": "shop",
        "hosts": {"app": [{"name": "app1", "address": "127.0.0.1"}], "balancer": ["lb1"]},
        "colours": {"blue": {"port": port}, "green": {"port": free_port("127.0.0.1")}},
        "app": {"root": str(tmp_path / "srv"), "start": "true", "stop": "true",
                **({"status": status} if status else {})},
        "health": {"retries": 3, "interval": 0.4, "expect_body": "release {{ release }}"},
        "balancer": {"managed_file": "/etc/x.conf"},
    }, path=tmp_path / "inv.yml", environ={})
    (tmp_path / "srv" / "releases" / "v3").mkdir(parents=True)
    (tmp_path / "srv" / "blue").symlink_to("releases/v3")
    return inventory


class Host(LocalTransport):
    """This machine as an app host whose PATH may lack `ss`."""

    def __init__(self, tmp_path: Path, *, with_ss: bool) -> None:
        super().__init__("app1")
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        self.path = host_path(bin_dir, "sh", "bash", "readlink", "grep", "sleep", "head", "env",
                              *(["ss"] if with_ss else []))

    def run(self, command: Command, **options: Any) -> Any:
        return super().run(Command("env", f"PATH={self.path}", *command.argv), **options)


def running_check(inventory: Inventory, host: Host, colour: Colour = Colour.BLUE
                  ) -> tuple[bool, str | None, Any]:
    assert inventory.app is not None
    spec = instance_specs(inventory, colour)[0]
    check = host_check(inventory, spec, release="v3", retries=3)
    assert check is not None
    running, pointer, output = AppStack(inventory, inventory.app).running_release(
        host, spec, "v3", then=check.command, once=check.once, timeout=30)
    outcome = (host_check_outcome(inventory, spec, output, release="v3", retries=3)
               if running else None)
    return running, pointer, outcome


def test_a_healthy_colour_runs_without_asking_ss(tmp_path: Path, server: Server) -> None:
    inventory = inventory_for(tmp_path, server.port)
    running, pointer, outcome = running_check(inventory, Host(tmp_path, with_ss=False))
    assert (running, pointer) == (True, "v3")
    assert outcome is not None and outcome.healthy and outcome.attempts == 1
    assert server.served == 1


def test_an_unhealthy_colour_that_listens_gets_the_whole_check(tmp_path: Path,
                                                               server: Server) -> None:
    server.status = 503
    inventory = inventory_for(tmp_path, server.port)
    running, _, outcome = running_check(inventory, Host(tmp_path, with_ss=True))
    assert running and outcome is not None and not outcome.healthy
    assert outcome.attempts == 3 and server.served == 4  # the first probe, then the check
    assert outcome.probes[0].detail.startswith("expected status 200, got 503 in ")


def test_a_colour_that_does_not_run_is_said_so_without_waiting(tmp_path: Path,
                                                               server: Server) -> None:
    inventory = inventory_for(tmp_path, server.port)
    started = time.monotonic()
    running, pointer, _ = running_check(inventory, Host(tmp_path, with_ss=True), Colour.GREEN)
    assert (running, pointer) == (False, None)
    assert time.monotonic() - started < 0.4  # no interval slept: one probe, then `ss`


def test_an_app_status_of_the_users_is_asked_first(tmp_path: Path, server: Server) -> None:
    """A passing probe does not show what the user's own status command checks."""
    inventory = inventory_for(tmp_path, server.port, status="false")
    running, _, _ = running_check(inventory, Host(tmp_path, with_ss=False))
    assert not running and server.served == 0


@pytest.mark.parametrize("answer", [200, 503])
def test_status_probes_each_instance_once(tmp_path: Path, server: Server, answer: int
                                          ) -> None:
    server.status = answer
    inventory = inventory_for(tmp_path, server.port)
    assert inventory.app is not None
    specs = [instance_specs(inventory, colour)[0] for colour in Colour]
    checks = [host_check(inventory, spec, release=None, retries=1) for spec in specs]
    assert all(check is not None and check.once == check.command for check in checks)
    host = Host(tmp_path, with_ss=answer != 200)
    facts = AppStack(inventory, inventory.app).facts_of(
        host, specs, then=[c.command if c else None for c in checks],
        once=[c.once if c else None for c in checks], timeout=30)
    blue, green = facts
    assert (blue.pointer, blue.running, green.pointer, green.running) == ("v3", True, None,
                                                                          False)
    outcome = host_check_outcome(inventory, specs[0], blue.then, release="v3", retries=1)
    assert outcome is not None and outcome.healthy is (answer == 200)
    assert outcome.attempts == 1 and server.served == 1
