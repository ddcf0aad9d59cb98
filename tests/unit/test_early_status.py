"""`status` asks each host as soon as its connection is open, not once the slowest has
connected; what it asked early is used once, and its errors are reported as the step's."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bluegreen import connections
from bluegreen.early import EarlyResults
from bluegreen.errors import ConnectError, FanOutError, RemoteCommandFailed
from bluegreen.inventory import HostSpec, Inventory, validate_inventory
from bluegreen.output import JsonReporter
from bluegreen.queries import _status_session, status, status_in
from bluegreen.shell import Command
from bluegreen.transport.base import CommandResult, Transport


def test_early_results_are_taken_once_and_raise_where_they_are_taken() -> None:
    early = EarlyResults()
    early.keep("a", lambda: 1)
    early.keep("b", lambda: (_ for _ in ()).throw(RemoteCommandFailed("no", where="app1")))
    assert early.take("a", lambda: 2) == 1
    assert early.take("a", lambda: 2) == 2  # taken: a later round asks again
    with pytest.raises(RemoteCommandFailed, match="no"):
        early.take("b", lambda: 3)
    assert early.take("c", lambda: 4) == 4  # none kept: the work runs now


class _Watched:
    """A transport that notes each command it runs, by host, in a shared journal."""

    def __init__(self, transport: Transport, journal: list[tuple[str, str]],
                 fail: bool = False):
        self._transport, self._journal, self._fail = transport, journal, fail
        self.host = transport.host

    def run(self, command: Command, **options: Any) -> CommandResult:
        self._journal.append(("ran", self.host))
        if self._fail:
            raise RemoteCommandFailed("the facts could not be read", where=self.host)
        return self._transport.run(command, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _local_fleet(tmp_path: Path) -> Inventory:
    """Two app hosts and a balancer, all this machine (the local transport); nothing runs."""
    managed = tmp_path / "shop.conf"
    return validate_inventory({
        "service": "shop",
        "hosts": {
            "app": [{"name": name, "address": "127.0.0.1", "connection": "local",
                     "app_root": str(tmp_path / name)} for name in ("app1", "app2")],
            "balancer": [{"name": "lb1", "connection": "local",
                          "balancer": {"managed_file": str(managed),
                                       "state_dir": str(tmp_path / "state")}}]},
        "colours": {"blue": {"port": 1}, "green": {"port": 2}},  # nothing listens there
        "app": {"root": str(tmp_path / "unused"), "start": "false", "stop": "true"},
        "balancer": {"managed_file": str(managed)},
    }, path=Path("inv.yml"), environ={})


def _connecting(monkeypatch: pytest.MonkeyPatch, journal: list[tuple[str, str]], *,
                slow: str, fail: str | None = None) -> None:
    """Connections that note when each is open; `slow`'s takes half a second."""
    real = connections.open_transport
    lock = threading.Lock()

    def opening(host: HostSpec, inventory: Inventory, **options: Any) -> Transport:
        if host.name == slow:
            time.sleep(0.5)
        transport = real(host, inventory, **options)
        with lock:
            journal.append(("connected", host.name))
        return _Watched(transport, journal, fail=host.name == fail)

    monkeypatch.setattr(connections, "open_transport", opening)


def test_status_asks_each_host_once_it_is_connected_not_once_all_are(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal: list[tuple[str, str]] = []
    _connecting(monkeypatch, journal, slow="app2")
    found = status(_local_fleet(tmp_path), JsonReporter())
    slow_connected = journal.index(("connected", "app2"))
    assert journal.index(("ran", "app1")) < slow_connected  # its facts
    assert journal.index(("ran", "lb1")) < slow_connected  # the balancer's state and lock
    assert journal.count(("ran", "app1")) == journal.count(("ran", "app2")) == 1
    assert journal.count(("ran", "lb1")) == 1
    assert [(i.host, i.colour, i.running) for i in found.instances] == [
        ("app1", "blue", False), ("app2", "blue", False),
        ("app1", "green", False), ("app2", "green", False)]


def test_a_later_round_asks_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`status --watch`: the early answers serve the first round only."""
    journal: list[tuple[str, str]] = []
    _connecting(monkeypatch, journal, slow="app2")
    session, early = _status_session(_local_fleet(tmp_path), JsonReporter())
    with session:
        status_in(session, early)
        status_in(session, early)
    assert journal.count(("ran", "app1")) == journal.count(("ran", "lb1")) == 2


def test_a_host_whose_early_facts_failed_is_named_in_the_status_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal: list[tuple[str, str]] = []
    _connecting(monkeypatch, journal, slow="app2", fail="app1")
    with pytest.raises(FanOutError) as raised:
        status(_local_fleet(tmp_path), JsonReporter())
    [failure] = raised.value.failures
    assert (failure.host, failure.step) == ("app1", "status")
    assert "the facts could not be read" in str(failure.error)


def test_an_unreachable_host_still_fails_the_connect_step_by_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hosts that did connect have asked theirs meanwhile; the error is the connection's."""
    journal: list[tuple[str, str]] = []
    _connecting(monkeypatch, journal, slow="app1")
    opening = connections.open_transport

    def unreachable(host: HostSpec, inventory: Inventory, **options: Any) -> Transport:
        if host.name == "app2":
            raise ConnectError("no route to host", where="app2")
        return opening(host, inventory, **options)

    monkeypatch.setattr(connections, "open_transport", unreachable)
    with pytest.raises(FanOutError) as raised:
        status(_local_fleet(tmp_path), JsonReporter())
    assert [(f.host, f.step) for f in raised.value.failures] == [("app2", "connect")]
    assert ("ran", "app1") in journal  # asked as soon as it connected
