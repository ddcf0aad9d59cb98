"""nginx driver: the managed file is an include holding only the service's upstream block."""

from __future__ import annotations

from bluegreen.inventory import BalancerSettings
from bluegreen.shell import Arg, Command


class NginxBalancer:
    kind = "nginx"

    def __init__(self, settings: BalancerSettings):
        self.settings = settings
        self.binary = settings.binary or "nginx"

    def _base_argv(self) -> list[Arg]:
        argv: list[Arg] = [self.binary]
        if self.settings.prefix:
            argv += ["-p", self.settings.prefix]
        if self.settings.main_config:
            argv += ["-c", self.settings.main_config]
        return argv

    def validate_main_config(self) -> Command:
        return Command(*self._base_argv(), "-t", "-q")
