"""The all-or-nothing flip (`Flipper`) against recording fake balancer hosts: each fake answers
the commands built by the driver's and the managed file's own builders (compared by `Command`
equality) and keeps the file, its backup and the master's workers, so a test reads what every
balancer would serve. The integration tests prove the same against real nginx and HAProxy."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bluegreen import cancel
from bluegreen.balancer import BalancerSite, site_for
from bluegreen.balancer.activation import ReloadActivation
from bluegreen.balancer.base import _TAKE_THEN
from bluegreen.errors import BalancerError, Interrupted
from bluegreen.flip import Flipper
from bluegreen.inventory import Inventory, validate_inventory
from bluegreen.model import Colour
from bluegreen.plan import FlipPlan, build_flip_plan
from bluegreen.shell import Command
from bluegreen.state import State, sha256_text
from bluegreen.transport.fake import FakeTransport

OLD = "upstream shop { server 10.0.0.11:9501; }  # blue\n"
MARKER = "/var/lib/bluegreen/managed-file.prev.pending.x"


@dataclass
class FakeNginx:
    """A balancer host as the flip's commands see it."""

    site: BalancerSite
    file: str | None = OLD
    serving: str | None = OLD  # the file the running workers loaded
    valid: bool = True
    reload_takes: bool = True
    on_reload: Callable[[], None] | None = None
    backup: str | None = None
    workers: dict[int, str] = field(default_factory=lambda: {100: "nginx: worker process"})
    done: list[str] = field(default_factory=list)

    def __call__(self, command: Command, stdin: bytes | None) -> tuple[int, str, str]:
        managed, driver = self.site.managed, self.site.driver
        if command.argv[2] == _TAKE_THEN:  # the take, then the activation's first command
            take, _, *then = command.argv[4:]
            assert take == managed.take_command(MARKER).render(), command
            self._did("take")
            return self(Command(*then, env=dict(command.env)), stdin)
        if command == managed.stage_and_validate_command(driver.validate()):
            assert stdin is not None
            self.backup, self.file = self.file, stdin.decode()
            self._did("stage")
            return self._did("validate", 0 if self.valid else 65, f"{MARKER}\n",
                             "" if self.valid else 'unknown directive "servr"')
        if command == managed.take_command(MARKER):
            return self._did("take")
        if command == managed.restore_command(sha256_text(self.file or "")):
            self.file = self.backup  # the file is the one this flip staged: put back
            return self._did("restore")
        if command == ReloadActivation(driver).reload_and_watch():  # type: ignore[arg-type]
            before = self._listed()
            if self.on_reload:
                self.on_reload()
            if self.reload_takes:
                self.workers = {pid: f"{args} is shutting down"
                                for pid, args in self.workers.items()}
                self.workers[max(self.workers) + 1] = "nginx: worker process"
                self.serving = self.file
            return self._did("reload", 0, f"{before}{command.argv[-1]}\n{self._listed()}")
        if command == driver.workers():
            return 0, self._listed(), ""
        raise AssertionError(f"{self.site.host.name}: unexpected command {command}")

    def _listed(self) -> str:
        return "".join(f"{pid} {args}\n" for pid, args in self.workers.items())

    def _did(self, what: str, status: int = 0, stdout: str = "", stderr: str = ""
             ) -> tuple[int, str, str]:
        self.done.append(what)
        return status, stdout, stderr


class Recorder:
    json_mode = False

    def __init__(self) -> None:
        self.lines: list[str] = []

    def phase(self, name: str) -> None:
        self.lines.append(f"» {name}")

    def step(self, host: str, message: str, *, ok: bool | None = None) -> None:
        self.lines.append(f"{host} {message}")

    def warn(self, message: str) -> None:
        self.lines.append(f"warning: {message}")

    def transfer(self, host: str, what: str, total: int
                 ) -> AbstractContextManager[Callable[[int], None]]:
        return nullcontext(lambda sent: None)

    def result(self, data: Any, *, human: Any = None) -> None: ...
    def error(self, error: Any, *, details: str | None = None) -> None: ...
    def close(self) -> None: ...


def inventory() -> Inventory:
    return validate_inventory({
        "service": "shop",
        "hosts": {"app": [{"name": "app1", "address": "10.0.0.11"}],
                  "balancer": [{"name": "lb1", "balancer": {"managed_file": "/etc/lb1.conf",
                                                            "state_dir": "/var/lib/bluegreen"}},
                               {"name": "lb2", "balancer": {"managed_file": "/etc/lb2.conf",
                                                            "state_dir": "/var/lib/bluegreen"}}]},
        "balancer": {"managed_file": "/etc/nginx/conf.d/shop.conf", "reload_timeout": 0.3},
    }, path=Path("inv.yml"), environ={})


@pytest.fixture(autouse=True)
def not_cancelled() -> Iterator[None]:
    cancel.CANCELLED.clear()
    yield
    cancel.CANCELLED.clear()


def flipper(**lb2: Any) -> tuple[Flipper, FlipPlan, dict[str, FakeNginx], Recorder]:
    inv = inventory()
    sites = {h.name: site_for(inv, h) for h in inv.hosts.balancer}
    hosts = {"lb1": FakeNginx(sites["lb1"]), "lb2": FakeNginx(sites["lb2"], **lb2)}
    transports = {name: FakeTransport(name, host) for name, host in hosts.items()}
    plan = build_flip_plan(inv, state=State(service="shop", generation=4, live=Colour.BLUE),
                           target=Colour.GREEN, current={"lb1": OLD, "lb2": OLD})
    reporter = Recorder()
    return Flipper(inv, transports, reporter, sites=sites), plan, hosts, reporter


def test_a_flip_stages_validates_then_activates_every_balancer() -> None:
    flip, plan, hosts, _ = flipper()
    flip.flip(plan)
    for name, host in hosts.items():
        assert host.done == ["stage", "validate", "take", "reload"]
        assert host.file == host.serving == plan.configs[name]
        assert "10.0.0.11:9502" in (host.serving or "")


def test_an_invalid_second_balancer_means_nothing_is_reloaded_anywhere() -> None:
    flip, plan, hosts, _ = flipper(valid=False)
    with pytest.raises(BalancerError) as caught:
        flip.flip(plan)
    assert caught.value.exit_code == 6 and caught.value.where == "lb2"
    assert 'unknown directive "servr"' in caught.value.message
    for host in hosts.values():
        assert "reload" not in host.done
        assert host.done[-1] == "restore"
        assert host.file == host.serving == OLD  # byte for byte


def test_an_activation_that_does_not_take_restores_every_balancer() -> None:
    flip, plan, hosts, reporter = flipper(reload_takes=False)
    with pytest.raises(BalancerError) as caught:
        flip.flip(plan)
    assert "the reload did not take" in caught.value.message
    # lb2 cannot reload at all, so flipping it back cannot be confirmed either: said, not hidden
    assert "Restoring also failed on lb2" in caught.value.message
    assert "warning: activation failed; restoring every balancer" in reporter.lines
    for host in hosts.values():
        assert host.file == OLD and host.done[-2:] == ["restore", "reload"]
    assert hosts["lb1"].serving == OLD  # lb1 had flipped: it was reloaded back


def test_an_interrupt_before_the_activation_flips_nothing() -> None:
    flip, plan, hosts, _ = flipper()
    original = hosts["lb2"].__call__

    def interrupted_after_validation(command: Command, stdin: bytes | None
                                     ) -> tuple[int, str, str]:
        answer = original(command, stdin)
        site = hosts["lb2"].site
        if command == site.managed.stage_and_validate_command(site.driver.validate()):
            cancel.CANCELLED.set()  # Ctrl-C while lb2 validates
        return answer

    flip.connections["lb2"].handler = interrupted_after_validation  # type: ignore[attr-defined]
    with pytest.raises(Interrupted) as caught:
        flip.flip(plan)
    assert "nothing was flipped" in caught.value.message
    for host in hosts.values():
        assert "reload" not in host.done and host.file == host.serving == OLD


def test_an_interrupt_during_the_activation_lets_it_finish_on_every_balancer() -> None:
    flip, plan, hosts, _ = flipper(on_reload=cancel.CANCELLED.set)  # Ctrl-C as lb2 reloads
    flip.flip(plan)  # the flip completes: no balancer is left half-switched
    for name, host in hosts.items():
        assert host.serving == plan.configs[name]
        assert "restore" not in host.done
    assert cancel.CANCELLED.is_set()  # for the caller to act on once the flip is recorded


def test_undo_puts_back_the_previous_file_and_traffic() -> None:
    flip, plan, hosts, _ = flipper()
    flip.flip(plan)
    flip.undo(plan)  # e.g. after a failed verification
    for host in hosts.values():
        assert host.file == host.serving == OLD
        assert host.done[-2:] == ["restore", "reload"]
