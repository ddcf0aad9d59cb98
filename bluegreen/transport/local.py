"""Local transport: runs commands with subprocess on this machine, for single-box setups where
bluegreen runs on the balancer itself. No shell is involved: the argv is executed as is."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bluegreen.errors import CommandTimeout, ConnectError
from bluegreen.shell import Command
from bluegreen.transport.base import (
    CommandResult,
    Input,
    input_bytes,
    input_size,
    with_environment,
)
from bluegreen.transport.tunnel import Tunnel


class LocalTransport:
    def __init__(self, host: str, *, sudo: bool = False, command_timeout: float = 120.0):
        self.host = host
        self._sudo = sudo
        self._command_timeout = command_timeout

    def run(
        self, command: Command, *, timeout: float | None = None, stdin: Input | None = None,
        sent: Callable[[int], None] | None = None,
    ) -> CommandResult:
        if self._sudo:
            command = command.with_sudo()
        stdin = with_environment(command, stdin)
        limit = self._command_timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                command.revealed_argv(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise ConnectError(
                f"cannot run `{command}`: {exc.strerror}.", where=self.host
            ) from None
        try:
            stdout, stderr = process.communicate(input_bytes(stdin or b""), timeout=limit)
            if sent is not None and stdin:
                sent(input_size(stdin))
        except BaseException as exc:
            # a timeout, or Ctrl-C/SIGTERM: the command and everything it started go with it
            _kill_group(process)
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            raise CommandTimeout(
                f"`{command}` did not finish within {limit:g} s and was killed.",
                where=self.host,
                hint="Raise ssh.command_timeout in the inventory if the step is legitimately slow.",
            ) from None
        return CommandResult(
            host=self.host,
            command=str(command),
            exit_status=process.returncode,
            stdout=stdout.decode("utf-8", "replace"),
            stderr=stderr.decode("utf-8", "replace"),
            duration=time.monotonic() - started,
        )

    @contextmanager
    def tunnel(self, port: int, *, address: str = "127.0.0.1") -> Iterator[Tunnel]:
        yield Tunnel(address, port)

    def close(self) -> None:
        pass


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
