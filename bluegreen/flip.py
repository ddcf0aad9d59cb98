"""Flipping traffic on every balancer, all or nothing: stage and validate on all of them first;
then activate them all at once — each the way its driver does it (`balancer.activation`) — and if
any activation fails, every balancer gets its previous file back, byte for byte, and its
previous traffic. Which driver a balancer has is never asked here."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bluegreen import cancel
from bluegreen.balancer import BalancerSite
from bluegreen.balancer.base import Upstream, guard_refused
from bluegreen.errors import BalancerError, BluegreenError, FanOutError, Interrupted
from bluegreen.fanout import fan_out
from bluegreen.inventory import HostSpec, Inventory
from bluegreen.output import Reporter
from bluegreen.plan import FlipPlan
from bluegreen.store import StateGuard
from bluegreen.transport.base import Transports


class Flipper:
    def __init__(self, inventory: Inventory, connections: Transports, reporter: Reporter, *,
                 sites: dict[str, BalancerSite]):
        self.inventory = inventory
        self.connections = connections
        self.reporter = reporter
        self.balancers = list(inventory.hosts.balancer)
        self.sites = sites

    def flip(self, plan: FlipPlan, *, guards: Mapping[str, StateGuard] | None = None) -> None:
        """With `guards`, each balancer's guard runs right before it stages (in the same
        command); one that refuses stops the flip before any activation."""
        staged: list[HostSpec] = []
        self.reporter.phase("stage and validate the balancer config")

        def stage_and_validate(host: HostSpec) -> None:
            transport, site = self.connections[host.name], self.sites[host.name]
            guard = guards.get(host.name) if guards else None
            staged.append(host)  # before: a connection lost after the remote rename counts
            validate = site.driver.validate()
            result = site.managed.stage_and_validate(transport, plan.configs[host.name],
                                                     validate, guard.command if guard else None)
            if guard is not None and guard_refused(result):
                staged.remove(host)  # nothing was staged there: nothing to put back
                self.reporter.step(host.name, "not staged: " + (result.tail() or "refused"),
                                   ok=False)
                raise guard.refusal(result.stderr)
            if not result.ok:
                self.reporter.step(host.name, f"{site.driver.kind} config invalid", ok=False)
                raise BalancerError(
                    f"the rendered config failed validation (`{validate}`): "
                    f"{result.tail()}",
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
        # the first command of the activation takes the staged file, in its round trip
        transport = site.managed.taking(self.connections[host.name])
        site.driver.activation().activate(transport, upstream, self._reporting(host))
        transport.finish()

    def _reporting(self, host: HostSpec) -> Callable[[str], None]:
        return lambda line: self.reporter.step(host.name, line, ok=True)

    def _restore(self, hosts: list[HostSpec], plan: FlipPlan, *, activated: bool) -> list[str]:
        """Put the previous file back on `hosts` and, where traffic had moved, move it back.
        Returns what could not be restored (already reported), so the caller's error says it."""
        failures: list[str] = []

        def restore(host: HostSpec) -> None:
            transport, site = self.connections[host.name], self.sites[host.name]
            if not site.managed.restore(transport, plan.configs[host.name]):
                self.reporter.step(host.name, "nothing to restore: this flip's file was never "
                                   "staged there, so the file was left as it is", ok=True)
                return
            if activated:
                site.driver.activation().move_back(transport, plan.previous_upstream,
                                                   self._reporting(host))
            self.reporter.step(host.name, "previous config restored"
                               + (" and traffic moved back" if activated else ""), ok=True)

        for host in hosts:
            try:
                restore(host)
            except BluegreenError as error:
                self.reporter.step(host.name, f"restore failed: {error.message}", ok=False)
                failures.append(f"{host.name}: {error.message}")
        return failures


def _balancer_error(exc: BaseException, restore_errors: list[str] | None = None
                    ) -> BaseException:
    """The error a failed stage/validate/activate raises: a lost connection stays a connection
    error (exit 3), a guard's refusal a drift (exit 9) and an interrupt an interrupt; anything
    else on a balancer is a balancer error (exit 6). Restores that failed are part of the
    error, never just a progress line."""
    if isinstance(exc, FanOutError) and len(exc.failures) == 1:
        exc = exc.failures[0].error
    error: BaseException
    if isinstance(exc, FanOutError):
        error = exc if exc.exit_code in (3, 9, 130) else BalancerError(exc.paragraph())
    elif isinstance(exc, BluegreenError) and exc.exit_code not in (3, 6, 9, 130):
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
