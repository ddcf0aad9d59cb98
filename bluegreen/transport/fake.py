"""A recording transport for unit tests of pure logic (like httpx.MockTransport): it answers each
command with what a handler returns and keeps every call. Never the only proof of a feature."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from bluegreen.shell import Command
from bluegreen.transport.base import CommandResult, Input, input_bytes
from bluegreen.transport.tunnel import Tunnel

Handler = Callable[[Command, bytes | None], tuple[int, str, str]]


def succeed(command: Command, stdin: bytes | None) -> tuple[int, str, str]:
    return 0, "", ""


@dataclass
class FakeTransport:
    host: str
    handler: Handler = succeed
    calls: list[Command] = field(default_factory=list)
    closed: bool = False

    def run(
        self, command: Command, *, timeout: float | None = None, stdin: Input | None = None,
        sent: Callable[[int], None] | None = None,
    ) -> CommandResult:
        self.calls.append(command)
        data = input_bytes(stdin) if stdin is not None else None
        status, stdout, stderr = self.handler(command, data)
        if sent is not None and data:
            sent(len(data))
        return CommandResult(self.host, str(command), status, stdout, stderr)

    @contextmanager
    def tunnel(self, port: int, *, address: str = "127.0.0.1") -> Iterator[Tunnel]:
        yield Tunnel(address, port)

    def close(self) -> None:
        self.closed = True
