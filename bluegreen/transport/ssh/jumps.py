"""Jump hosts shared by the connections that go through them. The first connection through a
chain of jump hosts opens it; the others open a channel through the same connection; the last
to close closes it. A bastion in front of a fleet thus sees one authenticated connection, where
a connection per target would have it refuse some once more than its sshd's MaxStartups (10 by
default) arrive at once."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bluegreen.transport.ssh.connect import (
    ConnectOptions,
    close_client,
    direct_tcpip,
    open_client,
)
from bluegreen.transport.ssh.target import SSHTarget

if TYPE_CHECKING:
    import paramiko

_Key = tuple[tuple[str, int, str, tuple[str, ...]], ...]


@dataclass(eq=False)
class SharedJump:
    """One jump host's connection and how many connections use it."""

    key: _Key
    users: int = 0
    client: paramiko.SSHClient | None = None
    error: BaseException | None = None
    opened: threading.Event = field(default_factory=threading.Event)

    def alive(self) -> bool:
        if not self.opened.is_set():
            return True  # being opened: wait for it
        transport = self.client.get_transport() if self.client else None
        return transport is not None and transport.is_active()


_lock = threading.Lock()
_shared: dict[_Key, SharedJump] = {}


def through_jumps(target: SSHTarget, settings: ConnectOptions) -> tuple[Any, list[SharedJump]]:
    """A socket to `target` through its jump hosts (None without any), and the shared jump
    connections it uses, for `release` once the connection to `target` closes."""
    held: list[SharedJump] = []
    try:
        previous: SharedJump | None = None
        for depth in range(len(target.jumps)):
            previous = _acquire(target.jumps[:depth + 1], previous, settings)
            held.append(previous)
        if previous is None:
            return None, held
        assert previous.client is not None
        return direct_tcpip(previous.client, target.jumps[-1], target, settings), held
    except BaseException:
        release(held)
        raise


def release(held: list[SharedJump]) -> None:
    """Give back the jump connections `through_jumps` handed out; the last user closes each."""
    for jump in reversed(held):
        with _lock:
            jump.users -= 1
            last = jump.users == 0
            if last and _shared.get(jump.key) is jump:
                del _shared[jump.key]
        if last and jump.client is not None:
            close_client(jump.client)


def _acquire(chain: tuple[SSHTarget, ...], previous: SharedJump | None,
             settings: ConnectOptions) -> SharedJump:
    key: _Key = tuple((hop.address, hop.port, hop.user, hop.identity_files) for hop in chain)
    with _lock:
        jump = _shared.get(key)
        opening = jump is None or not jump.alive()
        if opening:
            jump = _shared[key] = SharedJump(key)
        assert jump is not None
        jump.users += 1
    if opening:
        try:
            sock = None
            if previous is not None:
                assert previous.client is not None
                sock = direct_tcpip(previous.client, chain[-2], chain[-1], settings)
            # named for itself: its error is every waiting connection's
            jump.client = open_client(chain[-1], settings, sock=sock,
                                      label=f"jump host {chain[-1].name}")
        except BaseException as error:
            jump.error = error
            with _lock:
                if _shared.get(key) is jump:
                    del _shared[key]  # the next connection tries again
            release([jump])
            raise
        finally:
            jump.opened.set()
        return jump
    jump.opened.wait()
    if jump.error is not None:
        release([jump])
        raise jump.error
    return jump
