"""Opening one transport per host for an operation, in parallel, and closing them all after.
All unreachable hosts are reported at once."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType

from bluegreen.fanout import fan_out
from bluegreen.inventory import HostSpec, Inventory
from bluegreen.transport.base import Transport


def open_transport(host: HostSpec, inventory: Inventory, *, channels_ahead: bool = False
                   ) -> Transport:
    """`channels_ahead`: the host will run one command after another (see `SSHTransport`)."""
    settings = inventory.ssh
    if host.connection == "local":
        from bluegreen.transport.local import LocalTransport

        sudo = settings.sudo if host.sudo is None else host.sudo
        return LocalTransport(host.name, sudo=sudo, command_timeout=settings.command_timeout)
    from bluegreen.transport.ssh import SSHTransport, resolve_target

    return SSHTransport.connect(resolve_target(host, settings), settings,
                                channels_ahead=channels_ahead)


class Connections:
    """Context manager: ``with Connections(inv, hosts) as conns: conns["app1"].run(...)``.
    The balancers run one command after another (lock, stage, activate, record), and with
    `busy_app_hosts` so do the app hosts (a deploy's upload, stand-up, checks and prune): each
    of their commands gets a channel opened ahead, which saves the round trip of opening it.

    What `also_on_open` adds runs on each host in its connection's worker as soon as that
    connection is open: work that needs nothing else starts without waiting for the slowest
    host to connect."""

    def __init__(self, inventory: Inventory, hosts: Iterable[HostSpec] | None = None, *,
                 busy_app_hosts: bool = False):
        self.inventory = inventory
        self.hosts = list(hosts) if hosts is not None else inventory.all_hosts
        self._busy = {h.name for h in inventory.hosts.balancer} | (
            {h.name for h in inventory.hosts.app} if busy_app_hosts else set())
        self._open: dict[str, Transport] = {}
        self._on_open: list[Callable[[HostSpec, Transport], None]] = []

    def __enter__(self) -> Connections:
        opened: dict[str, Transport] = {}

        def connect(host: HostSpec) -> Transport:
            transport = open_transport(host, self.inventory,
                                       channels_ahead=host.name in self._busy)
            opened[host.name] = transport
            for then in self._on_open:
                then(host, transport)
            return transport

        try:
            fan_out(self.hosts, connect, step="connect", name=lambda h: h.name,
                    parallelism=self.inventory.ssh.parallelism)
        except BaseException:
            for transport in opened.values():
                transport.close()
            raise
        self._open = {h.name: opened[h.name] for h in self.hosts}
        return self

    def also_on_open(self, then: Callable[[HostSpec, Transport], None]) -> None:
        """Run `then` on each host as soon as its connection is open (before `__enter__`
        returns). It must keep its own errors (`EarlyResults`): one it raises fails the
        host's connection."""
        self._on_open.append(then)

    def __getitem__(self, name: str) -> Transport:
        return self._open[name]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for transport in self._open.values():
            transport.close()
        self._open = {}
