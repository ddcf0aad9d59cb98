"""Flipping traffic on every balancer, all or nothing: stage and validate on all of them first;
then activate them all at once — a graceful reload confirmed by the workers, or HAProxy's runtime
API (no reload) — and if any activation fails, every balancer already touched gets its previous
file back, byte for byte, and its previous traffic."""

from __future__ import annotations

import time

from bluegreen import cancel
from bluegreen.balancer import BalancerSite
from bluegreen.balancer.base import Balancer, Upstream, server_name
from bluegreen.balancer.haproxy import HAProxyBalancer, ServerStat
from bluegreen.connections import Connections
from bluegreen.errors import BalancerError, BluegreenError, FanOutError, Interrupted
from bluegreen.fanout import fan_out
from bluegreen.inventory import HostSpec, Inventory
from bluegreen.output import Reporter
from bluegreen.plan import FlipPlan
from bluegreen.transport.base import Transport


class Flipper:
    def __init__(self, inventory: Inventory, connections: Connections, reporter: Reporter, *,
                 sites: dict[str, BalancerSite]):
        self.inventory = inventory
        self.connections = connections
        self.reporter = reporter
        self.balancers = list(inventory.hosts.balancer)
        self.sites = sites

    def flip(self, plan: FlipPlan) -> None:
        staged: list[HostSpec] = []
        self.reporter.phase("stage and validate the balancer config")

        def stage_and_validate(host: HostSpec) -> None:
            transport, site = self.connections[host.name], self.sites[host.name]
            staged.append(host)  # before: a connection lost after the remote rename counts
            site.managed.stage(transport, plan.configs[host.name])
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
            restore_errors = self._restore(staged, plan, activated=False)
            raise _balancer_error(exc, restore_errors) from None

        if cancel.CANCELLED.is_set():
            errors = self._restore(self.balancers, plan, activated=False)
            raise _with_restore_errors(Interrupted(
                "interrupted before the activation: every balancer file was put back and "
                "nothing was flipped."), errors)

        # Every balancer is ready: activate them all at once, so that the window in which one
        # serves the new colour while another fails to is as short as the drivers allow.
        self.reporter.phase("activate: switch traffic on the balancers")
        try:
            fan_out(self.balancers, lambda host: self._activate(host, plan.upstream),
                    step="activate", name=lambda h: h.name,
                    parallelism=self.inventory.ssh.parallelism)
        except BaseException as exc:
            self.reporter.warn("activation failed; restoring every balancer")
            restore_errors = self._restore(self.balancers, plan, activated=True)
            raise _balancer_error(exc, restore_errors) from None

    def undo(self, plan: FlipPlan) -> None:
        """Flip back: every balancer gets its previous file and its previous traffic."""
        self.reporter.phase("flip back: restore the previous balancer config")
        errors = self._restore(self.balancers, plan, activated=True)
        if errors:
            raise BalancerError("flipping back failed on " + "; ".join(errors),
                                hint="Run `bluegreen status`, then `bluegreen switch --to "
                                     "COLOUR` once the balancers are reachable.")

    def _activate(self, host: HostSpec, upstream: Upstream) -> None:
        site = self.sites[host.name]
        site.managed.take(self.connections[host.name])
        if site.settings.flip == "runtime" and self._runtime_flip(host, upstream):
            return
        self._reload_and_confirm(host)
        self.reporter.step(host.name, "reloaded, new workers serving", ok=True)

    def _restore(self, hosts: list[HostSpec], plan: FlipPlan, *, activated: bool) -> list[str]:
        """Put the previous file back on `hosts` and, where traffic had moved, move it back.
        Returns what could not be restored (already reported), so the caller's error says it."""
        failures: list[str] = []

        def restore(host: HostSpec) -> None:
            transport, site = self.connections[host.name], self.sites[host.name]
            site.managed.restore(transport)
            if activated:
                previous = plan.previous_upstream
                runtime = site.settings.flip == "runtime" and previous is not None
                if not (runtime and self._runtime_flip(host, previous)):  # type: ignore[arg-type]
                    self._reload_and_confirm(host)
            self.reporter.step(host.name, "previous config restored"
                               + (" and traffic moved back" if activated else ""), ok=True)

        for host in hosts:
            try:
                restore(host)
            except BluegreenError as error:
                self.reporter.step(host.name, f"restore failed: {error.message}", ok=False)
                failures.append(f"{host.name}: {error.message}")
        return failures

    def _reload_and_confirm(self, host: HostSpec) -> None:
        """`nginx -s reload` exiting 0 proves nothing: wait until the balancer's workers show
        the reload took (a rejected config leaves the old ones)."""
        transport, site = self.connections[host.name], self.sites[host.name]
        driver, timeout = site.driver, site.settings.reload_timeout
        before = _workers(transport, driver)
        transport.run(driver.reload(), timeout=timeout).check("reload")
        deadline = time.monotonic() + timeout
        while True:
            if driver.reload_took(before, _workers(transport, driver)):
                return
            if time.monotonic() >= deadline:
                raise BalancerError(
                    f"the reload did not take: no new {driver.kind} worker within "
                    f"{timeout:g} s.",
                    where=host.name,
                    hint=f"Check {driver.kind}'s error log on {host.name}.",
                )
            time.sleep(0.01)

    def _runtime_flip(self, host: HostSpec, upstream: Upstream) -> bool:
        """Move traffic with HAProxy's runtime API: target servers ready, the others drain, and
        go to maintenance once their sessions end (or the drain timeout passes). False when the
        running HAProxy does not know these servers yet (first deploy, new hosts): reload then."""
        transport, site = self.connections[host.name], self.sites[host.name]
        driver = site.driver
        assert isinstance(driver, HAProxyBalancer)
        stats = self._runtime_stats(transport, driver, upstream)
        wanted = {server_name(s) for s in upstream.servers}
        if not wanted <= stats.keys():
            self.reporter.step(host.name, "HAProxy does not run these servers yet: reloading")
            return False
        switch, maintenance = driver.flip_commands(upstream)
        self._runtime_send(transport, driver, switch)
        stats = self._runtime_stats(transport, driver, upstream)
        targets = {server_name(s) for s in upstream.servers if s.weight > 0}
        if not all(stats[name].serving for name in targets):
            raise BalancerError(
                "the runtime API accepted the flip but the target servers do not serve: "
                + ", ".join(f"{n} {stats[n].status}" for n in sorted(targets)),
                where=host.name)
        self.reporter.step(host.name, "runtime API: target ready, old colour draining", ok=True)
        retiring = wanted - targets
        deadline = time.monotonic() + site.settings.drain_timeout
        while True:
            busy = {n: stats[n].sessions for n in retiring if stats[n].sessions}
            if not busy or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
            stats = self._runtime_stats(transport, driver, upstream)
        self._runtime_send(transport, driver, maintenance)
        cut = sum(busy.values())
        self.reporter.step(host.name, "old colour in maintenance"
                           + (f" ({cut} session(s) cut at the drain timeout)" if cut else
                              " after its sessions ended"), ok=True)
        return True

    def _runtime_send(self, transport: Transport, driver: HAProxyBalancer, commands: list[str]
                      ) -> None:
        command, stdin = driver.runtime(*commands)
        result = transport.run(command, stdin=stdin)
        answer = " / ".join(line for line in result.stdout.splitlines() if line.strip())
        if not result.ok or answer:
            raise BalancerError(
                f"HAProxy's runtime API refused the flip: {answer or _tail(result.stderr)}",
                where=transport.host,
                hint="Check balancer.admin_socket (stats socket … level admin) and that socat "
                     "is installed on the balancer.")

    def _runtime_stats(self, transport: Transport, driver: HAProxyBalancer, upstream: Upstream
                       ) -> dict[str, ServerStat]:
        command, stdin = driver.runtime("show stat")
        result = transport.run(command, stdin=stdin)
        if not result.ok:
            raise BalancerError(f"cannot read HAProxy's stats: {_tail(result.stderr)}",
                                where=transport.host,
                                hint="Check balancer.admin_socket and that socat is installed.")
        return driver.parse_stats(result.stdout, upstream.name)


def _workers(transport: Transport, driver: Balancer) -> dict[int, str]:
    """The balancer's worker processes: pid → command line. A master in the middle of a reload
    (HAProxy re-executes itself) can briefly show none, so absence must last a second."""
    deadline = time.monotonic() + 1.0
    result = transport.run(driver.workers())
    while not result.ok and time.monotonic() < deadline:
        time.sleep(0.02)
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


def _balancer_error(exc: BaseException, restore_errors: list[str] | None = None
                    ) -> BaseException:
    """The error a failed stage/validate/activate raises: a lost connection stays a connection
    error (exit 3) and an interrupt an interrupt; anything else on a balancer is a balancer
    error (exit 6). Restores that failed are part of the error, never just a progress line."""
    if isinstance(exc, FanOutError) and len(exc.failures) == 1:
        exc = exc.failures[0].error
    error: BaseException
    if isinstance(exc, FanOutError):
        error = exc if exc.exit_code in (3, 130) else BalancerError(exc.paragraph())
    elif isinstance(exc, BluegreenError) and exc.exit_code not in (3, 6, 130):
        error = BalancerError(exc.message, where=exc.where, hint=exc.hint)
    else:
        error = exc
    return _with_restore_errors(error, restore_errors or [])


def _with_restore_errors(error: BaseException, restore_errors: list[str]) -> BaseException:
    if restore_errors and isinstance(error, BluegreenError):
        error.message += " Restoring also failed on " + "; ".join(restore_errors) + "."
        error.hint = ("Those balancers may still hold the new file, ready to be served by their "
                      "next reload: run `bluegreen status`, then `bluegreen switch --to COLOUR` "
                      "once they are reachable, to put every balancer in one known state.")
    return error


def _tail(text: str, lines: int = 3) -> str:
    return " / ".join(text.strip().splitlines()[-lines:])
