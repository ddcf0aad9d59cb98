"""A local port that forwards each accepted connection through a channel the caller opens (an SSH
``direct-tcpip`` channel), so ordinary HTTP clients can reach a port on a remote host. Only
loopback is ever listened on. Closing it wakes every thread at once (a self-pipe), so leaving a
tunnel costs no polling delay."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

ChannelOpener = Callable[[tuple[str, int]], Any]


class Tunnel:
    """Where a tunnel listens — it unpacks as ``host, port`` — and why the last connection
    through it could not be forwarded (shown instead of the client's "connection reset")."""

    def __init__(self, host: str, port: int, failure: Callable[[], str | None] = lambda: None):
        self.host = host
        self.port = port
        self._failure = failure

    def __iter__(self) -> Iterator[Any]:
        return iter((self.host, self.port))

    @property
    def failure(self) -> str | None:
        return self._failure()


class PortForwarder:
    def __init__(self, open_channel: ChannelOpener, *, first_channel: Any = None):
        self._open_channel = open_channel
        self._spare = first_channel  # opened ahead (to fail fast), used for the first client
        self.failure: str | None = None
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._threads: list[threading.Thread] = []
        self._sockets: list[Any] = []
        self._lock = threading.Lock()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return host, port

    def __enter__(self) -> Tunnel:
        self._start(self._accept_loop)
        return Tunnel(*self.address, failure=lambda: self.failure)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._wake_writer.send(b"x")
        for thread in self._threads:
            thread.join(timeout=2)
        with self._lock:
            spare = [self._spare] if self._spare is not None else []
            for sock in [*self._sockets, *spare, self._listener, self._wake_reader,
                         self._wake_writer]:
                with contextlib.suppress(Exception):
                    sock.close()

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while True:
            readable, _, _ = select.select([self._listener, self._wake_reader], [], [])
            if self._wake_reader in readable:
                return
            try:
                client, origin = self._listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                channel, self._spare = self._spare or self._open_channel(origin), None
            except Exception as exc:
                self.failure = str(getattr(exc, "message", None) or exc)
                client.close()
                continue
            self.failure = None
            with self._lock:
                self._sockets += [client, channel]
            self._start(self._pump, client, channel)

    def _pump(self, client: socket.socket, channel: Any) -> None:
        try:
            while True:
                readable, _, _ = select.select([client, channel, self._wake_reader], [], [])
                if self._wake_reader in readable:
                    return
                if client in readable:
                    data = client.recv(65536)
                    if not data:
                        return
                    channel.sendall(data)
                if channel in readable:
                    data = channel.recv(65536)
                    if not data:
                        return
                    client.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            channel.close()
