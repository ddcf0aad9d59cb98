"""SSH transport on paramiko — the only package that imports it, and only when a connection is
made, so `bluegreen --help` stays fast.

One connection per host for the whole operation, opened on a TCP_NODELAY socket (paramiko's own
socket costs ~40 ms per command round trip on small packets). Host keys are checked against
known_hosts strictly unless the inventory opts into trust-on-first-use. ProxyJump is followed by
chaining a ``direct-tcpip`` channel through the jump host, since paramiko only parses it.

target.py resolves where to connect (the only part reading inventory structs), connect.py opens
the connection, channel.py runs one command on it, transport.py is the `Transport`."""

from bluegreen.transport.ssh.deferred_invoke import defer_invoke

defer_invoke()  # before any module of this package imports paramiko

from bluegreen.transport.ssh.connect import fingerprint  # noqa: E402
from bluegreen.transport.ssh.target import SSHTarget, resolve_target  # noqa: E402
from bluegreen.transport.ssh.transport import SSHTransport  # noqa: E402

__all__ = ["SSHTarget", "SSHTransport", "fingerprint", "resolve_target"]
