"""HAProxy driver: the managed file holds the service's backend with both colours' servers (the
idle colour disabled), validated with `haproxy -c` against the main config plus this file, and
activated either by a graceful master-worker reload or, with `flip: runtime`, through the runtime
API on the admin socket — no reload, so no connection is closed."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bluegreen.balancer.base import (
    BalancerTraffic,
    MasterWorkerBalancer,
    RuntimeFacts,
    RuntimeRead,
    ServerTraffic,
    Upstream,
    old_workers,
    render_upstream,
    server_name,
)
from bluegreen.inventory import BalancerSettings
from bluegreen.shell import Command
from bluegreen.transport.base import CommandResult, Transport

if TYPE_CHECKING:
    from bluegreen.balancer.activation import Activation

_END_OF_WORKERS = "bluegreen: end of workers"


@dataclass(frozen=True)
class ServerStat:
    name: str
    status: str  # UP, DOWN, MAINT, DRAIN, "no check", …
    sessions: int
    weight: int
    requests: int = 0  # req_tot
    errors: int = 0  # hrsp_5xx
    response_ms: int = 0  # rtime: the mean over the last 1024 requests

    @property
    def serving(self) -> bool:
        return "MAINT" not in self.status and "DRAIN" not in self.status and self.weight > 0


class HAProxyBalancer(MasterWorkerBalancer):
    kind = "haproxy"
    default_pid_file = "/run/haproxy.pid"

    def __init__(self, settings: BalancerSettings):
        super().__init__(settings)
        self.main_config = settings.main_config or "/etc/haproxy/haproxy.cfg"

    def render(self, upstream: Upstream) -> str:
        return render_upstream(self.settings, upstream, "haproxy-backend.cfg.j2")

    def validate(self) -> Command:
        return Command(self.binary, "-c", "-q", "-f", self.main_config,
                       "-f", self.settings.managed_file)

    def reload(self) -> Command:
        # master-worker mode: SIGUSR2 makes the master re-read the config and fork new workers
        return self.user_reload() or Command.script('kill -USR2 "$(cat -- "$1")"',
                                                    self.pid_file)

    def reload_took(self, before: dict[int, str], after: dict[int, str]) -> bool:
        # the master forks the new worker and soft-stops the old ones (their listeners close at
        # once; they only finish what is in flight)
        return bool(after.keys() - before.keys())

    def activation(self) -> Activation:
        """Through the runtime API with `flip: runtime`, else a confirmed reload."""
        from bluegreen.balancer.activation import ReloadActivation, RuntimeActivation

        if self.settings.flip == "runtime":
            return RuntimeActivation(self)
        return ReloadActivation(self)

    def runtime_read(self, upstream_name: str, *, lingering: bool) -> RuntimeRead | None:
        """With the admin socket: the servers it serves and the sessions each colour's servers
        still hold, from one `show stat` (and, with `lingering`, the old workers in the same
        command). Without it, the old workers only."""
        if not self.settings.admin_socket:
            return super().runtime_read(upstream_name, lingering=lingering)
        command, stdin = self.runtime("show stat")
        workers = self.workers().render() if lingering else "true"
        script = Command.script(
            'eval "$1"; printf "\\n%s %s\\n" "$2" "$?"; printf "%s" "$3" | eval "$4"',
            workers, _END_OF_WORKERS, stdin.decode(), command.render())

        def read(result: CommandResult) -> RuntimeFacts:
            workers_output, found, rest = result.stdout.partition(f"\n{_END_OF_WORKERS} ")
            workers_status, _, stats_text = rest.partition("\n")
            found_here: dict[str, object] = {}
            if lingering:
                found_here = old_workers(workers_output if workers_status == "0" else None)
            stats = self.parse_stats(stats_text, upstream_name) if found and result.ok \
                else None
            if stats is None:
                return RuntimeFacts(lingering=found_here)
            if lingering:
                found_here["sessions"] = {colour: sum(s.sessions for name, s in stats.items()
                                                      if name.startswith(f"{colour}-"))
                                          for colour in ("blue", "green")}
            return RuntimeFacts("+".join(sorted(self.serving_colours(stats))) or "none",
                                found_here)

        return RuntimeRead(script, read)

    def traffic(self, transport: Transport, upstream: Upstream) -> BalancerTraffic | None:
        """The backend's per-server counters and the pid of the worker keeping them, in one
        round trip (`show info; show stat`)."""
        if not self.settings.admin_socket:
            return None
        command, stdin = self.runtime("show info", "show stat")
        result = transport.run(command, stdin=stdin)
        if not result.ok:
            return None
        return self.parse_traffic(result.stdout, upstream.name)

    @classmethod
    def parse_traffic(cls, output: str, backend: str) -> BalancerTraffic | None:
        info, found, stats = output.partition("# pxname")
        pid = re.search(r"^Pid:\s*(\d+)", info, re.MULTILINE)
        if not found or pid is None:
            return None
        servers = cls.parse_stats(found + stats, backend)
        return BalancerTraffic(pid[1], {name: ServerTraffic(s.requests, s.errors, s.response_ms)
                                        for name, s in servers.items()})

    # runtime API ------------------------------------------------------------------------------

    def read_stats(self, transport: Transport, backend: str) -> dict[str, ServerStat] | None:
        """The backend's servers from `show stat`; None when the admin socket cannot be read."""
        command, stdin = self.runtime("show stat")
        result = transport.run(command, stdin=stdin)
        return self.parse_stats(result.stdout, backend) if result.ok else None

    def runtime(self, *commands: str) -> tuple[Command, bytes]:
        """A command and its stdin that send runtime API commands to the admin socket."""
        assert self.settings.admin_socket is not None
        return (Command("socat", "-t", "5", "stdio", f"UNIX-CONNECT:{self.settings.admin_socket}"),
                ("; ".join(commands) + "\n").encode())

    def flip_commands(self, upstream: Upstream) -> tuple[list[str], list[str]]:
        """(commands that bring the target colour in and drain the other, commands that put the
        drained servers in maintenance once they are idle)."""
        backend = upstream.name
        enable, drain, maint = [], [], []
        for server in upstream.servers:
            name = f"{backend}/{server_name(server)}"
            if server.weight > 0:
                enable += [f"set server {name} state ready", f"set weight {name} {server.weight}"]
            else:
                drain.append(f"set server {name} state drain")
                maint.append(f"set server {name} state maint")
        return enable + drain, maint

    def serving_colours(self, stats: dict[str, ServerStat]) -> set[str]:
        """The colours whose servers HAProxy really sends traffic to right now."""
        return {name.split("-", 1)[0] for name, stat in stats.items()
                if stat.serving and name.split("-", 1)[0] in ("blue", "green")}

    @staticmethod
    def parse_stats(csv_text: str, backend: str) -> dict[str, ServerStat]:
        text = csv_text.lstrip("# ")
        servers: dict[str, ServerStat] = {}
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("pxname") != backend or row.get("svname") in ("FRONTEND", "BACKEND"):
                continue
            servers[row["svname"]] = ServerStat(
                row["svname"], row.get("status", ""), int(row.get("scur") or 0),
                int(row.get("weight") or 0), requests=int(row.get("req_tot") or 0),
                errors=int(row.get("hrsp_5xx") or 0), response_ms=int(row.get("rtime") or 0))
        return servers
