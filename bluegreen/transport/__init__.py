"""The Transport seam: run a command, write or read a file, reach a port on the host.

Two real implementations — SSH (paramiko, imported lazily) and Local (subprocess) — and a
recording fake for unit tests. A non-zero exit is data (`CommandResult`); only a failure to talk
to the host raises, mapped to `ConnectError`, `HostKeyError` or `CommandTimeout`."""

from bluegreen.transport.base import CommandResult, Transport

__all__ = ["CommandResult", "Transport"]
