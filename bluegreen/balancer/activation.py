"""How a balancer moves traffic once its new file is staged and valid — the half of the balancer
seam that talks to a running balancer. Each driver hands out its own `Activation`; the flip
orchestrator only calls `activate`, `move_back` and `serving`, never asking which driver it holds.

* `ReloadActivation`: a graceful master-worker reload, confirmed by the workers (a reload
  command exiting 0 proves nothing: a rejected config leaves the old workers);
* `RuntimeActivation` (HAProxy, `flip: runtime`): the runtime API — target servers ready, the
  others drain and go to maintenance — with no reload, so no connection is closed; it reloads
  instead when the running HAProxy does not know the servers yet."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from bluegreen.balancer.base import Upstream, server_name
from bluegreen.errors import BalancerError
from bluegreen.shell import Command
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
        """Reload, then wait until the workers show the reload took — watched on the balancer
        host itself, so a reload costs one round trip (plus a poll from here if the host's
        watch ran out of time)."""
        driver, timeout = self.driver, self.driver.settings.reload_timeout
        watched = self.reload_and_watch()
        if watched is None:
            before = self.workers(transport)
            transport.run(driver.reload(), timeout=timeout).check("reload")
        else:
            # the reload may take `timeout` and the watch as long again
            result = transport.run(watched, timeout=2 * timeout + 5)
            if result.exit_status == _NO_MASTER and not result.stdout.strip():
                raise self.not_running(transport.host)
            replace(result, command=str(driver.reload())).check("reload")
            watched_before, _, watched_after = result.stdout.partition(f"{_AFTER}\n")
            before = parse_workers(watched_before)
            if driver.reload_took(before, parse_workers(watched_after)):
                return
        # after the host's own watch ran out of time, one last look from here
        if not poll_until(lambda: driver.reload_took(before, self.workers(transport)),
                          timeout=timeout if watched is None else 1.0, interval=0.01,
                          interruptible=False):
            raise BalancerError(
                f"the reload did not take: no new {driver.kind} worker within {timeout:g} s.",
                where=transport.host,
                hint=f"Check {driver.kind}'s error log on {transport.host}.",
            )

    def reload_and_watch(self) -> Command | None:
        """The reload and the watch of its workers as one script on the balancer host; None
        when the reload command reads its environment on stdin (it is then sent alone)."""
        driver = self.driver
        reload = driver.reload()
        if reload.env:
            return None
        return Command.script(_RELOAD_AND_WATCH, driver.workers().render(), reload.render(),
                              str(math.ceil(driver.settings.reload_timeout)),
                              driver.retired_worker_marker or "", _AFTER)

    def workers(self, transport: Transport) -> dict[int, str]:
        """The balancer's worker processes: pid → command line. A master in the middle of a
        reload (HAProxy re-executes itself) can briefly show none, so absence must last a
        second."""
        driver = self.driver
        result = poll_until(lambda: transport.run(driver.workers()), lambda r: r.ok,
                            timeout=1.0, interval=0.02, interruptible=False)
        if not result.ok:
            raise self.not_running(transport.host)
        return parse_workers(result.stdout)

    def not_running(self, host: str) -> BalancerError:
        kind = self.driver.kind
        return BalancerError(f"{kind} is not running (no master process behind its pid file).",
                             where=host,
                             hint=f"Start {kind}, or set balancer.pid_file to its pid file.")


_NO_MASTER = 3
_AFTER = "--bluegreen-after-reload--"
# $1 the driver's `workers` command, $2 the reload command, $3 seconds to watch, $4 what an
# old worker's command line shows once it stopped accepting (nginx: "shutting down"; empty:
# nothing to wait for), $5 a separator line. Prints the workers before the reload, $5, then
# the workers once a new one runs and every old one still alive shows $4 (or once the time is
# up). No master for a second: exit 3 with nothing printed; the reload command failing: its
# own exit status.
_RELOAD_AND_WATCH = r"""
list_workers=$1
workers() { sh -c "$list_workers" 2>/dev/null; }
i=0
until before=$(workers); do
  i=$((i + 1)); [ "$i" -ge 50 ] && exit 3; sleep 0.02
done
printf '%s\n' "$before"
sh -c "$2" >&2 || exit
printf '%s\n' "$5"
old=$(printf '%s\n' "$before" | awk '{ print $1 }')
end=$(( $(date +%s) + $3 ))
while :; do
  after=$(workers) && printf '%s\n' "$after" | awk -v old="$old" -v marker="$4" '
    BEGIN { n = split(old, pids); for (i = 1; i <= n; i++) seen[pids[i]] = 1 }
    !($1 in seen) { fresh = 1; next }
    marker != "" && index($0, marker) == 0 { accepting = 1 }
    END { exit !(fresh && !accepting) }' && break
  [ "$(date +%s)" -ge "$end" ] && break
  sleep 0.01
done
printf '%s\n' "$after"
"""


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
        if upstream.sticky is not None and upstream.testers_moved:
            # the testers' use-server rules are in the config, out of the runtime API's reach
            report(f"canary.sticky: testers go to {upstream.sticky.colour} servers now, which "
                   "takes a reload")
            super().activate(transport, upstream, report)
        elif not self.runtime_flip(transport, upstream, report):
            super().activate(transport, upstream, report)

    def move_back(self, transport: Transport, previous: Upstream | None, report: Report
                  ) -> None:
        # with canary.sticky the flip may have reloaded: the testers' rules come back by one
        if previous is None or previous.sticky is not None \
                or not self.runtime_flip(transport, previous, report):
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
        stats = self.send_then_read(transport, switch, upstream.name)
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

        if sessions(stats):  # what the switch read back: none left, no need to ask again
            stats = poll_until(lambda: self.stats(transport, upstream),
                               lambda s: not sessions(s), timeout=driver.settings.drain_timeout,
                               interval=0.1, interruptible=False)
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
        if commands:  # an empty line is an unknown command to HAProxy
            self._exchange(transport, commands)

    def send_then_read(self, transport: Transport, commands: list[str], backend: str
                       ) -> dict[str, ServerStat]:
        """`send`, then `show stat` in the same session: the backend's servers as the commands
        left them."""
        stats = self._exchange(transport, [*commands, "show stat"])
        if not stats:
            raise _unreadable_stats(transport)
        return self.driver.parse_stats(stats, backend)

    def _exchange(self, transport: Transport, asked: list[str]) -> str:
        """Send `asked` to the admin socket; the `show stat` table they printed ("" for none)."""
        command, stdin = self.driver.runtime(*asked)
        result = transport.run(command, stdin=stdin)
        # a command that succeeds prints nothing but a blank line; a table starts with a header
        answers, header, table = result.stdout.partition("# pxname")
        answer = " / ".join(line for line in answers.splitlines() if line.strip())
        if not result.ok or answer:
            raise BalancerError(
                f"HAProxy's runtime API refused the flip: {answer or tail(result.stderr)}",
                where=transport.host,
                hint="Check balancer.admin_socket (stats socket … level admin) and that socat "
                     "is installed on the balancer.")
        return header + table

    def stats(self, transport: Transport, upstream: Upstream) -> dict[str, ServerStat]:
        stats = self.driver.read_stats(transport, upstream.name)
        if stats is None:
            raise _unreadable_stats(transport)
        return stats


def _unreadable_stats(transport: Transport) -> BalancerError:
    return BalancerError("cannot read HAProxy's stats through its admin socket.",
                         where=transport.host,
                         hint="Check balancer.admin_socket and that socat is installed.")
