"""One command on an open connection: its input sent in bounded chunks, its output read from
both streams until it exits, a lost connection told apart from a killed command."""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable
from typing import Any

from bluegreen.errors import (
    BluegreenError,
    ConnectError,
    ForwardingRefused,
)
from bluegreen.transport.base import Input, input_size
from bluegreen.waiting import poll_until


def forwarding_error(exc: Any, host: str, address: str, port: int) -> BluegreenError:
    """What sshd said when it would not open a forwarded channel, in words that say what to do."""
    if exc.code == _ADMINISTRATIVELY_PROHIBITED:
        return ForwardingRefused(
            f"sshd on {host} refused port forwarding (AllowTcpForwarding?), so the health "
            f"check cannot reach {address}:{port} through SSH.",
            where=host,
            hint="Install curl on the host (with health.via: host, the default, checks then "
                 "need no forwarding), set health.via: direct in the inventory, or allow TCP "
                 "forwarding for the deploy user in the host's sshd_config.")
    if exc.code == _CONNECT_FAILED:
        return ConnectError(f"connection refused: nothing accepts connections on "
                            f"{address}:{port} on {host}.", where=host)
    return ConnectError(f"sshd on {host} could not open a channel to {address}:{port}: "
                        f"{exc.text}.", where=host)

_ADMINISTRATIVELY_PROHIBITED, _CONNECT_FAILED = 1, 2  # RFC 4254 channel open failure codes

_SEND_CHUNK = 1 << 18  # each chunk is still re-sliced per packet: keep it small

class InputClosed(Exception):
    """The command ended before it read all its input (a lock attempt that finds the lock
    held exits at once): its exit status says how it went, and no more is sent."""


def send_all(channel: Any, data: Input, deadline: float,
             sent: Callable[[int], None] | None = None) -> bool:
    """`channel.sendall` in bounded chunks (paramiko's sendall re-slices what remains after
    every packet, which copies the rest each time — quadratic in the size of a release), each
    bounded by the command's deadline: a host that stops reading cannot hang an upload. A
    payload is read a chunk at a time, never whole. False when the deadline passed;
    InputClosed when the command ended first."""
    size = input_size(data)
    for offset in range(0, size, _SEND_CHUNK):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        chunk = _chunk(data, offset)
        channel.settimeout(remaining)
        try:
            channel.sendall(chunk)
        except TimeoutError:
            return False
        except OSError:
            if channel.closed:  # paramiko's "Socket is closed": the command is over
                raise InputClosed from None
            raise
        if sent is not None:
            sent(min(offset + _SEND_CHUNK, size))
    channel.settimeout(None)
    return True

def _chunk(data: Input, offset: int) -> bytes:
    if isinstance(data, bytes):
        return data[offset:offset + _SEND_CHUNK]
    return data.read_at(offset, _SEND_CHUNK)


class ChannelAhead:
    """A session channel opened in the background while the connection does something else, so
    that the next command does not wait a round trip for sshd to answer the open: a command
    costs one round trip where it cost two. For hosts that run command after command (a
    balancer; a deploy's app hosts)."""

    # sshd may close a session channel that stays idle (its ChannelTimeout): one held this
    # long is not used, so that a command never starts on a channel being closed under it
    FRESH_FOR = 60.0

    def __init__(self, transport: Any, *, timeout: float):
        self._opened = threading.Event()
        self._channel: Any = None
        self._since = time.monotonic()
        threading.Thread(target=self._open, args=(transport, timeout), daemon=True,
                         name="open a channel ahead").start()

    def _open(self, transport: Any, timeout: float) -> None:
        try:
            self._channel = transport.open_session(timeout=timeout)
        except Exception:  # the command opens its own channel then, and says why it cannot
            self._channel = None
        finally:
            self._opened.set()

    def take(self, timeout: float) -> Any:
        """The channel, once open (waiting up to `timeout`); None when it could not be, or has
        been held too long."""
        if not self._opened.wait(timeout):
            return None
        channel = self._channel
        if channel is None or not channel.active or channel.closed:
            return None
        if time.monotonic() - self._since > self.FRESH_FOR:
            channel.close()
            return None
        return channel

    def discard(self) -> None:
        if self._opened.is_set() and self._channel is not None:
            self._channel.close()


def exec_pipelined(channel: Any, command: str) -> None:
    """paramiko's `exec_command` without waiting for sshd's answer to the request: the
    command's input goes right behind it and its output is read as usual, so a command costs
    one round trip fewer. sshd handles the connection's messages in order; if it refuses the
    request it closes the channel, which `exec_refused` then tells apart."""
    from paramiko.common import cMSG_CHANNEL_REQUEST
    from paramiko.message import Message

    request = Message()
    request.add_byte(cMSG_CHANNEL_REQUEST)
    request.add_int(channel.remote_chanid)
    request.add_string("exec")
    request.add_boolean(True)  # sshd answers; paramiko closes the channel on a refusal
    request.add_string(command)
    channel._event_pending()
    channel.transport._send_user_message(request)


def exec_refused(channel: Any) -> bool:
    """Whether sshd refused the command's exec request (rather than the command running)."""
    return bool(channel.event.is_set() and not channel.event_ready)


NO_EXIT_STATUS = -1  # paramiko's exit status when none came: killed by a signal, or cut off

def connection_lost(transport: Any) -> bool:
    """Whether the connection died (rather than the command being killed by a signal, which
    also leaves no exit status). paramiko closes the channels just before it marks the
    connection inactive, so give it a moment."""
    return poll_until(lambda: not transport.is_active(), timeout=1.0, interval=0.01,
                      interruptible=False)

def collect(channel: Any, deadline: float) -> tuple[bytes, bytes, int | None]:
    """Read stdout and stderr together until the command exits (reading only one stream, or
    calling recv_exit_status() first, deadlocks once the other stream's window fills)."""
    stdout: list[bytes] = []
    stderr: list[bytes] = []
    try:
        while True:
            drained = False
            while channel.recv_ready():
                stdout.append(channel.recv(65536))
                drained = True
            while channel.recv_stderr_ready():
                stderr.append(channel.recv_stderr(65536))
                drained = True
            if drained:
                continue
            remaining = deadline - time.monotonic()
            if channel.eof_received or channel.closed:
                if channel.status_event.wait(max(remaining, 0)):
                    # data that raced the exit status is still buffered: take it
                    while channel.recv_ready():
                        stdout.append(channel.recv(65536))
                    while channel.recv_stderr_ready():
                        stderr.append(channel.recv_stderr(65536))
                    return b"".join(stdout), b"".join(stderr), channel.recv_exit_status()
                return b"".join(stdout), b"".join(stderr), None
            if remaining <= 0:
                return b"".join(stdout), b"".join(stderr), None
            select.select([channel], [], [], remaining)
    finally:
        channel.close()
