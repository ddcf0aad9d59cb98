"""nginx driver: the managed file is an include holding only the service's upstream block;
validated with `nginx -t` against the real main config, activated with a graceful reload."""

from __future__ import annotations

import ipaddress
import re

from bluegreen.balancer.base import (
    BalancerTraffic,
    MasterWorkerBalancer,
    ServerTraffic,
    Upstream,
    render_upstream,
    server_name,
)
from bluegreen.errors import BalancerError
from bluegreen.shell import Arg, Command
from bluegreen.transport.base import Transport

# What `balancer.access_log` must be written with: a canary's analysis reads these three fields
# (anything after a third `|` is ignored). A retried request lists every server it tried.
LOG_FORMAT = "log_format bluegreen '$upstream_addr|$upstream_status|$upstream_response_time';"

# Per server address: requests, 5xx answers, and the sum of response times (ms). nginx joins
# the servers a request tried with ", " (and internal redirects with " : ").
_COUNT_LOG = r"""{
  n = split($1, server, /, | : /); split($2, status, /, | : /); split($3, took, /, | : /)
  for (i = 1; i <= n; i++) {
    if (server[i] == "-") continue
    requests[server[i]]++
    if (status[i] + 0 >= 500) errors[server[i]]++
    if (took[i] != "-") ms[server[i]] += took[i] * 1000
  }
}
END { for (s in requests) printf "%s %d %d %.0f\n", s, requests[s], errors[s], ms[s] }"""


class NginxBalancer(MasterWorkerBalancer):
    kind = "nginx"
    default_pid_file = "/run/nginx.pid"
    retired_worker_marker = "shutting down"

    def _base_argv(self) -> list[Arg]:
        argv: list[Arg] = [self.binary]
        if self.settings.prefix:
            argv += ["-p", self.settings.prefix]
        if self.settings.main_config:
            argv += ["-c", self.settings.main_config]
        return argv

    def render(self, upstream: Upstream) -> str:
        return render_upstream(self.settings, upstream, "nginx-upstream.conf.j2")

    def validate(self) -> Command:
        return Command(*self._base_argv(), "-t", "-q")

    def reload(self) -> Command:
        return self.user_reload() or Command(*self._base_argv(), "-s", "reload")

    def count_log(self, path: str) -> Command:
        """The log's identity (device:inode, new after a rotation), then its counts per server
        address, both from one opening of the file; exit 4 if it cannot be read."""
        return Command.script('command exec 3< "$1" || exit 4; stat -L -c %d:%i /dev/fd/3 && '
                              'exec awk -F"|" "$2" <&3 || exit 4', path, _COUNT_LOG)

    def traffic(self, transport: Transport, upstream: Upstream) -> BalancerTraffic | None:
        """Each server's requests, 5xx answers and response times, counted from
        `balancer.access_log`; None without one."""
        path = self.settings.access_log
        if not path:
            return None
        named = [s.address for s in upstream.servers if _ip(s.address) is None]
        if named:
            raise BalancerError(
                f"the access log names servers by IP address, but {named[0]} is a host name, "
                "so its requests cannot be told apart.", where="balancer.access_log",
                hint="Give the app hosts (or balancer.upstream_address) as IP addresses to "
                     "judge a canary from the access log.")
        result = transport.run(self.count_log(path))
        counted = parse_log_counts(result.stdout, upstream) if result.ok else None
        if counted is None:
            raise BalancerError(
                f"cannot read the access log {path}: "
                f"{result.stderr.strip() or 'unexpected output'}.",
                where="balancer.access_log",
                hint="A canary's analysis reads it: nginx must write it in the bluegreen "
                     f"format ({LOG_FORMAT}) and the deploy user must be able to read it.")
        return counted

    def reload_took(self, before: dict[int, str], after: dict[int, str]) -> bool:
        """New workers run and every old one still alive is "shutting down" (it closed its
        listening sockets). nginx itself pauses 100 ms between the two."""
        new = after.keys() - before.keys()
        old_accepting = [pid for pid in before.keys() & after.keys()
                         if "shutting down" not in after[pid]]
        return bool(new) and not old_accepting


def parse_log_counts(output: str, upstream: Upstream) -> BalancerTraffic | None:
    """`count_log`'s output as counters by server name; addresses that are none of the
    upstream's servers (another service, a host named by its DNS name in the inventory) are
    left out. None when the output is not `count_log`'s."""
    identity, _, counts = output.partition("\n")
    if not re.fullmatch(r"\d+:\d+", identity.strip()):
        return None
    names = {(_ip(server.address), server.port): server_name(server)
             for server in upstream.servers}
    totals: dict[str, list[float]] = {}
    for line in counts.splitlines():
        fields = line.split()
        address, _, port = fields[0].rpartition(":") if fields else ("", "", "")
        key = (_ip(address.strip("[]")), int(port) if port.isdigit() else 0)
        if len(fields) != 4 or key not in names:
            continue
        total = totals.setdefault(names[key], [0, 0, 0.0])
        for index, value in enumerate(fields[1:]):
            total[index] += float(value)
    return BalancerTraffic(f"log {identity.strip()}", {
        name: ServerTraffic(int(requests), int(errors),
                            round(ms / requests, 1) if requests else 0.0, ms)
        for name, (requests, errors, ms) in totals.items()})


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address as an IP (so "::1" and "0:0::1" compare equal), None for a host name."""
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None
