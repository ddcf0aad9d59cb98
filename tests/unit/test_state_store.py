"""StateStore and Lock against the recording FakeTransport: the commands they send and how they
read the answers (the real behaviour is covered against sshd in the integration tests)."""

from __future__ import annotations

import json

import pytest

from bluegreen.errors import DriftError, LockHeld
from bluegreen.model import Colour
from bluegreen.shell import Command
from bluegreen.state import Lock, State, StateStore
from bluegreen.transport.fake import FakeTransport


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
        return 0, "", ""

    return FakeTransport("lb1", handler)


def test_a_state_write_is_refused_when_the_revision_moved() -> None:
    on_disk = State(service="shop", generation=5, revision=9, live=Colour.BLUE).to_json()
    store = StateStore(answering({"/s/state.json": on_disk}), "/s", "shop")
    with pytest.raises(DriftError) as caught:
        store.write(State(service="shop", generation=5, revision=9), expected_revision=8)
    assert "revision 9 on disk, 8 expected" in caught.value.message
    store.write(State(service="shop", generation=6, revision=10), expected_revision=9)
    put = store.transport.calls[-1]  # type: ignore[attr-defined]
    assert put.revealed_argv()[4:] == ["/s/state.json", "600"]


def test_a_held_lock_names_its_holder() -> None:
    store = StateStore(answering({}, lock_busy=True), "/s", "shop")
    with pytest.raises(LockHeld) as caught:
        Lock(store, command="deploy v10", stale_after=300).acquire()
    assert "ci@runner" in caught.value.message and "deploy v9" in caught.value.message
    assert caught.value.exit_code == 4
