"""Opening an authenticated paramiko connection to a resolved target: a TCP_NODELAY, quick-ACK
socket, host keys checked against known_hosts (strictly, unless trust-on-first-use), ProxyJump
through chained `direct-tcpip` channels."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bluegreen.errors import (
    AuthError,
    ConnectError,
    HostKeyError,
)
from bluegreen.transport.ssh.identities import first_identity
from bluegreen.transport.ssh.target import SSHTarget

if TYPE_CHECKING:
    import paramiko


class ConnectOptions(Protocol):
    """What connecting and running commands read of the `ssh:` settings (`SSHSettings` is
    one): this package takes a resolved target and these, never inventory structs."""

    @property
    def connect_timeout(self) -> float: ...
    @property
    def command_timeout(self) -> float: ...
    @property
    def known_hosts(self) -> str: ...
    @property
    def strict_host_keys(self) -> bool: ...
    @property
    def trust_on_first_use(self) -> bool: ...
    @property
    def use_agent(self) -> bool: ...
    @property
    def openssh_uploads(self) -> bool: ...


_known_hosts_lock = threading.Lock()
# known_hosts parsed once per version of the file, (path, mtime, size) → its keys
_parsed_known_hosts: dict[tuple[str, int, int], _KnownHosts] = {}


class _KnownHosts:
    """A known_hosts file's keys by host name: a dict for plain names, paramiko's HostKeys
    (which compares each entry's salted hash) for hashed ones. paramiko's own loader compares
    every line with every line before it, and its lookup scans them all."""

    def __init__(self, path: Path):
        import paramiko
        from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

        self.by_name: dict[str, dict[str, paramiko.PKey]] = {}
        self.hashed = paramiko.HostKeys()
        with path.open() as lines:
            for number, line in enumerate(lines, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                try:
                    entry = HostKeyEntry.from_line(line, number)
                except (paramiko.SSHException, InvalidHostKey):  # ignored, as OpenSSH does
                    continue
                if entry is None or entry.key is None:
                    continue
                for name in entry.hostnames:
                    if name.startswith("|1|"):
                        self.hashed.add(name, entry.key.get_name(), entry.key)
                    else:  # the first key of a type for a name counts, as in paramiko's lookup
                        self.by_name.setdefault(name, {}).setdefault(entry.key.get_name(),
                                                                     entry.key)

    def keys_for(self, name: str) -> dict[str, paramiko.PKey]:
        return {**(self.hashed.lookup(name) or {}), **self.by_name.get(name, {})}

# paramiko logs failed handshakes with tracebacks; bluegreen reports them itself, in one paragraph.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

def _known_host_keys(path: Path) -> _KnownHosts:
    """The known_hosts file's keys, parsed once per version of the file and shared by every
    connection (parsed for each host's connection, a known_hosts of hundreds of lines was most
    of a large fan-out's CPU). A key trust on first use appends makes a new version."""

    stat = path.stat()
    version = (str(path), stat.st_mtime_ns, stat.st_size)
    with _known_hosts_lock:
        keys = _parsed_known_hosts.get(version)
        if keys is None:
            keys = _KnownHosts(path)
            _parsed_known_hosts.clear()
            _parsed_known_hosts[version] = keys
        return keys


def direct_tcpip(client: paramiko.SSHClient, hop: SSHTarget, next_hop: SSHTarget,
                  settings: ConnectOptions) -> Any:
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


def _aead_first(*args: Any, **kwargs: Any) -> paramiko.Transport:
    """A transport that offers AES-GCM first (OpenSSH's own preference after ChaCha20, which
    paramiko lacks): one pass of the cipher authenticates each packet, where AES-CTR needs an
    HMAC besides — about a tenth of an upload's client CPU. Servers without it get AES-CTR."""
    import paramiko

    transport = paramiko.Transport(*args, **kwargs)
    options = transport.get_security_options()
    offered = tuple(options.ciphers)
    aead = tuple(c for c in ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com") if c in offered)
    options.ciphers = aead + tuple(c for c in offered if c not in aead)
    return transport


def close_client(client: paramiko.SSHClient) -> None:
    transport = client.get_transport()
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket):
        # wakes paramiko's reader thread now instead of at its next 0.1 s poll, so the
        # process does not linger at exit joining it
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    client.close()


def open_client(target: SSHTarget, settings: ConnectOptions, *, sock: Any, label: str
                 ) -> paramiko.SSHClient:
    import paramiko

    known_hosts = Path(os.path.expanduser(settings.known_hosts))
    client = paramiko.SSHClient()
    if settings.strict_host_keys and known_hosts.exists() and not known_hosts.is_file():
        raise HostKeyError(f"known_hosts {known_hosts} is not a file.", where=label,
                           hint="Point ssh.known_hosts at a known_hosts file.")
    if settings.strict_host_keys and known_hosts.is_file():
        try:
            known = _known_host_keys(known_hosts)
        except (OSError, ValueError, paramiko.SSHException) as exc:  # ValueError: not UTF-8
            raise HostKeyError(f"cannot read known_hosts file {known_hosts}: {exc}.",
                               where=label) from None
        # only this host's keys, under the name paramiko looks it up by
        for key_type, key in known.keys_for(target.known_hosts_name).items():
            client.get_host_keys().add(target.known_hosts_name, key_type, key)
    client.set_missing_host_key_policy(
        _HostKeyPolicy(settings, known_hosts, target))  # type: ignore[arg-type]
    own_socket = sock is None
    started = time.monotonic()
    try:
        if own_socket:
            sock = _tcp_connect(target, settings.connect_timeout, label)
        pkey, key_files = first_identity(target.identity_files)
        client.connect(
            target.address,
            port=target.port,
            username=target.user,
            pkey=pkey,
            key_filename=key_files or None,  # type: ignore[arg-type]
            allow_agent=settings.use_agent,
            look_for_keys=not target.identity_files,
            sock=sock,
            timeout=settings.connect_timeout,
            banner_timeout=settings.connect_timeout,
            auth_timeout=settings.connect_timeout,
            channel_timeout=settings.connect_timeout,
            transport_factory=_aead_first,
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

class _UnknownHostKey(Exception):
    def __init__(self, key: paramiko.PKey):
        super().__init__("unknown host key")
        self.key_type = key.get_name()
        self.fingerprint = fingerprint(key)

class _HostKeyPolicy:
    """Unknown key: refuse (strict), record it (trust on first use), or accept (strict off).
    A changed key is always refused, by paramiko itself, before this runs."""

    def __init__(self, settings: ConnectOptions, known_hosts: Path, target: SSHTarget):
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
