"""SSH transport on paramiko — the only module that imports it, and only when a connection is
made, so `bluegreen --help` stays fast.

One connection per host for the whole operation, opened on a TCP_NODELAY socket (paramiko's own
socket costs ~40 ms per command round trip on small packets). Host keys are checked against
known_hosts strictly unless the inventory opts into trust-on-first-use. ProxyJump is followed by
chaining a ``direct-tcpip`` channel through the jump host, since paramiko only parses it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bluegreen.errors import (
    AuthError,
    BluegreenError,
    CommandTimeout,
    ConnectError,
    ForwardingRefused,
    HostKeyError,
)
from bluegreen.inventory import HostSpec, SSHSettings
from bluegreen.shell import Command
from bluegreen.transport.base import CommandResult, with_environment
from bluegreen.transport.tunnel import PortForwarder, Tunnel
from bluegreen.waiting import poll_until

if TYPE_CHECKING:
    import paramiko

_known_hosts_lock = threading.Lock()

# paramiko logs failed handshakes with tracebacks; bluegreen reports them itself, in one paragraph.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to connect, after the inventory and ~/.ssh/config are merged (the inventory
    wins; the ssh config fills what it leaves out)."""

    name: str
    address: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    jumps: tuple[SSHTarget, ...] = field(default=())
    sudo: bool = False

    @property
    def known_hosts_name(self) -> str:
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


def resolve_target(host: HostSpec, settings: SSHSettings, *, follow_jump: bool = True
                   ) -> SSHTarget:
    lookup = _ssh_config_lookup(settings.config_file, host.address or host.name)
    identity = (
        [settings.identity_file] if settings.identity_file else lookup.get("identityfile", [])
    )
    jump = host.jump or settings.jump or lookup.get("proxyjump")
    jumps: tuple[SSHTarget, ...] = ()
    if follow_jump and jump and jump.lower() != "none":
        jumps = tuple(
            _resolve_jump(spec.strip(), settings) for spec in jump.split(",") if spec.strip()
        )
    return SSHTarget(
        name=host.name,
        address=lookup.get("hostname", host.address or host.name),
        port=int(host.port or settings.port or lookup.get("port", 22)),
        user=host.user or settings.user or lookup.get("user") or _local_user(),
        identity_files=tuple(os.path.expanduser(p) for p in identity),
        jumps=jumps,
        sudo=settings.sudo if host.sudo is None else host.sudo,
    )


def _resolve_jump(spec: str, settings: SSHSettings) -> SSHTarget:
    user, _, hostport = spec.rpartition("@")
    name, port = hostport, None
    if hostport.count(":") == 1:
        name, port_text = hostport.split(":")
        port = int(port_text)
    # a jump host is reached directly (its own ProxyJump, if any, is not followed)
    target = resolve_target(HostSpec(name=name, port=port, user=user or None), settings,
                            follow_jump=False)
    return SSHTarget(
        name=spec,
        address=target.address,
        port=target.port,
        user=target.user,
        identity_files=target.identity_files,
    )


def _ssh_config_lookup(config_file: str | None, name: str) -> dict[str, Any]:
    if not config_file:
        return {}
    path = Path(os.path.expanduser(config_file))
    if not path.is_file():
        return {}
    import paramiko

    config = paramiko.SSHConfig.from_path(str(path))
    found = dict(config.lookup(name))
    if found.get("hostname") == name:
        del found["hostname"]
    return found


def _local_user() -> str:
    import getpass

    return getpass.getuser()


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class SSHTransport:
    """One authenticated connection to one host, reused for every command of an operation."""

    def __init__(self, target: SSHTarget, settings: SSHSettings, client: paramiko.SSHClient,
                 jump_clients: list[paramiko.SSHClient]):
        self.host = target.name
        self.target = target
        self._settings = settings
        self._client = client
        self._jump_clients = jump_clients

    @classmethod
    def connect(cls, target: SSHTarget, settings: SSHSettings) -> SSHTransport:
        jump_clients: list[paramiko.SSHClient] = []
        try:
            sock: Any = None
            hops = (*target.jumps, target)
            for hop, next_hop in itertools.pairwise(hops):
                client = _open_client(hop, settings, sock=sock, label=f"jump host of {target.name}")
                jump_clients.append(client)
                sock = _direct_tcpip(client, hop, next_hop, settings)
            client = _open_client(target, settings, sock=sock, label=target.name)
        except BaseException:
            for opened in jump_clients:
                opened.close()
            raise
        return cls(target, settings, client, jump_clients)

    def run(
        self, command: Command, *, timeout: float | None = None, stdin: bytes | None = None,
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
        try:
            channel = transport.open_session(timeout=self._settings.connect_timeout)
            # On the host too the command is bounded: GNU timeout runs it in a process group
            # of its own and kills that group a second after we stop waiting, so a command
            # given up on is not left running (daemons it started have left the group).
            text = f"timeout -k 5 {limit + 1:g} {command.render()}"
            if stdin is None:
                # No EOF is sent on a command without input: paramiko can send it after its own
                # reply to the server's CLOSE when the command ends first, and sshd then drops
                # the whole connection ("ieof packet referred to nonexistent channel").
                channel.exec_command(text + " </dev/null")
            else:
                channel.exec_command(text)
                if not _send_all(channel, stdin, deadline, sent):
                    channel.close()
                    raise CommandTimeout(
                        f"`{command}` stopped reading its input ({len(stdin)} bytes) and did "
                        f"not finish within {limit:g} s; it is killed on the host.",
                        where=self.host,
                        hint="Check the host's disk and load; raise ssh.command_timeout if a "
                             "large upload is legitimately slow.")
                channel.shutdown_write()
            stdout, stderr, status = _collect(channel, deadline)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(f"the SSH connection failed while running `{command}`: {exc}.",
                               where=self.host,
                               hint="Check that the host and its sshd are still up, then retry."
                               ) from None
        if status == _NO_EXIT_STATUS and _connection_lost(transport):
            raise ConnectError(
                f"the SSH connection was lost while running `{command}`: it ended without an "
                "exit status, so whether it did its work is unknown.",
                where=self.host,
                hint="Check that the host and its sshd are still up, then run `bluegreen "
                     "status` to see what the operation left.")
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
                raise _forwarding_error(exc, self.host, address, port) from None

        try:
            first = open_channel(("127.0.0.1", 0))
        except ForwardingRefused:
            raise
        except (BluegreenError, paramiko.SSHException, OSError):
            first = None  # nothing listens yet, say: each request tries again
        with PortForwarder(open_channel, first_channel=first) as local:
            yield local

    def close(self) -> None:
        transport = self._client.get_transport()
        sock = getattr(transport, "sock", None)
        if isinstance(sock, socket.socket):
            # wakes paramiko's reader thread now instead of at its next 0.1 s poll, so the
            # process does not linger at exit joining it
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._client.close()
        for client in reversed(self._jump_clients):
            client.close()


def _direct_tcpip(client: paramiko.SSHClient, hop: SSHTarget, next_hop: SSHTarget,
                  settings: SSHSettings) -> Any:
    import paramiko

    transport = client.get_transport()
    assert transport is not None
    try:
        return transport.open_channel(
            "direct-tcpip", (next_hop.address, next_hop.port), ("127.0.0.1", 0),
            timeout=settings.connect_timeout,
        )
    except (paramiko.SSHException, OSError) as exc:
        raise ConnectError(
            f"jump host {hop.name} could not reach {next_hop.address}:{next_hop.port}: {exc}.",
            where=next_hop.name,
            hint="Check the address and that the jump host allows TCP forwarding.",
        ) from None


def _open_client(target: SSHTarget, settings: SSHSettings, *, sock: Any, label: str
                 ) -> paramiko.SSHClient:
    import paramiko

    known_hosts = Path(os.path.expanduser(settings.known_hosts))
    client = paramiko.SSHClient()
    if settings.strict_host_keys and known_hosts.exists() and not known_hosts.is_file():
        raise HostKeyError(f"known_hosts {known_hosts} is not a file.", where=label,
                           hint="Point ssh.known_hosts at a known_hosts file.")
    if settings.strict_host_keys and known_hosts.is_file():
        try:
            client.load_host_keys(str(known_hosts))
        except (OSError, ValueError, paramiko.SSHException) as exc:  # ValueError: not UTF-8
            raise HostKeyError(f"cannot read known_hosts file {known_hosts}: {exc}.",
                               where=label) from None
    client.set_missing_host_key_policy(
        _HostKeyPolicy(settings, known_hosts, target))  # type: ignore[arg-type]
    own_socket = sock is None
    started = time.monotonic()
    try:
        if own_socket:
            sock = _tcp_connect(target, settings.connect_timeout, label)
        client.connect(
            target.address,
            port=target.port,
            username=target.user,
            key_filename=list(target.identity_files) or None,  # type: ignore[arg-type]
            allow_agent=settings.use_agent,
            look_for_keys=not target.identity_files,
            sock=sock,
            timeout=settings.connect_timeout,
            banner_timeout=settings.connect_timeout,
            auth_timeout=settings.connect_timeout,
            channel_timeout=settings.connect_timeout,
        )
    except _UnknownHostKey as exc:
        client.close()
        raise HostKeyError(
            f"host key for {target.known_hosts_name} is not in {known_hosts} "
            f"({exc.key_type} {exc.fingerprint}).",
            where=label,
            hint=(
                "Verify the fingerprint out of band, then add it with "
                f"`ssh-keyscan -p {target.port} {target.address} >> {known_hosts}`, or set "
                "ssh.trust_on_first_use: true to record keys of new hosts automatically."
            ),
        ) from None
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyError(
            f"host key for {target.known_hosts_name} has CHANGED: expected "
            f"{fingerprint(exc.expected_key)}, got {exc.key.get_name()} {fingerprint(exc.key)}. "
            "Someone may be intercepting the connection, or the host was reinstalled.",
            where=label,
            hint=(
                "If the change is expected, remove the old key with "
                f"`ssh-keygen -R '{target.known_hosts_name}' -f {known_hosts}` and connect again."
            ),
        ) from None
    except paramiko.AuthenticationException as exc:
        client.close()
        raise AuthError(
            f"authentication as {target.user} failed: {exc}.",
            where=label,
            hint="Check ssh.user, ssh.identity_file or the ssh-agent, and the host's "
            "authorized_keys.",
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        if time.monotonic() - started >= settings.connect_timeout * 0.9:
            reason = f"no SSH answer within {settings.connect_timeout:g} s (handshake timed out)"
        else:
            reason = f"SSH handshake failed: {exc or type(exc).__name__}"
        raise ConnectError(
            f"{target.address}:{target.port}: {reason}.",
            where=label,
            hint="Check that sshd is running there and answering on that port.",
        ) from None
    return client


class _QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges every read at once. Linux delays ACKs by up to 40 ms while
    a connection is young, and sshd's small replies then wait on them: without this the first
    command on a new connection costs ~45 ms instead of ~3."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        with contextlib.suppress(OSError):
            self.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        return data


_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)


def _tcp_connect(target: SSHTarget, timeout: float, label: str) -> socket.socket:
    try:
        sock = _connect_socket(target.address, target.port, timeout)
    except TimeoutError:
        raise ConnectError(
            f"no answer from {target.address}:{target.port} within {timeout:g} s.",
            where=label,
            hint="Check the address, the port and any firewall; raise ssh.connect_timeout if the "
            "network is slow.",
        ) from None
    except OSError as exc:
        raise ConnectError(
            f"cannot connect to {target.address}:{target.port}: {exc.strerror or exc}.",
            where=label,
            hint="Check that the host is up and sshd listens on that port.",
        ) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _connect_socket(address: str, port: int, timeout: float) -> socket.socket:
    """socket.create_connection, but with the quick-ACK socket class."""
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(address, port, 0,
                                                                 socket.SOCK_STREAM):
        sock = _QuickAckSocket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"cannot resolve {address}")


def _forwarding_error(exc: Any, host: str, address: str, port: int) -> BluegreenError:
    """What sshd said when it would not open a forwarded channel, in words that say what to do."""
    if exc.code == _ADMINISTRATIVELY_PROHIBITED:
        return ForwardingRefused(
            f"sshd on {host} refused port forwarding (AllowTcpForwarding?), so the health "
            f"check cannot reach {address}:{port} through SSH.",
            where=host,
            hint="Set health.via: direct in the inventory, or allow TCP forwarding for the "
                 "deploy user in the host's sshd_config.")
    if exc.code == _CONNECT_FAILED:
        return ConnectError(f"connection refused: nothing accepts connections on "
                            f"{address}:{port} on {host}.", where=host)
    return ConnectError(f"sshd on {host} could not open a channel to {address}:{port}: "
                        f"{exc.text}.", where=host)


_ADMINISTRATIVELY_PROHIBITED, _CONNECT_FAILED = 1, 2  # RFC 4254 channel open failure codes
_SEND_CHUNK = 1 << 18  # each chunk is still re-sliced per packet: keep it small


def _send_all(channel: Any, data: bytes, deadline: float,
              sent: Callable[[int], None] | None = None) -> bool:
    """`channel.sendall` in bounded chunks (paramiko's sendall re-slices what remains after
    every packet, which copies the rest each time — quadratic in the size of a release), each
    bounded by the command's deadline: a host that stops reading cannot hang an upload. False
    when the deadline passed."""
    view = memoryview(data)
    for offset in range(0, len(view), _SEND_CHUNK):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        channel.settimeout(remaining)
        try:
            channel.sendall(view[offset:offset + _SEND_CHUNK].tobytes())
        except TimeoutError:
            return False
        if sent is not None:
            sent(min(offset + _SEND_CHUNK, len(view)))
    channel.settimeout(None)
    return True


_NO_EXIT_STATUS = -1  # paramiko's exit status when none came: killed by a signal, or cut off


def _connection_lost(transport: Any) -> bool:
    """Whether the connection died (rather than the command being killed by a signal, which
    also leaves no exit status). paramiko closes the channels just before it marks the
    connection inactive, so give it a moment."""
    return poll_until(lambda: not transport.is_active(), timeout=1.0, interval=0.01,
                      interruptible=False)


def _collect(channel: Any, deadline: float) -> tuple[bytes, bytes, int | None]:
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


class _UnknownHostKey(Exception):
    def __init__(self, key: paramiko.PKey):
        super().__init__("unknown host key")
        self.key_type = key.get_name()
        self.fingerprint = fingerprint(key)


class _HostKeyPolicy:
    """Unknown key: refuse (strict), record it (trust on first use), or accept (strict off).
    A changed key is always refused, by paramiko itself, before this runs."""

    def __init__(self, settings: SSHSettings, known_hosts: Path, target: SSHTarget):
        self._settings = settings
        self._known_hosts = known_hosts
        self._target = target

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
                         ) -> None:
        if not self._settings.strict_host_keys:
            return
        if not self._settings.trust_on_first_use:
            raise _UnknownHostKey(key)
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with _known_hosts_lock:
            self._known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self._known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as handle:
                handle.write(line)
