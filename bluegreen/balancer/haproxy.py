"""HAProxy driver: the managed file holds the service's backend."""

from __future__ import annotations

from bluegreen.inventory import BalancerSettings
from bluegreen.shell import Command


class HAProxyBalancer:
    kind = "haproxy"

    def __init__(self, settings: BalancerSettings):
        self.settings = settings
        self.binary = settings.binary or "haproxy"

    def validate_main_config(self) -> Command:
        main = self.settings.main_config or "/etc/haproxy/haproxy.cfg"
        return Command(self.binary, "-c", "-q", "-f", main)
