"""nginx driver: the managed file is an include holding only the service's upstream block;
validated with `nginx -t` against the real main config, activated with a graceful reload."""

from __future__ import annotations

from bluegreen.balancer.base import MasterWorkerBalancer, Upstream, render_upstream
from bluegreen.shell import Arg, Command


class NginxBalancer(MasterWorkerBalancer):
    kind = "nginx"
    default_pid_file = "/run/nginx.pid"

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

    def reload_took(self, before: dict[int, str], after: dict[int, str]) -> bool:
        """New workers run and every old one still alive is "shutting down" (it closed its
        listening sockets). nginx itself pauses 100 ms between the two."""
        new = after.keys() - before.keys()
        old_accepting = [pid for pid in before.keys() & after.keys()
                         if "shutting down" not in after[pid]]
        return bool(new) and not old_accepting
