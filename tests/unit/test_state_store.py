"""StateStore and Lock against the recording FakeTransport: the commands they send and how they
read the answers (the real behaviour is covered against sshd in the integration tests)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bluegreen.errors import DriftError, LockHeld, StateError
from bluegreen.inventory import Inventory, validate_inventory
from bluegreen.lock import Lock
from bluegreen.model import Colour
from bluegreen.shell import Command
from bluegreen.state import State, sha256_text
from bluegreen.store import StateStore
from bluegreen.transport.fake import FakeTransport
from bluegreen.transport.local import LocalTransport


def answering(files: dict[str, str], *, lock_busy: bool = False) -> FakeTransport:
    def handler(command: Command, stdin: bytes | None) -> tuple[int, str, str]:
        argv = command.revealed_argv()
        script, args = (argv[2], argv[4:]) if argv[:2] == ["sh", "-c"] else ("", [])
        if "exit 75" in script:  # lock acquire
            return (75, "", "") if lock_busy else (0, "", "")
        if "owner.json" in script and "date +%s" in script:  # read_lock
            return 0, json.dumps({"owner": "ci@runner", "pid": 7, "host": "runner",
                                  "command": "deploy v9", "started": "then"}) + "\n3\n", ""
        if "exit 44" in script and "cat" in script:  # get_file
            return (0, files[args[0]], "") if args[0] in files else (44, "", "")
        if "exit 73" in script:  # the state replaced if its checksum is still args[1]
            seen = sha256_text(files[args[0]]) if args[0] in files else "absent"
            if seen != args[1]:
                return 73, "", ""
            assert stdin is not None
            files[args[0]] = stdin.decode()
        return 0, "", ""

    return FakeTransport("lb1", handler)


def test_a_state_write_is_refused_when_the_revision_moved() -> None:
    on_disk = State(service="shop", generation=5, revision=9, live=Colour.BLUE).to_json()
    store = StateStore(answering({"/s/state.json": on_disk}), "/s", "shop")
    with pytest.raises(DriftError) as caught:
        store.write(State(service="shop", generation=5, revision=9), expected_revision=8)
    assert "revision 9 on disk, 8 expected" in caught.value.message
    sent = len(store.transport.calls)  # type: ignore[attr-defined]
    store.write(State(service="shop", generation=6, revision=10), expected_revision=9)
    calls = store.transport.calls[sent:]  # type: ignore[attr-defined]
    # what the failed write read is what this one replaces: one round trip, no read
    assert [c.revealed_argv()[4:] for c in calls] == [["/s/state.json", sha256_text(on_disk)]]
    assert store.read().revision == 10


def test_a_state_changed_since_it_was_read_is_never_overwritten() -> None:
    files = {"/s/state.json": State(service="shop", revision=3).to_json()}
    store = StateStore(answering(files), "/s", "shop")
    assert store.read().revision == 3
    files["/s/state.json"] = State(service="shop", revision=4).to_json()  # written elsewhere
    with pytest.raises(DriftError) as caught:
        store.write(State(service="shop", revision=4), expected_revision=3)
    assert "revision 4 on disk, 3 expected" in caught.value.message
    # the same revision in other bytes (reformatted by hand): read again, then replaced
    files["/s/state.json"] = files["/s/state.json"].replace("\n", "\r\n")
    store.write(State(service="shop", revision=5, generation=1), expected_revision=4)
    assert json.loads(files["/s/state.json"])["revision"] == 5
    fresh = StateStore(answering({}), "/t", "shop")  # no file yet: created from absent
    fresh.write(State(service="shop", revision=1), expected_revision=0)
    assert fresh.transport.calls[-1].revealed_argv()[4:] == [  # type: ignore[attr-defined]
        "/t/state.json", "absent"]


def test_a_held_lock_names_its_holder() -> None:
    store = StateStore(answering({}, lock_busy=True), "/s", "shop")
    with pytest.raises(LockHeld) as caught:
        Lock(store, command="deploy v10", stale_after=300).acquire()
    assert "ci@runner" in caught.value.message and "deploy v9" in caught.value.message
    assert caught.value.exit_code == 4


def test_the_flip_guard_passes_only_for_the_state_read_and_the_lock_held(
        tmp_path: Path) -> None:
    shell = LocalTransport("lb1")  # the guard's script, run for real
    store = StateStore(shell, str(tmp_path), "shop")
    store.read()  # no state yet
    store.write(State(service="shop", generation=1, revision=1, live=Colour.BLUE),
                expected_revision=0)
    (tmp_path / "lock").mkdir()
    (tmp_path / "lock" / "owner.json").write_text('{"token": "ours"}')
    guard = store.guard("ours")
    assert shell.run(guard.command).ok
    assert shell.run(store.guard(None).command).ok  # a balancer without the lock
    (tmp_path / "lock" / "owner.json").write_text('{"token": "theirs"}')
    lost = shell.run(guard.command)
    assert lost.exit_status == 74
    assert "no longer holds the lock" in guard.refusal(lost.stdout).message
    (tmp_path / "state.json").write_text((tmp_path / "state.json").read_text() + " ")
    changed = shell.run(guard.command)
    assert changed.exit_status == 73
    refusal = guard.refusal(changed.stdout)
    assert refusal.exit_code == 9 and "state changed after this operation read it" in \
        refusal.message and refusal.where == f"lb1:{tmp_path}/state.json"


def test_the_state_is_read_under_the_lock_in_the_same_round_trip(tmp_path: Path) -> None:
    calls: list[Command] = []

    class Counting(LocalTransport):
        def run(self, command: Command, **options: object) -> object:  # type: ignore[override]
            calls.append(command)
            return super().run(command, **options)  # type: ignore[arg-type]

    store = StateStore(Counting("lb1"), str(tmp_path), "shop")
    store.write(State(service="shop", generation=3, revision=7, live=Colour.GREEN),
                expected_revision=0)
    (tmp_path / "shop.conf").write_text("upstream shop { server 10.0.0.11:9502; }\n")
    lock = Lock(store, command="rollback", stale_after=300)
    reading = store.reading_with(str(tmp_path / "shop.conf"))
    sent = len(calls)
    try:
        taken = lock.acquire(then=reading.command)
        assert len(calls) == sent + 1
        assert (tmp_path / "lock" / "owner.json").is_file()
        state, managed = store.read_from(reading, taken)
        assert (state.generation, state.revision, state.live) == (3, 7, Colour.GREEN)
        assert managed == "upstream shop { server 10.0.0.11:9502; }\n"
    finally:
        lock.release()
    assert not (tmp_path / "lock").exists()


def test_a_state_unreadable_under_the_lock_says_why(tmp_path: Path) -> None:
    store = StateStore(LocalTransport("lb1"), str(tmp_path), "shop")
    (tmp_path / "state.json").mkdir()  # cat fails on it
    lock = Lock(store, command="rollback", stale_after=300)
    reading = store.reading_with(str(tmp_path / "shop.conf"))
    try:
        taken = lock.acquire(then=reading.command)
        with pytest.raises(StateError) as caught:
            store.read_from(reading, taken)
    finally:
        lock.release()
    assert "could not read the state" in caught.value.message
    assert "Is a directory" in caught.value.message and caught.value.exit_code == 11


def _recording(store: StateStore) -> list[Command]:
    """The commands `store`'s transport runs from now on, as it runs them."""
    sent: list[Command] = []
    run = store.transport.run
    store.transport.run = lambda command, **options: (  # type: ignore[method-assign]
        sent.append(command), run(command, **options))[1]
    return sent


def _local_balancer(tmp_path: Path, managed: Path, *, live: Colour | None = None
                    ) -> Inventory:
    """An inventory whose one balancer is this machine (the local transport), its state under
    `tmp_path` (with `live`: written, at generation 2)."""
    if live is not None:
        StateStore(LocalTransport("lb1"), str(tmp_path / "state"), "shop").write(
            State(service="shop", generation=2, revision=4, live=live), expected_revision=0)
    return validate_inventory({
        "service": "shop",
        "hosts": {"app": [{"name": "app1", "address": "10.0.0.11"}],
                  "balancer": [{"name": "lb1", "connection": "local",
                                "balancer": {"managed_file": str(managed),
                                             "state_dir": str(tmp_path / "state")}}]},
        "balancer": {"managed_file": str(managed)},
    }, path=Path("inv.yml"), environ={})


def test_a_session_reads_the_state_with_the_lock_and_never_serves_it_stale(
        tmp_path: Path) -> None:
    """A session on a balancer reached through the local transport: its first read is the
    one the lock's command made; once it wrote the state, it reads what it wrote."""
    from bluegreen.output import JsonReporter
    from bluegreen.session import Session

    managed = tmp_path / "shop.conf"
    managed.write_text("upstream shop { server 10.0.0.11:9501; }\n")
    inventory = _local_balancer(tmp_path, managed, live=Colour.BLUE)
    lb1 = inventory.hosts.balancer[0]
    with Session(inventory, JsonReporter(), command="switch", hosts=[lb1]) as session:
        sent = _recording(session.stores["lb1"])
        states, files, _ = session.read_balancers()
        assert sent == [] and states["lb1"].generation == 2  # read as the lock was taken
        assert files["lb1"] == managed.read_text()
        session.write_state(replace(states["lb1"], generation=3))
        states, _, _ = session.read_balancers()
        assert states["lb1"].generation == 3 and len(sent) == 2  # the write, then a read
    with Session(inventory, JsonReporter(), command="switch", hosts=[lb1]) as session:
        session.write_state(replace(session.read_states()["lb1"], generation=4))
        states, _, _ = session.read_balancers()  # not what the lock's command read
        assert states["lb1"].generation == 4


def test_the_last_history_record_releases_the_lock_in_the_same_command(tmp_path: Path
                                                                       ) -> None:
    """A session on a local balancer: the record that ends the operation appends the history
    and releases the lock in one command, and the session's exit sends nothing more."""
    from bluegreen.output import JsonReporter
    from bluegreen.session import Session

    managed = tmp_path / "shop.conf"
    managed.write_text("")
    inventory = _local_balancer(tmp_path, managed)
    lb1 = inventory.hosts.balancer[0]
    with Session(inventory, JsonReporter(), command="rollback", hosts=[lb1]) as session:
        assert session.lock is not None and session.lock.held
        store = session.stores["lb1"]
        lock_dir = Path(store.lock_dir)
        assert lock_dir.is_dir()
        session.record({"operation": "rollback", "result": "ok"})  # not the last word
        assert lock_dir.is_dir() and session.lock.held
        sent = _recording(store)
        session.record({"operation": "rollback", "result": "ok", "n": 2}, last=True)
        assert len(sent) == 1 and not lock_dir.exists() and not session.lock.held
    assert len(sent) == 1  # the exit had no lock left to release
    history = [json.loads(line) for line in
               (tmp_path / "state" / "history.jsonl").read_text().splitlines()]
    assert [record.get("n") for record in history] == [None, 2]


def test_the_last_records_of_a_long_history_are_read_from_its_end(tmp_path: Path) -> None:
    store = StateStore(LocalTransport("lb1"), str(tmp_path / "state"), "shop")
    assert store.history(20) == [] and store.history() == []  # none yet
    (tmp_path / "state").mkdir()
    lines = [json.dumps({"operation": "deploy", "n": n}) for n in range(5000)]
    (tmp_path / "state" / "history.jsonl").write_text("\n".join(lines) + "\n")
    sent = _recording(store)
    assert [record["n"] for record in store.history(3)] == [4997, 4998, 4999]
    assert len(sent) == 1 and "tail" in sent[0].render()
    assert len(store.history()) == 5000


def test_status_reads_state_file_workers_and_lock_in_one_command(tmp_path: Path) -> None:
    """Even when a step fails (no balancer master runs here, so whether its workers loaded
    the file cannot be told), the steps after it still run: the lock is read."""
    from bluegreen.output import JsonReporter
    from bluegreen.session import Session

    managed = tmp_path / "shop.conf"
    managed.write_text("# bluegreen: shop blue generation 2\n")
    inventory = _local_balancer(tmp_path, managed, live=Colour.BLUE)
    lb1 = inventory.hosts.balancer[0]
    holder = Lock(StateStore(LocalTransport("lb1"), str(tmp_path / "state"), "shop"),
                  command="deploy v7", stale_after=60)
    holder.acquire()
    try:
        with Session(inventory, JsonReporter(), command="status", lock=False,
                     hosts=[lb1]) as session:
            sent = _recording(session.stores["lb1"])
            reads = session.read_for_status()
    finally:
        holder.release()
    assert len(sent) == 1
    assert reads.states["lb1"].generation == 2 and reads.managed["lb1"] == managed.read_text()
    assert reads.loaded == {"lb1": None}  # no nginx master runs here: cannot tell
    assert reads.lingering == {"lb1": {"old_workers": None}}
    assert reads.lock is not None and reads.lock.command == "deploy v7"
