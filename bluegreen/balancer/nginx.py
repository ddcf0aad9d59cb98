"""nginx driver: the managed file is an include holding only the service's upstream block;
validated with `nginx -t` against the real main config, activated with a graceful reload."""

from __future__ import annotations

from bluegreen.balancer.base import Upstream, render_upstream
from bluegreen.inventory import BalancerSettings
from bluegreen.render import render_command
from bluegreen.shell import Arg, Command


class NginxBalancer:
    kind = "nginx"

    def __init__(self, settings: BalancerSettings):
        self.settings = settings
        self.binary = settings.binary or "nginx"
        self.pid_file = settings.pid_file or "/run/nginx.pid"

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

    def validate_main_config(self) -> Command:
        return self.validate()

    def reload(self) -> Command:
        if self.settings.reload:
            return render_command(self.settings.reload, {"pid_file": self.pid_file},
                                  where="balancer.reload")
        return Command(*self._base_argv(), "-s", "reload")

    def workers(self) -> Command:
        """The master's children, one "PID ARGS" line each (a reload that took starts new ones
        and turns the old ones into "worker process is shutting down")."""
        return Command.script(
            'pid=$(cat -- "$1") && kill -0 "$pid" && ps -o pid=,args= --ppid "$pid" || exit 3',
            self.pid_file)

    def reload_took(self, before: dict[int, str], after: dict[int, str]) -> bool:
        """New workers run and every old one still alive is "shutting down" (it closed its
        listening sockets). nginx itself pauses 100 ms between the two."""
        new = after.keys() - before.keys()
        old_accepting = [pid for pid in before.keys() & after.keys()
                         if "shutting down" not in after[pid]]
        return bool(new) and not old_accepting
