"""A whole `deploy` — lock, state, stand-up, health, flip, verification, history — run by the
real operation code on fast fakes: two balancers answering the flip's commands by `Command`
equality (their state directory is a real one, through a local shell), two app hosts that are
local shells in a temporary directory, and HTTP (instance health checks, the public URL) answered
by httpx.MockTransport. What each failure leaves is read from the fakes: which balancer commands
ran, what each balancer serves, the state and the history. The integration tests prove the same
against real sshd, nginx and app servers."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bluegreen import cancel
from bluegreen.balancer import site_for
from bluegreen.balancer.base import (
    _GUARDED_STAGE_AND_VALIDATE,
    _STAGE_AND_VALIDATE,
    GUARD_REFUSAL,
    GUARD_REFUSED,
)
from bluegreen.errors import (
    BluegreenError,
    FanOutError,
    HealthCheckFailed,
    Interrupted,
    VerifyFailed,
)
from bluegreen.inventory import Inventory, validate_inventory
from bluegreen.operations.deploy import deploy
from bluegreen.operations.shared import Options
from bluegreen.results import DryRun, Moved
from bluegreen.shell import Command
from bluegreen.transport.fake import FakeTransport
from bluegreen.transport.local import LocalTransport
from tests.unit.test_flip import FakeNginx, Recorder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


BLUE, GREEN = free_port(), free_port()


class Fleet:
    """The fakes, and what HTTP answers: `health[port]` for an instance, `public` for the URL."""

    def __init__(self, root: Path):
        self.root = root
        self.inventory = inventory(root)
        self.balancers = {
            host.name: FakeNginx(site_for(self.inventory, host), file=None, serving=None)
            for host in self.inventory.hosts.balancer}
        self.state_shell = LocalTransport("state")
        self.health = {BLUE: 200, GREEN: 200}
        self.public = "release v1"

    def transport(self, name: str) -> Any:
        if name in self.balancers:
            fake = self.balancers[name]

            managed = Path(fake.site.managed.path)

            def answer(command: Command, stdin: bytes | None) -> tuple[int, str, str]:
                if command.argv[2] == _GUARDED_STAGE_AND_VALIDATE:  # the guard is the host's
                    guard, stage, validate = command.argv[4:]
                    checked = self.state_shell.run(Command("sh", "-c", guard))
                    if not checked.ok:
                        return GUARD_REFUSED, "", f"{checked.stdout}{GUARD_REFUSAL}\n"
                    command = Command.script(_STAGE_AND_VALIDATE, stage, validate)
                try:
                    return fake(command, stdin)
                except AssertionError:  # not the driver's: the state directory's, run for real
                    if fake.file is None:  # reads of the managed file see the fake's
                        managed.unlink(missing_ok=True)
                    else:
                        managed.write_text(fake.file)
                    result = self.state_shell.run(command, stdin=stdin)
                    return result.exit_status, result.stdout, result.stderr

            return FakeTransport(name, answer)
        return LocalTransport(name)

    def http(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "shop.test":
            return httpx.Response(200, text=self.public)
        status = self.health[request.url.port or 80]
        return httpx.Response(status, text="ok" if status == 200 else "starting")

    def balancer_commands(self) -> dict[str, list[str]]:
        return {name: list(fake.done) for name, fake in self.balancers.items()}

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.root / "state" / "lb1" / "state.json").read_text()))

    def history(self) -> list[dict[str, Any]]:
        lines = (self.root / "state" / "lb1" / "history.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]


def inventory(root: Path) -> Inventory:
    return validate_inventory({
        "service": "shop",
        "hosts": {
            "app": [{"name": name, "address": "127.0.0.1", "app_root": str(root / name)}
                    for name in ("app1", "app2")],
            "balancer": [{"name": name, "balancer": {
                "managed_file": str(root / f"{name}.conf"),
                "state_dir": str(root / "state" / name)}} for name in ("lb1", "lb2")]},
        "colours": {"blue": {"port": BLUE}, "green": {"port": GREEN}},
        "app": {"root": str(root / "srv"),  # an instance "runs" while its file exists
                "start": "touch {{ app_root }}/{{ colour }}.up",
                "stop": "rm -f {{ app_root }}/{{ colour }}.up",
                "status": "test -e {{ app_root }}/{{ colour }}.up"},
        # answered by httpx.MockTransport through the fakes' tunnels, not by curl on a host
        "health": {"interval": 0, "retries": 2, "via": "ssh"},
        "balancer": {"managed_file": "/unused", "reload_timeout": 0.3},
        "verify": {"urls": ["http://shop.test/"], "expect_body": "release {{ release }}",
                   "attempts": 2},
    }, path=root / "inventory.yml", environ={})


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    import bluegreen.instances

    fleet = Fleet(tmp_path)
    monkeypatch.setattr("bluegreen.connections.open_transport",
                        lambda host, inventory, **_: fleet.transport(host.name))
    real_checker = bluegreen.instances.HealthChecker
    monkeypatch.setattr(bluegreen.instances, "HealthChecker", lambda **options: real_checker(
        httpx.Client(transport=httpx.MockTransport(fleet.http)), sleep=lambda _: None))
    cancel.CANCELLED.clear()
    yield fleet
    cancel.CANCELLED.clear()


def run_deploy(fleet: Fleet, release: str) -> dict[str, Any]:
    source = fleet.root / "releases" / release
    source.mkdir(parents=True, exist_ok=True)
    (source / "app.txt").write_text(release)
    return deploy(fleet.inventory, Recorder(), source=str(source), release=release, to=None,
                  options=Options())  # type: ignore[arg-type]


def test_a_deploy_flips_every_balancer_and_records_it(fleet: Fleet) -> None:
    result = run_deploy(fleet, "v1")
    assert isinstance(result, Moved)
    assert (result.live, result.generation) == ("blue", 1)
    for fake in fleet.balancers.values():
        assert fake.done == ["stage", "validate", "take", "reload"]
        assert fake.serving is not None and f":{BLUE} " in fake.serving
    assert fleet.state()["live"] == "blue" and fleet.state()["operation"] is None
    assert [(r["operation"], r["result"]) for r in fleet.history()] == [("deploy", "ok")]
    assert not (fleet.root / "state" / "lb1" / "lock").exists()


def test_an_unhealthy_target_sends_no_command_to_any_balancer(fleet: Fleet) -> None:
    run_deploy(fleet, "v1")
    served = {name: fake.serving for name, fake in fleet.balancers.items()}
    for fake in fleet.balancers.values():
        fake.done.clear()
    fleet.health[GREEN] = 503
    with pytest.raises(FanOutError) as caught:
        run_deploy(fleet, "v2")
    assert caught.value.exit_code == 5  # every host's failure, each a failed health check
    assert [type(f.error) for f in caught.value.failures] == [HealthCheckFailed] * 2
    assert fleet.balancer_commands() == {"lb1": [], "lb2": []}  # no stage, no reload
    assert {name: fake.serving for name, fake in fleet.balancers.items()} == served
    state = fleet.state()
    assert state["live"] == "blue" and state["colours"]["green"]["status"] == "failed"
    assert fleet.history()[-1]["result"] == "failed"


def test_a_failed_verification_undoes_the_flip_on_every_balancer(fleet: Fleet) -> None:
    run_deploy(fleet, "v1")
    served = {name: fake.serving for name, fake in fleet.balancers.items()}
    for fake in fleet.balancers.values():
        fake.done.clear()
    with pytest.raises(VerifyFailed) as caught:  # the public URL still shows v1
        run_deploy(fleet, "v2")
    assert caught.value.exit_code == 7
    for name, fake in fleet.balancers.items():
        assert fake.done == ["stage", "validate", "take", "reload", "restore", "reload"]
        assert fake.serving == served[name]  # traffic back on blue, byte for byte
    state = fleet.state()
    assert (state["live"], state["generation"]) == ("blue", 1)
    assert state["colours"]["green"]["status"] == "failed"
    record = fleet.history()[-1]
    assert (record["operation"], record["result"]) == ("deploy", "failed")
    assert record["error"]["code"] == "verify_failed"


def test_an_invalid_second_balancer_means_nothing_is_flipped(fleet: Fleet) -> None:
    run_deploy(fleet, "v1")
    served = {name: fake.serving for name, fake in fleet.balancers.items()}
    for fake in fleet.balancers.values():
        fake.done.clear()
    fleet.balancers["lb2"].valid = False
    fleet.public = "release v2"
    with pytest.raises(BluegreenError) as caught:
        run_deploy(fleet, "v2")
    assert caught.value.exit_code == 6 and "servr" in caught.value.message
    for name, fake in fleet.balancers.items():
        assert "reload" not in fake.done and "restore" in fake.done
        assert fake.file == fake.serving == served[name]
    assert fleet.state()["live"] == "blue"


def test_an_interrupt_during_the_flip_finishes_it_everywhere_then_flips_back_unverified(
        fleet: Fleet) -> None:
    run_deploy(fleet, "v1")
    served = {name: fake.serving for name, fake in fleet.balancers.items()}
    for fake in fleet.balancers.values():
        fake.done.clear()
    fleet.balancers["lb2"].on_reload = cancel.CANCELLED.set  # Ctrl-C as lb2 reloads
    fleet.public = "release v2"
    with pytest.raises(Interrupted) as caught:
        run_deploy(fleet, "v2")
    assert caught.value.exit_code == 130
    assert "live traffic was left as it was" in caught.value.message
    for name, fake in fleet.balancers.items():
        # the activation finished on both balancers (none left half-switched), then the
        # unverified flip was undone on both
        assert fake.done == ["stage", "validate", "take", "reload", "restore", "reload"]
        assert fake.serving == served[name]
    state = fleet.state()
    assert (state["live"], state["generation"]) == ("blue", 1)
    assert state["colours"]["green"]["status"] == "failed"
    record = fleet.history()[-1]
    assert (record["result"], record["flipped"]) == ("interrupted", False)


def test_the_dry_run_prints_the_steps_the_deploy_runs_and_runs_none(fleet: Fleet) -> None:
    run_deploy(fleet, "v1")
    for fake in fleet.balancers.values():
        fake.done.clear()
    source = fleet.root / "releases" / "v2"
    source.mkdir(parents=True)
    result = deploy(fleet.inventory, Recorder(), source=str(source), release="v2", to=None,
                    options=Options(dry_run=True))  # type: ignore[arg-type]
    assert isinstance(result, DryRun)
    lines = result.plan
    assert lines[0].startswith("deploy release v2 to green (live: blue;")
    steps = [line for line in lines if line[:1].isdigit()]
    assert [line.split(". ", 1)[1].split(" ")[0:2] for line in steps] == [
        ["on", "every"], ["record", "green"], ["on", "every"], ["health-check", "2"],
        ["on", "2"], ["verify", "through"], ["write", "state"]]
    assert any(line.strip().startswith("app2: start: ") for line in lines)
    assert any(line.strip().startswith(f"+    server 127.0.0.1:{GREEN}") for line in lines)
    assert fleet.balancer_commands() == {"lb1": [], "lb2": []}
    assert fleet.state()["colours"]["green"]["release"] is None  # nothing written ahead
    assert not (fleet.root / "app1" / "green.up").exists()


def change_the_state(fleet: Fleet) -> None:  # another writer, mid-deploy
    state_file = fleet.root / "state" / "lb2" / "state.json"
    if b"meddled" not in state_file.read_bytes():
        state_file.write_text(state_file.read_text().replace("{", '{"meddled": 1, ', 1))


def take_the_lock_over(fleet: Fleet) -> None:  # `lock release --force` and another holder
    (fleet.root / "state" / "lb1" / "lock" / "owner.json").write_text(
        '{"owner": "someone else", "token": "theirs"}')


@pytest.mark.parametrize(("meddle", "said", "staged_and_restored"), [
    # lb2's state changed: lb1 staged and validated, and was put back byte for byte
    (change_the_state, "the state changed after this operation read it", "lb1"),
    # the lock is on lb1: lb1 staged nothing; lb2 staged and validated, then was put back
    (take_the_lock_over, "this operation no longer holds the lock", "lb2"),
])
def test_what_changed_behind_the_deploy_stops_it_before_any_activation(
        fleet: Fleet, meddle: Callable[[Fleet], None], said: str,
        staged_and_restored: str) -> None:
    run_deploy(fleet, "v1")
    for fake in fleet.balancers.values():
        fake.done.clear()
    answer = fleet.http

    def meddling(request: httpx.Request) -> httpx.Response:  # while green is health-checked
        if request.url.port == GREEN:
            meddle(fleet)
        return answer(request)

    fleet.http = meddling  # type: ignore[method-assign]
    fleet.public = "release v2"
    with pytest.raises(BluegreenError) as caught:
        run_deploy(fleet, "v2")
    assert caught.value.exit_code == 9 and said in caught.value.paragraph()
    assert fleet.balancer_commands() == {
        name: ["stage", "validate", "restore"] if name == staged_and_restored else []
        for name in ("lb1", "lb2")}
    assert all(fake.file == fake.serving for fake in fleet.balancers.values())
    assert fleet.state()["live"] == "blue"
