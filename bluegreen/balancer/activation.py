"""How a balancer moves traffic once its new file is staged and valid — the half of the balancer
seam that talks to a running balancer. Each driver hands out its own `Activation`; the flip
orchestrator only calls `activate`, `move_back` and `serving`, never asking which driver it holds.

* `ReloadActivation`: a graceful master-worker reload, confirmed by the workers (a reload
  command exiting 0 proves nothing: a rejected config leaves the old workers);
* `RuntimeActivation` (HAProxy, `flip: runtime`): the runtime API — target servers ready, the
  others drain and go to maintenance — with no reload, so no connection is closed; it reloads
  instead when the running HAProxy does not know the servers yet."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from bluegreen.balancer.base import Upstream, server_name
from bluegreen.errors import BalancerError
from bluegreen.transport.base import Transport, tail
from bluegreen.waiting import poll_until

if TYPE_CHECKING:
    from bluegreen.balancer.base import MasterWorkerBalancer
    from bluegreen.balancer.haproxy import HAProxyBalancer, ServerStat

Report = Callable[[str], None]  # one progress line about this balancer


class Activation(Protocol):
    def activate(self, transport: Transport, upstream: Upstream, report: Report) -> None: ...
    def move_back(self, transport: Transport, previous: Upstream | None, report: Report
                  ) -> None: ...


class ReloadActivation:
    def __init__(self, driver: MasterWorkerBalancer):
        self.driver = driver

    def activate(self, transport: Transport, upstream: Upstream, report: Report) -> None:
        self.reload_and_confirm(transport)
        report("reloaded, new workers serving")

    def move_back(self, transport: Transport, previous: Upstream | None, report: Report
                  ) -> None:
        """After the previous file was put back: serve it again."""
        self.reload_and_confirm(transport)

    def reload_and_confirm(self, transport: Transport) -> None:
        """Reload, then wait until the workers show the reload took."""
        driver, timeout = self.driver, self.driver.settings.reload_timeout
        before = self.workers(transport)
        transport.run(driver.reload(), timeout=timeout).check("reload")
        if not poll_until(lambda: driver.reload_took(before, self.workers(transport)),
                          timeout=timeout, interval=0.01, interruptible=False):
            raise BalancerError(
                f"the reload did not take: no new {driver.kind} worker within {timeout:g} s.",
                where=transport.host,
                hint=f"Check {driver.kind}'s error log on {transport.host}.",
            )

    def workers(self, transport: Transport) -> dict[int, str]:
        """The balancer's worker processes: pid → command line. A master in the middle of a
        reload (HAProxy re-executes itself) can briefly show none, so absence must last a
        second."""
        driver = self.driver
        result = poll_until(lambda: transport.run(driver.workers()), lambda r: r.ok,
                            timeout=1.0, interval=0.02, interruptible=False)
        if not result.ok:
            raise BalancerError(
                f"{driver.kind} is not running (no master process behind its pid file).",
                where=transport.host,
                hint=f"Start {driver.kind}, or set balancer.pid_file to its pid file.",
            )
        return parse_workers(result.stdout)


def parse_workers(output: str) -> dict[int, str]:
    """`ps -o pid=,args=` lines → pid → command line."""
    workers: dict[int, str] = {}
    for line in output.splitlines():
        pid, _, args = line.strip().partition(" ")
        if pid.isdigit():
            workers[int(pid)] = args
    return workers


class RuntimeActivation(ReloadActivation):
    driver: HAProxyBalancer

    def __init__(self, driver: HAProxyBalancer):
        super().__init__(driver)

    def activate(self, transport: Transport, upstream: Upstream, report: Report) -> None:
        if not self.runtime_flip(transport, upstream, report):
            super().activate(transport, upstream, report)

    def move_back(self, transport: Transport, previous: Upstream | None, report: Report
                  ) -> None:
        if previous is None or not self.runtime_flip(transport, previous, report):
            self.reload_and_confirm(transport)

    def runtime_flip(self, transport: Transport, upstream: Upstream, report: Report) -> bool:
        """Target servers ready, the others drain, and go to maintenance once their sessions end
        (or the drain timeout passes). False when the running HAProxy does not know these
        servers yet (first deploy, new hosts): the caller reloads then."""
        driver = self.driver
        stats = self.stats(transport, upstream)
        wanted = {server_name(s) for s in upstream.servers}
        if not wanted <= stats.keys():
            report("HAProxy does not run these servers yet: reloading")
            return False
        switch, maintenance = driver.flip_commands(upstream)
        self.send(transport, switch)
        stats = self.stats(transport, upstream)
        targets = {server_name(s) for s in upstream.servers if s.weight > 0}
        if not all(stats[name].serving for name in targets):
            raise BalancerError(
                "the runtime API accepted the flip but the target servers do not serve: "
                + ", ".join(f"{n} {stats[n].status}" for n in sorted(targets)),
                where=transport.host)
        report(f"runtime API: {len(targets)} server(s) ready, the others draining")
        retiring = wanted - targets

        def sessions(stats: dict[str, ServerStat]) -> int:
            return sum(stats[name].sessions for name in retiring)

        stats = poll_until(lambda: self.stats(transport, upstream), lambda s: not sessions(s),
                           timeout=driver.settings.drain_timeout, interval=0.1,
                           interruptible=False)
        self.send(transport, maintenance)
        if not retiring:  # a canary: both colours serve, nothing drains
            return True
        # maintenance sends no new request to a server but ends none of its sessions: what is
        # still open (a WebSocket, a long download) stays on the old colour until it ends
        left = sessions(stats)
        report("drained servers in maintenance" + (
            f"; {left} session(s) still open at the drain timeout stay on them until they end "
            "(`bluegreen retire` drains them)" if left else " after their sessions ended"))
        return True

    def send(self, transport: Transport, commands: list[str]) -> None:
        if not commands:  # an empty line is an unknown command to HAProxy
            return
        command, stdin = self.driver.runtime(*commands)
        result = transport.run(command, stdin=stdin)
        answer = " / ".join(line for line in result.stdout.splitlines() if line.strip())
        if not result.ok or answer:
            raise BalancerError(
                f"HAProxy's runtime API refused the flip: {answer or tail(result.stderr)}",
                where=transport.host,
                hint="Check balancer.admin_socket (stats socket … level admin) and that socat "
                     "is installed on the balancer.")

    def stats(self, transport: Transport, upstream: Upstream) -> dict[str, ServerStat]:
        stats = self.driver.read_stats(transport, upstream.name)
        if stats is None:
            raise BalancerError("cannot read HAProxy's stats through its admin socket.",
                                where=transport.host,
                                hint="Check balancer.admin_socket and that socat is installed.")
        return stats
