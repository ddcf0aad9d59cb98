"""A large input (a release) sent through the system's OpenSSH client instead of paramiko: the
bytes are handed to `ssh` by the kernel (`sendfile` into a socket that is its stdin) and
encrypted in C, where paramiko spends Python per packet — at 32 hosts the client's CPU, not the
network, bounds a paramiko upload.

The new connection trusts exactly the host key the paramiko connection verified: it is written to
a known_hosts file of its own under an alias, and OpenSSH is told to check strictly against
that file only. Everything else OpenSSH would read (`~/.ssh/config`, the system's known_hosts) is
left out, so the upload connects where and as the operation does. When this client cannot run
or connect, `send` returns None and the caller sends the input itself."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bluegreen.transport.base import Payload
from bluegreen.transport.ssh.target import SSHTarget

# Below this an upload is over before a second connection would be set up.
WORTH_IT = 16 << 20
_ALIAS = "bluegreen-verified-host"
_CHUNK = 4 << 20
_SSH_FAILED = 255  # ssh's own failure; bluegreen's remote commands never exit with it


@dataclass(frozen=True)
class PinnedKey:
    """The host key the operation's connection verified, in known_hosts form."""

    key_type: str
    base64: str


@dataclass(frozen=True)
class Sent:
    """What the command did: its output and exit status (None: not finished in time)."""

    stdout: bytes
    stderr: bytes
    status: int | None


def client() -> str | None:
    return shutil.which("ssh")


def ssh_arguments(binary: str, target: SSHTarget, known_hosts: Path, *, connect_timeout: float,
                  use_agent: bool) -> list[str]:
    """The `ssh` command line, without the remote command: only what the operation resolved."""
    arguments = [
        binary, "-F", "/dev/null", "-T", "-x", "-a",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", f"HostKeyAlias={_ALIAS}",
        "-o", "CheckHostIP=no",
        "-o", "UpdateHostKeys=no",
        "-o", f"ConnectTimeout={max(1, round(connect_timeout))}",
        "-o", "LogLevel=ERROR",
        "-p", str(target.port), "-l", target.user,
    ]
    for identity in target.identity_files:
        arguments += ["-i", identity]
    if not use_agent:
        arguments += ["-o", "IdentityAgent=none"]
    return arguments


def send(binary: str, target: SSHTarget, key: PinnedKey, command: str, payload: Payload, *,
         deadline: float, connect_timeout: float, use_agent: bool,
         sent: Callable[[int], None] | None = None) -> Sent | None:
    """Run `command` on the target with `payload` on its stdin. None: ssh failed by itself
    (could not start, connect or authenticate, or lost the connection), so the command may not
    have run; the caller runs it again its own way."""
    with _pinned_known_hosts(key) as known_hosts, \
            tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        ours, theirs = socket.socketpair()
        try:
            arguments = ssh_arguments(binary, target, known_hosts,
                                      connect_timeout=connect_timeout, use_agent=use_agent)
            try:
                # a session of its own: a Ctrl-C reaches bluegreen, which decides what stops
                process = subprocess.Popen(
                    [*arguments, "--", target.address, command], stdin=theirs.fileno(),
                    stdout=stdout, stderr=stderr, start_new_session=True)
            except OSError:
                return None
            theirs.close()
            try:
                in_time = _feed(ours, payload, deadline, sent)
                ours.close()  # the end of its input
                status = _wait(process, deadline) if in_time else None
            finally:
                if process.poll() is None:
                    _stop(process)
        finally:
            ours.close()
            theirs.close()
        if status == _SSH_FAILED:
            return None
        return Sent(_read(stdout), _read(stderr), status)


def _feed(sock: socket.socket, payload: Payload, deadline: float,
          sent: Callable[[int], None] | None) -> bool:
    """The payload into ssh's stdin, by the kernel; False when the deadline passed first. If ssh
    ends before taking it all, its exit status tells why."""
    sock.setblocking(False)
    size, offset = payload.size, 0
    while offset < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        _, writable, _ = select.select([], [sock], [], remaining)
        if not writable:
            return False
        try:
            count = os.sendfile(sock.fileno(), payload.fileno(), offset,
                                min(_CHUNK, size - offset))
        except BlockingIOError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True
        if count == 0:
            raise OSError(f"the release file ended at byte {offset} of {size}")
        offset += count
        if sent is not None:
            sent(offset)
    return True


def _wait(process: subprocess.Popen[bytes], deadline: float) -> int | None:
    try:
        return process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _read(file: IO[bytes]) -> bytes:
    file.seek(0)
    return file.read()


@contextlib.contextmanager
def _pinned_known_hosts(key: PinnedKey) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bluegreen-ssh-") as directory:
        path = Path(directory) / "known_hosts"
        path.write_text(f"{_ALIAS} {key.key_type} {key.base64}\n")
        yield path
