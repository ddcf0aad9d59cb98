"""`SSHTransport`: one connection per host for the whole operation, every command run on it
bounded on the host too (GNU timeout)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from bluegreen.errors import (
    BluegreenError,
    CommandTimeout,
    ConnectError,
    ForwardingRefused,
    RemoteCommandFailed,
)
from bluegreen.shell import Command
from bluegreen.transport.base import CommandResult, Input, input_size, with_environment
from bluegreen.transport.ssh import openssh
from bluegreen.transport.ssh.channel import (
    NO_EXIT_STATUS,
    ChannelAhead,
    InputClosed,
    collect,
    connection_lost,
    exec_pipelined,
    exec_refused,
    forwarding_error,
    send_all,
)
from bluegreen.transport.ssh.connect import ConnectOptions, close_client, open_client
from bluegreen.transport.ssh.jumps import SharedJump, release, through_jumps
from bluegreen.transport.ssh.target import SSHTarget
from bluegreen.transport.tunnel import PortForwarder, Tunnel

if TYPE_CHECKING:
    import paramiko


class SSHTransport:
    """One authenticated connection to one host, reused for every command of an operation.
    With `channels_ahead` (a host that runs command after command), a channel for the next
    command is always being opened while the current one runs."""

    def __init__(self, target: SSHTarget, settings: ConnectOptions, client: paramiko.SSHClient,
                 jumps: list[SharedJump], *, channels_ahead: bool = False):
        self.host = target.name
        self.target = target
        self._settings = settings
        self._client = client
        self._jumps = jumps
        self._channels_ahead = channels_ahead
        self._ahead: ChannelAhead | None = None
        self._ahead_lock = threading.Lock()
        if channels_ahead:
            self._open_ahead()

    @classmethod
    def connect(cls, target: SSHTarget, settings: ConnectOptions, *,
                channels_ahead: bool = False) -> SSHTransport:
        sock, jumps = through_jumps(target, settings)
        try:
            client = open_client(target, settings, sock=sock, label=target.name)
        except BaseException:
            release(jumps)
            raise
        return cls(target, settings, client, jumps, channels_ahead=channels_ahead)

    def _open_ahead(self) -> None:
        transport = self._client.get_transport()
        if transport is not None and transport.is_active():
            self._ahead = ChannelAhead(transport, timeout=self._settings.connect_timeout)

    def _session_channel(self, transport: paramiko.Transport) -> paramiko.Channel:
        """The channel opened ahead if there is one, else a new one."""
        with self._ahead_lock:
            ahead, self._ahead = self._ahead, None
        channel = ahead.take(self._settings.connect_timeout) if ahead is not None else None
        return channel or transport.open_session(timeout=self._settings.connect_timeout)

    def _open_next_ahead(self) -> None:
        """Once a command and its input are sent: its output takes at least a round trip,
        during which the next command's channel opens (started earlier, the thread that opens
        it would compete with the sending)."""
        with self._ahead_lock:
            if self._channels_ahead and self._ahead is None:
                self._open_ahead()

    def run(
        self, command: Command, *, timeout: float | None = None, stdin: Input | None = None,
        sent: Callable[[int], None] | None = None,
    ) -> CommandResult:
        import paramiko

        if self.target.sudo:
            command = command.with_sudo()
        stdin = with_environment(command, stdin)
        limit = self._settings.command_timeout if timeout is None else timeout
        started = time.monotonic()
        deadline = started + limit
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectError("the SSH connection was lost.", where=self.host,
                               hint="Check that the host and its sshd are still up, then retry.")
        # On the host too the command is bounded: GNU timeout runs it in a process group of its
        # own and kills that group a second after we stop waiting, so a command given up on is
        # not left running (daemons it started have left the group).
        text = f"timeout -k 5 {limit + 1:g} {command.render()}"
        if stdin is not None:
            handed = self._send_through_openssh(text, stdin, deadline, sent)
            if handed is not None:
                return self._result(command, limit, started, handed.stdout, handed.stderr,
                                    handed.status)
        try:
            channel = self._session_channel(transport)
            if stdin is None:
                # No EOF is sent on a command without input: paramiko can send it after its own
                # reply to the server's CLOSE when the command ends first, and sshd then drops
                # the whole connection ("ieof packet referred to nonexistent channel").
                exec_pipelined(channel, text + " </dev/null")
            else:
                exec_pipelined(channel, text)
                self._send_input(channel, command, stdin, deadline, limit, sent)
            self._open_next_ahead()
            stdout, stderr, status = collect(channel, deadline)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(f"the SSH connection failed while running `{command}`: {exc}.",
                               where=self.host,
                               hint="Check that the host and its sshd are still up, then retry."
                               ) from None
        if status == NO_EXIT_STATUS and connection_lost(transport):
            raise ConnectError(
                f"the SSH connection was lost while running `{command}`: it ended without an "
                "exit status, so whether it did its work is unknown.",
                where=self.host,
                hint="Check that the host and its sshd are still up, then run `bluegreen "
                     "status` to see what the operation left.")
        if status == NO_EXIT_STATUS and exec_refused(channel):
            raise RemoteCommandFailed(
                f"sshd on {self.host} refused to run `{command}`.", where=self.host,
                hint="Check the deploy user's sshd settings (ForceCommand, a restricted "
                     "shell).")
        return self._result(command, limit, started, stdout, stderr, status)

    def _send_input(self, channel: paramiko.Channel, command: Command, stdin: Input,
                    deadline: float, limit: float, sent: Callable[[int], None] | None) -> None:
        """The command's input, then EOF — unless the command ended first, having read what it
        needed (its exit status says how it went): an EOF after the channel's close would make
        sshd drop the whole connection."""
        try:
            complete = send_all(channel, stdin, deadline, sent)
        except InputClosed:
            return
        if not complete:
            channel.close()
            raise CommandTimeout(
                f"`{command}` stopped reading its input ({input_size(stdin)} bytes) and did "
                f"not finish within {limit:g} s; it is killed on the host.",
                where=self.host,
                hint="Check the host's disk and load; raise ssh.command_timeout if a large "
                     "upload is legitimately slow.")
        if not channel.closed:
            channel.shutdown_write()

    def _send_through_openssh(self, text: str, stdin: Input, deadline: float,
                              sent: Callable[[int], None] | None) -> openssh.Sent | None:
        """A large input sent by the system's OpenSSH client (see `openssh`); None when it is
        not used or could not connect, and this connection sends it."""
        if (isinstance(stdin, bytes) or stdin.size < openssh.WORTH_IT
                or not self._settings.openssh_uploads or self.target.jumps):
            return None
        binary = openssh.client()
        transport = self._client.get_transport()
        if binary is None or transport is None:
            return None
        key = transport.get_remote_server_key()
        return openssh.send(
            binary, self.target, openssh.PinnedKey(key.get_name(), key.get_base64()), text,
            stdin, deadline=deadline, connect_timeout=self._settings.connect_timeout,
            use_agent=self._settings.use_agent, sent=sent)

    def _result(self, command: Command, limit: float, started: float, stdout: bytes,
                stderr: bytes, status: int | None) -> CommandResult:
        """The command's result; CommandTimeout when it did not finish (`status` None)."""
        if status is None:
            raise CommandTimeout(
                f"`{command}` did not finish within {limit:g} s; it is killed on the host.",
                where=self.host,
                hint="Raise ssh.command_timeout in the inventory if the step is legitimately slow.",
            )
        return CommandResult(
            host=self.host,
            command=str(command),
            exit_status=status,
            stdout=stdout.decode("utf-8", "replace"),
            stderr=stderr.decode("utf-8", "replace"),
            duration=time.monotonic() - started,
        )

    @contextmanager
    def tunnel(self, port: int, *, address: str = "127.0.0.1") -> Iterator[Tunnel]:
        """A local port forwarded to `address:port` as seen from the host. The first channel is
        opened right away, so an sshd that refuses forwarding fails here, at once and by name."""
        import paramiko

        transport = self._client.get_transport()
        if transport is None:
            raise ConnectError("the SSH connection was lost.", where=self.host)

        def open_channel(origin: tuple[str, int]) -> Any:
            try:
                return transport.open_channel("direct-tcpip", (address, port), origin,
                                              timeout=self._settings.connect_timeout)
            except paramiko.ChannelException as exc:
                raise forwarding_error(exc, self.host, address, port) from None

        try:
            first = open_channel(("127.0.0.1", 0))
        except ForwardingRefused:
            raise
        except (BluegreenError, paramiko.SSHException, OSError):
            first = None  # nothing listens yet, say: each request tries again
        with PortForwarder(open_channel, first_channel=first) as local:
            yield local

    def close(self) -> None:
        with self._ahead_lock:
            self._channels_ahead = False
            ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.discard()
        close_client(self._client)
        jumps, self._jumps = self._jumps, []
        release(jumps)
