"""Caddy driver: the managed file is a Caddyfile snippet holding the service's upstreams
(`reverse_proxy { import shop_upstream }` in the main Caddyfile); validated with
`caddy validate` against the main config, activated through Caddy's admin API (`caddy reload`
posts the adapted config to it: Caddy swaps its config in-process, with no process restart; on
Linux the new config's listener is bound beside the old one, which is then closed — hence
`host_advice`), and confirmed by reading the running config back from the admin API."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from bluegreen.balancer.base import (
    BalancerTraffic,
    HostAdvice,
    RuntimeFacts,
    RuntimeRead,
    Upstream,
    dial,
    render_upstream,
)
from bluegreen.errors import BalancerError
from bluegreen.inventory import BalancerSettings
from bluegreen.shell import Arg, Command
from bluegreen.transport.base import CommandResult, Transport
from bluegreen.waiting import poll_until

if TYPE_CHECKING:
    from bluegreen.balancer.activation import Report

DEFAULT_ADMIN = "localhost:2019"
_READ_MIGRATE_REQ = "cat /proc/sys/net/ipv4/tcp_migrate_req 2>/dev/null || echo none"
DEFAULT_MAIN_CONFIG = "/etc/caddy/Caddyfile"


class CaddyBalancer:
    kind = "caddy"
    weighted = False  # Caddy 2.6's reverse_proxy has no weighted load balancing
    version_args: tuple[str, ...] = ("version",)

    def __init__(self, settings: BalancerSettings):
        self.settings = settings
        self.binary = settings.binary or "caddy"
        self.main_config = settings.main_config or DEFAULT_MAIN_CONFIG
        self.admin = settings.admin_address or DEFAULT_ADMIN

    def render(self, upstream: Upstream) -> str:
        return render_upstream(self.settings, upstream, "caddy-upstream.caddy.j2")

    def _config_argv(self) -> list[Arg]:
        argv: list[Arg] = ["--config", self.main_config]
        if not self.main_config.endswith(".json"):
            argv += ["--adapter", "caddyfile"]
        return argv

    def validate(self) -> Command:
        return Command(self.binary, "validate", *self._config_argv())

    def validate_main_config(self) -> Command:
        return self.validate()

    def reload(self) -> Command:
        return Command(self.binary, "reload", *self._config_argv(), "--address", self.admin)

    def running_config(self) -> Command:
        """The config Caddy runs, as JSON, from its admin API."""
        return Command("curl", "-fsS", "--max-time", "5", f"http://{self.admin}/config/")

    def loaded(self, managed_path: str) -> Command | None:
        return None  # `serving` reads what runs from the admin API instead

    def host_advice(self) -> tuple[HostAdvice, ...]:
        return (HostAdvice("caddy listener hand-over", Command.script(_READ_MIGRATE_REQ),
                           judge_migrate_req),)

    def activation(self) -> CaddyActivation:
        return CaddyActivation(self)

    def runtime_read(self, upstream_name: str, *, lingering: bool) -> RuntimeRead:
        """The colour the running config sends traffic to: the managed file's, when Caddy runs
        the file's upstreams; "none" when it runs other upstreams (a file not loaded, or changed
        through the admin API behind bluegreen's back); not known when the admin API cannot be
        read. Nothing lingers: connections of an old config end inside the one process."""
        from bluegreen.balancer.base import parse_header

        def read(result: CommandResult) -> RuntimeFacts:
            text, _, config = result.stdout.partition("\n--bluegreen--\n")
            header = parse_header(text)
            if not result.ok or header is None:
                return RuntimeFacts()
            wanted = snippet_dials(text)
            return RuntimeFacts(header.colour.value if wanted in proxied_dials(config)
                                else "none")

        return RuntimeRead(Command.script(
            'cat -- "$1" && printf "\\n%s\\n" "--bluegreen--" && sh -c "$2"',
            self.settings.managed_file, self.running_config().render()), read)

    def traffic(self, transport: Transport, upstream: Upstream) -> BalancerTraffic | None:
        return None  # Caddy 2.6 keeps no per-upstream counters in its admin API


class CaddyActivation:
    """Traffic moves with `caddy reload` (the admin API), confirmed by the running config."""

    def __init__(self, driver: CaddyBalancer):
        self.driver = driver

    def activate(self, transport: Transport, upstream: Upstream, report: Report) -> None:
        self.load_and_confirm(transport, upstream)
        report("admin API: new upstreams running")

    def move_back(self, transport: Transport, previous: Upstream | None, report: Report
                  ) -> None:
        """After the previous file was put back: load it again."""
        self.load_and_confirm(transport, previous)

    def load_and_confirm(self, transport: Transport, upstream: Upstream | None) -> None:
        driver, timeout = self.driver, self.driver.settings.reload_timeout
        result = transport.run(driver.reload(), timeout=timeout)
        if not result.ok:
            raise BalancerError(
                f"Caddy refused the new config (`{result.command}` exited "
                f"{result.exit_status}): {result.tail()}",
                where=transport.host,
                hint="Check that Caddy runs and that balancer.admin_address is its admin API.")
        if upstream is None:
            return
        wanted = frozenset(dial(s.address, s.port) for s in upstream.servers if s.weight > 0)

        def running() -> list[frozenset[str]]:
            read = transport.run(driver.running_config())
            return proxied_dials(read.stdout) if read.ok else []

        if wanted not in poll_until(running, lambda found: wanted in found, timeout=timeout,
                                    interval=0.05, interruptible=False):
            raise BalancerError(
                f"Caddy accepted the config but does not run the new upstreams "
                f"({', '.join(sorted(wanted))}) within {timeout:g} s.",
                where=transport.host,
                hint=f"Is the managed file imported by {driver.main_config}?")


def snippet_dials(text: str) -> frozenset[str]:
    """The upstreams of a rendered snippet: its `to` line."""
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["to"]:
            return frozenset(words[1:])
    return frozenset()


def proxied_dials(config_json: str) -> list[frozenset[str]]:
    """The upstream dial sets of every `reverse_proxy` handler in Caddy's running config."""
    try:
        config = json.loads(config_json)
    except ValueError:
        return []
    found: list[frozenset[str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("handler") == "reverse_proxy":
                found.append(frozenset(str(u.get("dial")) for u in node.get("upstreams") or []
                                       if isinstance(u, dict)))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def judge_migrate_req(result: CommandResult) -> tuple[bool, str]:
    """On Linux, each config swap binds the new config's listener beside the old one
    (SO_REUSEPORT) and closes the old one: a new connection the kernel had queued on the old
    listener, not yet accepted, is reset — unless net.ipv4.tcp_migrate_req hands it over."""
    value = result.stdout.strip()
    if value == "1":
        return True, ("net.ipv4.tcp_migrate_req = 1: a config swap hands the connections "
                      "queued on Caddy's old listener to the new one")
    if value == "0":
        return False, ("net.ipv4.tcp_migrate_req = 0: a flip (a Caddy config swap) can reset a "
                       "new connection queued on the old listener; `sysctl -w "
                       "net.ipv4.tcp_migrate_req=1`, and the same line in /etc/sysctl.d/, keep "
                       "them")
    return False, ("this kernel cannot hand a closing listener's queued connections over "
                   "(net.ipv4.tcp_migrate_req, Linux 5.14+): a flip (a Caddy config swap) can "
                   "reset a new connection queued on the old listener")
