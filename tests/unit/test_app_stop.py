"""Stopping an instance: the stop command, then the host itself waits for the instance to go
away (its port free, its status command saying stopped) — one command, however long it takes.
Run for real on this machine (the local transport) against a listener this test starts."""

from __future__ import annotations

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
from bluegreen.errors import CommandTimeout, HealthCheckFailed
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


def stack_and_spec(port: int, **app: Any) -> tuple[AppStack, InstanceSpec]:
    inventory = load_inventory(ROOT / "inventories" / "example.yml",
                               environ={"SHOP_DATABASE_PASSWORD": "s3cret"})
    assert inventory.app is not None
    settings = structs.replace(inventory.app, status=None, **app)
    spec = InstanceSpec(HostSpec(name="here", address=ADDRESS), Colour.BLUE, port, ADDRESS)
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


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((ADDRESS, port), timeout=1):
            return True
    except OSError:
        return False

