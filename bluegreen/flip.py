"""Flipping traffic on every balancer, all or nothing: stage and validate on all of them first;
then activate (reload and confirm the reload took) one by one; if any activation fails, every
balancer already touched gets its previous file back, byte for byte, and is reloaded again."""

from __future__ import annotations

import time

from bluegreen.balancer import Balancer, BalancerSite, site_for
from bluegreen.connections import Connections
from bluegreen.errors import BalancerError, BluegreenError, FanOutError
from bluegreen.fanout import fan_out
from bluegreen.inventory import HostSpec, Inventory
from bluegreen.output import Reporter
from bluegreen.transport.base import Transport


class Flipper:
    def __init__(self, inventory: Inventory, connections: Connections, reporter: Reporter):
        self.inventory = inventory
        self.connections = connections
        self.reporter = reporter
        self.balancers = list(inventory.hosts.balancer)
        self.sites: dict[str, BalancerSite] = {h.name: site_for(inventory, h)
                                               for h in self.balancers}

    def flip(self, configs: dict[str, str]) -> None:
        staged: list[HostSpec] = []
        self.reporter.phase("stage and validate the balancer config")

        def stage_and_validate(host: HostSpec) -> None:
            transport, site = self.connections[host.name], self.sites[host.name]
            site.managed.stage(transport, configs[host.name])
            staged.append(host)
            result = transport.run(site.driver.validate())
            if not result.ok:
                self.reporter.step(host.name, f"{site.driver.kind} config invalid", ok=False)
                raise BalancerError(
                    f"the rendered config failed validation (`{result.command}`): "
                    f"{_tail(result.stderr or result.stdout)}",
                    where=host.name,
                    hint="Fix balancer.template (or the main config); the managed file was put "
                         "back byte for byte and nothing was reloaded.",
                )
            self.reporter.step(host.name, f"{site.driver.kind} config valid", ok=True)

        try:
            fan_out(self.balancers, stage_and_validate, step="validate", name=lambda h: h.name,
                    parallelism=self.inventory.ssh.parallelism)
        except BaseException as exc:
            self._restore(staged, reload=False)
            raise _balancer_error(exc) from None

        self.reporter.phase("activate: reload the balancers")
        activated: list[HostSpec] = []
        try:
            for host in self.balancers:
                activated.append(host)
                self._reload_and_confirm(host)
                self.reporter.step(host.name, "reloaded, new workers serving", ok=True)
        except BaseException as exc:
            self.reporter.step(activated[-1].name, "activation failed; restoring", ok=False)
            untouched = [h for h in self.balancers if h not in activated]
            self._restore(untouched, reload=False)
            self._restore(activated, reload=True)
            raise _balancer_error(exc) from None

    def undo(self) -> None:
        """Flip back: every balancer gets its previous file and is reloaded."""
        self.reporter.phase("flip back: restore the previous balancer config")
        self._restore(self.balancers, reload=True)

    def _restore(self, hosts: list[HostSpec], *, reload: bool) -> None:
        def restore(host: HostSpec) -> None:
            transport = self.connections[host.name]
            self.sites[host.name].managed.restore(transport)
            if reload:
                self._reload_and_confirm(host)
            self.reporter.step(host.name, "previous config restored"
                               + (" and reloaded" if reload else ""), ok=True)

        if hosts:
            fan_out(hosts, restore, step="restore", name=lambda h: h.name,
                    parallelism=self.inventory.ssh.parallelism)

    def _reload_and_confirm(self, host: HostSpec) -> None:
        """`nginx -s reload` exiting 0 proves nothing: wait until the master runs new workers
        (a rejected config leaves the old ones) and no old worker still accepts connections."""
        transport, site = self.connections[host.name], self.sites[host.name]
        driver, timeout = site.driver, site.settings.reload_timeout
        before = set(_workers(transport, driver))
        transport.run(driver.reload(), timeout=timeout).check("reload")
        deadline = time.monotonic() + timeout
        while True:
            after = _workers(transport, driver)
            new = after.keys() - before
            old_accepting = [p for p in before & after.keys() if not driver.is_retiring(after[p])]
            if new and not old_accepting:
                return
            if time.monotonic() >= deadline:
                raise BalancerError(
                    f"the reload did not take: no new {driver.kind} worker within "
                    f"{timeout:g} s.",
                    where=host.name,
                    hint=f"Check {driver.kind}'s error log on {host.name}.",
                )
            time.sleep(0.01)


def _workers(transport: Transport, driver: Balancer) -> dict[int, str]:
    """The balancer's worker processes: pid → command line."""
    result = transport.run(driver.workers())
    if not result.ok:
        raise BalancerError(
            f"{driver.kind} is not running (no master process behind its pid file).",
            where=transport.host,
            hint=f"Start {driver.kind}, or set balancer.pid_file to its pid file.",
        )
    workers: dict[int, str] = {}
    for line in result.stdout.splitlines():
        pid, _, args = line.strip().partition(" ")
        if pid.isdigit():
            workers[int(pid)] = args
    return workers


def _balancer_error(exc: BaseException) -> BaseException:
    if isinstance(exc, FanOutError):
        if len(exc.failures) == 1:
            return exc.failures[0].error
        error = BalancerError(exc.message)
        error.paragraph = exc.paragraph  # type: ignore[method-assign]
        return error
    if isinstance(exc, BluegreenError) and not isinstance(exc, BalancerError):
        return BalancerError(exc.message, where=exc.where, hint=exc.hint)
    return exc


def _tail(text: str, lines: int = 3) -> str:
    return " / ".join(text.strip().splitlines()[-lines:])

