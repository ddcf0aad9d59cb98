"""Stopping an instance: the stop command, then the host itself waits for the instance to go
away (its port free, its status command saying stopped) — one command, however long it takes;
a deploy's stop, pointer, port check and start are one command too, each step's failure named
as its own. Run for real on this machine (the local transport) against a listener this test
starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from msgspec import structs

from bluegreen.app import AppStack, InstanceSpec
from bluegreen.errors import BluegreenError, CommandTimeout, HealthCheckFailed
from bluegreen.inventory import HostSpec, load_inventory
from bluegreen.model import Colour
from bluegreen.shell import Command
from bluegreen.transport.base import CommandResult
from bluegreen.transport.local import LocalTransport
from tests.fleet import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = "127.0.0.1"
# listens until SIGTERM, then takes 0.6 s to close, as a server finishing its requests does
SLOW_TO_STOP = """
import signal, socket, sys, time
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.6), sys.exit(0)))
while True:
    server.accept()[0].close()
"""


class Counting(LocalTransport):
    def __init__(self) -> None:
        super().__init__("here")
        self.commands: list[Command] = []

    def run(self, command: Command, **options: Any) -> CommandResult:
        self.commands.append(command)
        return super().run(command, **options)


@pytest.fixture
def listening() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port(ADDRESS)
    server = subprocess.Popen([sys.executable, "-c", SLOW_TO_STOP, ADDRESS, str(port)])
    deadline = time.monotonic() + 10
    while not _accepts(port):
        assert time.monotonic() < deadline and server.poll() is None, "the listener did not start"
        time.sleep(0.02)
    try:
        yield server, port
    finally:
        stop_process(server, timeout=5)


def stack_and_spec(port: int, root: Path | None = None, **app: Any
                   ) -> tuple[AppStack, InstanceSpec]:
    inventory = load_inventory(ROOT / "inventories" / "example.yml",
                               environ={"SHOP_DATABASE_PASSWORD": "s3cret"})
    assert inventory.app is not None
    settings = structs.replace(inventory.app, **{"status": None, **app})
    host = HostSpec(name="here", address=ADDRESS,
                    **({"app_root": str(root)} if root is not None else {}))
    spec = InstanceSpec(host, Colour.BLUE, port, ADDRESS)
    return AppStack(inventory, settings), spec


def test_the_host_waits_for_the_instance_to_go_in_the_same_command(
        listening: tuple[subprocess.Popen[bytes], int]) -> None:
    server, port = listening
    stack, spec = stack_and_spec(port, stop=f"kill {server.pid}", stop_timeout=10.0)
    transport = Counting()
    stack.stop(transport, spec, "v1", running=True)
    assert not _accepts(port)  # gone when stop returns, though it took 0.6 s to close
    assert len(transport.commands) == 1


def test_an_instance_still_there_after_its_stop_is_named_and_one_that_hangs_is_killed(
        listening: tuple[subprocess.Popen[bytes], int]) -> None:
    _, port = listening
    stack, spec = stack_and_spec(port, stop="true", stop_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(HealthCheckFailed) as still:
        stack.stop(Counting(), spec, "v1", running=True)
    assert "blue still running 1 s after its stop command" in still.value.message
    stack, spec = stack_and_spec(port, stop="sleep 30", stop_timeout=1.0)
    with pytest.raises(CommandTimeout) as hung:
        stack.stop(Counting(), spec, "v1", running=True)
    assert "did not finish within 1 s (app.stop_timeout)" in hung.value.message
    assert time.monotonic() - started < 10
    assert _accepts(port)  # neither stopped it


def test_a_deploy_replaces_the_instance_in_one_command(
        listening: tuple[subprocess.Popen[bytes], int], tmp_path: Path) -> None:
    server, port = listening
    stack, spec = stack_and_spec(port, tmp_path, stop=f"kill {server.pid}", stop_timeout=10.0)
    (tmp_path / "releases" / "v2").mkdir(parents=True)
    transport = Counting()
    started = tmp_path / "started"
    stack.replace_and_start(transport, spec, "v2", replaced="v1", stop=Command.script(
        f"kill {server.pid}"), start=Command("touch", str(started)), running=None)
    assert len(transport.commands) == 1
    assert not _accepts(port) and started.exists()
    pointer = stack.layout(spec.host).pointer(Colour.BLUE)
    assert Path(pointer).resolve().name == "v2"


# accepts and keeps every connection, as a server holding WebSockets does
HOLDING = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
held = []
while True:
    held.append(server.accept()[0])
"""


@pytest.mark.parametrize("hold_if_open", [True, False])
def test_the_connections_are_counted_first_and_open_ones_can_hold_the_stop(
        tmp_path: Path, hold_if_open: bool) -> None:
    port = free_port(ADDRESS)
    server = subprocess.Popen([sys.executable, "-c", HOLDING, ADDRESS, str(port)])
    clients: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 10
        while not clients:
            assert time.monotonic() < deadline, "the holding server did not start"
            try:
                clients.append(socket.create_connection((ADDRESS, port), timeout=1))
            except OSError:
                time.sleep(0.02)
        clients.append(socket.create_connection((ADDRESS, port), timeout=1))
        stack, spec = stack_and_spec(port, tmp_path, stop_timeout=10.0)
        (tmp_path / "releases" / "v2").mkdir(parents=True)
        transport, started = Counting(), tmp_path / "started"
        done = stack.replace_and_start(
            transport, spec, "v2", replaced="v1", stop=Command("kill", str(server.pid)),
            start=Command("touch", str(started)), running=None, count=True,
            hold_if_open=hold_if_open)
        assert len(transport.commands) == 1 and done.connections == 2
        pointer = Path(stack.layout(spec.host).pointer(Colour.BLUE))
        if hold_if_open:  # nothing changed: the caller drains, then asks again
            assert done.held and server.poll() is None
            assert not pointer.exists() and not started.exists()
        else:  # the stop cut them
            assert not done.held and server.wait(timeout=5) is not None
            assert pointer.resolve().name == "v2" and started.exists()
    finally:
        for client in clients:
            client.close()
        stop_process(server, timeout=5)


def test_a_status_command_that_hangs_ends_the_replacement_at_the_command_timeout(
        tmp_path: Path) -> None:
    stack, spec = stack_and_spec(free_port(ADDRESS), tmp_path, status="sleep 30")
    stack = AppStack(structs.replace(stack.inventory, ssh=structs.replace(
        stack.inventory.ssh, command_timeout=1.0)), stack.settings)
    (tmp_path / "releases" / "v2").mkdir(parents=True)
    started, began = tmp_path / "started", time.monotonic()
    with pytest.raises(CommandTimeout) as hung:
        stack.replace_and_start(Counting(), spec, "v2", replaced="v1", stop=Command("true"),
                                start=Command("touch", str(started)), running=None)
    assert "sleep 30" in hung.value.message
    assert "did not finish within 1 s (ssh.command_timeout)" in hung.value.message
    assert time.monotonic() - began < 10
    assert not Path(stack.layout(spec.host).pointer(Colour.BLUE)).exists()
    assert not started.exists()


def test_a_held_port_stops_the_chain_before_the_start_and_names_the_holder(
        listening: tuple[subprocess.Popen[bytes], int], tmp_path: Path) -> None:
    _, port = listening
    stack, spec = stack_and_spec(port, tmp_path)
    started = tmp_path / "started"
    with pytest.raises(BluegreenError) as held:
        stack.replace_and_start(Counting(), spec, "v2", replaced=None, stop=Command("true"),
                                start=Command("touch", str(started)), running=False)
    assert f"port {port}" in held.value.message and "python" in held.value.message
    assert not started.exists()


def test_a_start_that_never_returns_is_killed_at_app_start_timeout(tmp_path: Path) -> None:
    stack, spec = stack_and_spec(free_port(ADDRESS), tmp_path, start_timeout=1.0)
    began = time.monotonic()
    with pytest.raises(CommandTimeout) as hung:
        stack.replace_and_start(Counting(), spec, "v2", replaced=None, stop=Command("true"),
                                start=Command("sleep", "30"), running=False)
    assert "did not finish within 1 s (app.start_timeout)" in hung.value.message
    assert time.monotonic() - began < 10


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((ADDRESS, port), timeout=1):
            return True
    except OSError:
        return False



def releases(root: Path, *names: str) -> None:
    """Release directories, the first the newest."""
    for age, name in enumerate(names):
        (root / "releases" / name).mkdir(parents=True)
        os.utime(root / "releases" / name, (1_000_000 - age, 1_000_000 - age))


def test_the_stand_up_prunes_the_releases_the_flip_leaves_unused_in_the_same_command(
        tmp_path: Path) -> None:
    stack, spec = stack_and_spec(free_port(ADDRESS), tmp_path)
    releases(tmp_path, "v5", "v4", "v3", "v2", "v1")
    (tmp_path / "green").symlink_to("releases/v1")  # the live colour: old, but in use
    (tmp_path / "blue").symlink_to("releases/v3")  # replaced by v5: no longer in use
    transport, started = Counting(), tmp_path / "started"
    done = stack.replace_and_start(transport, spec, "v5", replaced="v3", stop=Command("true"),
                                   start=Command("touch", str(started)), running=False,
                                   prune=2)
    assert len(transport.commands) == 1 and started.exists()
    assert done.pruned == ("v3", "v2") and done.prune_error is None
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == ["v1", "v4", "v5"]


def test_a_prune_that_fails_is_said_and_leaves_the_start_standing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "rm").write_text("#!/bin/sh\necho \"rm: cannot remove '$3': Device or resource "
                              "busy\" >&2\nexit 1\n")
    (tools / "rm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    root = tmp_path / "app"
    stack, spec = stack_and_spec(free_port(ADDRESS), root)
    releases(root, "v3", "v2", "v1")
    started = root / "started"
    done = stack.replace_and_start(Counting(), spec, "v3", replaced=None, stop=Command("true"),
                                   start=Command("touch", str(started)), running=False,
                                   prune=2)
    assert started.exists() and Path(stack.layout(spec.host).pointer(Colour.BLUE)).exists()
    assert done.pruned == () and "Device or resource busy" in (done.prune_error or "")
    # renamed before its removal failed: no half release is left under its name
    assert sorted(p.name for p in (root / "releases").iterdir()) == [".removing.v1", "v2", "v3"]
