"""A local port that forwards each accepted connection through a channel the caller opens (an SSH
``direct-tcpip`` channel), so ordinary HTTP clients can reach a port on a remote host. Only
loopback is ever listened on. Closing it wakes every thread at once (a self-pipe), so leaving a
tunnel costs no polling delay."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

ChannelOpener = Callable[[tuple[str, int]], Any]


class PortForwarder:
    def __init__(self, open_channel: ChannelOpener):
        self._open_channel = open_channel
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

    def __enter__(self) -> tuple[str, int]:
        self._start(self._accept_loop)
        return self.address

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
            for sock in [*self._sockets, self._listener, self._wake_reader, self._wake_writer]:
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
                channel = self._open_channel(origin)
            except Exception:
                client.close()
                continue
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
