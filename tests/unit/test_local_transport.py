from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bluegreen.errors import CommandTimeout, RemoteCommandFailed
from bluegreen.shell import Command
from bluegreen.transport.base import get_file, get_files, put_file
from bluegreen.transport.local import LocalTransport
from tests.unit.test_app_stop import Counting


def test_runs_argv_without_a_shell_and_keeps_status_as_data() -> None:
    local = LocalTransport("here")
    result = local.run(Command("printf", "%s", "$(id); `x`"))
    assert result.ok and result.stdout == "$(id); `x`"
    assert local.run(Command("sh", "-c", "exit 3")).exit_status == 3


def test_timeout_kills_the_whole_process_group() -> None:
    local = LocalTransport("here")
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as caught:
        local.run(Command("sh", "-c", "sleep 60 & sleep 60"), timeout=0.5)
    assert time.monotonic() - started < 5 and caught.value.where == "here"


def test_put_and_get(tmp_path: Path) -> None:
    local = LocalTransport("here")
    target = tmp_path / "x" / "file"
    put_file(local, b"data", str(target), mode=0o640)
    assert target.read_bytes() == b"data" and target.stat().st_mode & 0o777 == 0o640
    assert get_file(local, str(target)) == "data"
    assert get_file(local, str(tmp_path / "nope")) is None


def test_several_files_come_back_in_one_round_trip_byte_for_byte(tmp_path: Path) -> None:
    local = LocalTransport("here")
    texts = {"empty": "", "no-newline": "a\nb", "newlines": "\n\nx\n\n", "absent": None,
             "looks-like-a-marker": "present\nabsent\n--bluegreen-x--\n"}
    for name, text in texts.items():
        if text is not None:
            (tmp_path / name).write_text(text)
    assert get_files(local, *(str(tmp_path / name) for name in texts)) == list(texts.values())
    (tmp_path / "unreadable").mkdir()  # cat fails: an error, not a missing file
    with pytest.raises(RemoteCommandFailed):
        get_files(local, str(tmp_path / "empty"), str(tmp_path / "unreadable"))


def test_prune_keeps_the_newest_and_those_in_use_in_one_command(tmp_path: Path) -> None:
    from bluegreen.release import ReleaseLayout, pruned

    # v6 the newest; an upload in progress is neither counted nor removed
    for age, name in enumerate(["v6", ".incoming.v7", "v5", "v4", "v3", "v2", "v1"]):
        (tmp_path / "releases" / name).mkdir(parents=True)
        os.utime(tmp_path / "releases" / name, (1_000_000 - age, 1_000_000 - age))
    (tmp_path / "blue").symlink_to("releases/v1")  # old, but a colour still points at it
    (tmp_path / "releases" / ".removing.v0" / "app").mkdir(parents=True)  # a prune cut short
    layout, transport = ReleaseLayout(str(tmp_path)), Counting()
    assert pruned(transport.run(layout.prune_command(2)).stdout) == ["v4", "v3", "v2"]
    assert len(transport.commands) == 1
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == [
        ".incoming.v7", "v1", "v5", "v6"]
    assert pruned(transport.run(layout.prune_command(2)).stdout) == []
    assert len(transport.commands) == 2


@pytest.mark.parametrize("status", [None, "test -e {{ release_dir }} && exit 0"])
def test_status_reads_an_instance_in_one_command_unless_app_status_names_the_release(
        tmp_path: Path, status: str | None) -> None:
    import socket

    from bluegreen.app import AppStack, instance_specs
    from bluegreen.inventory import validate_inventory
    from bluegreen.model import Colour

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    inventory = validate_inventory({
        "service": "shop",
        "hosts": {"app": [{"name": "app1", "address": "127.0.0.1"}], "balancer": ["lb1"]},
        "colours": {"blue": {"port": port}, "green": {"port": port + 1}},
        "app": {"root": str(tmp_path), "start": "true", "stop": "true",
                **({"status": status} if status else {})},
        "balancer": {"managed_file": "/etc/x.conf"},
    }, path=tmp_path / "inv.yml", environ={})
    (tmp_path / "releases" / "v3").mkdir(parents=True)
    (tmp_path / "blue").symlink_to("releases/v3")
    stack = AppStack(inventory, inventory.app)
    blue = instance_specs(inventory, Colour.BLUE)[0]
    green = instance_specs(inventory, Colour.GREEN)[0]
    host = Counting()
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    try:
        facts = stack.facts_of(host, [blue])[0]
        assert (facts.pointer, facts.running, facts.connections) == ("v3", True, 2)
        assert len(host.commands) == (1 if status is None else 3)
        stopped = stack.facts_of(host, [green])[0]  # no pointer, nothing listening
        assert (stopped.pointer, stopped.running, stopped.connections) == (None, False, 0)
    finally:
        for client in clients:
            client.close()
        listener.close()


def test_status_counts_each_running_colour_apart_and_reads_every_kind_of_pointer(
        tmp_path: Path) -> None:
    """Both colours run on one host: one command, one `ss`, each colour's own connections; a
    pointer whose release is gone is still named, a directory in a pointer's place is not a
    pointer, and the commands after the pointer's read run where the command started."""
    import socket

    from bluegreen.app import AppStack, instance_specs
    from bluegreen.inventory import validate_inventory
    from bluegreen.model import Colour

    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    blue_port, green_port = (listener.getsockname()[1] for listener in listeners)
    inventory = validate_inventory({
        "service": "shop",
        "hosts": {"app": [{"name": "app1", "address": "127.0.0.1"}], "balancer": ["lb1"]},
        "colours": {"blue": {"port": blue_port}, "green": {"port": green_port}},
        "app": {"root": str(tmp_path), "start": "true", "stop": "true"},
        "balancer": {"managed_file": "/etc/x.conf"},
    }, path=tmp_path / "inv.yml", environ={})
    (tmp_path / "releases" / "v3").mkdir(parents=True)
    (tmp_path / "blue").symlink_to("releases/v3")
    (tmp_path / "green").symlink_to("releases/v2")  # pruned by hand: gone
    stack = AppStack(inventory, inventory.app)
    specs = [instance_specs(inventory, colour)[0] for colour in (Colour.BLUE, Colour.GREEN)]
    host = Counting()
    clients = [socket.create_connection(("127.0.0.1", port))
               for port in (blue_port, blue_port, green_port, green_port, green_port)]
    try:
        where = Command("pwd", "-P")
        blue, green = stack.facts_of(host, specs, then=[where, where])
        assert len(host.commands) == 1
        assert (blue.pointer, blue.running, blue.connections) == ("v3", True, 2)
        assert (green.pointer, green.running, green.connections) == ("v2", True, 3)
        assert blue.then.strip() == green.then.strip() == str(Path.cwd().resolve())
        (tmp_path / "green").unlink()
        (tmp_path / "green").mkdir()
        listeners.pop().close()
        green = stack.facts_of(host, specs)[1]
        assert (green.pointer, green.running, green.connections) == (None, False, 0)
    finally:
        for client in clients:
            client.close()
        for listener in listeners:
            listener.close()


def test_a_small_release_is_sent_with_the_check_and_a_present_one_is_kept(tmp_path: Path
                                                                          ) -> None:
    from bluegreen.errors import UsageError
    from bluegreen.release import ReleaseLayout, package

    source = tmp_path / "source"
    source.mkdir()
    (source / "app.txt").write_text("first build\n")
    artifact = package(source, release="v1")
    assert not ReleaseLayout.asks_first(artifact)  # a few hundred bytes: sent with the check
    layout, host = ReleaseLayout(str(tmp_path / "srv")), Counting()
    assert layout.upload(host, artifact, unless_present=True)  # absent: unpacked
    unpacked = tmp_path / "srv" / "releases" / "v1" / "app.txt"
    assert unpacked.read_text() == "first build\n"
    unpacked.write_text("touched on the host\n")
    assert not layout.upload(host, artifact, unless_present=True)  # present: kept as it is
    assert unpacked.read_text() == "touched on the host\n" and len(host.commands) == 2
    (source / "app.txt").write_text("another build under the same id\n")
    with pytest.raises(UsageError) as caught:
        layout.upload(host, package(source, release="v1"), unless_present=True)
    assert "already exists on this host with different content" in caught.value.message
    assert caught.value.where == f"here:{tmp_path}/srv/releases/v1"
    assert not list((tmp_path / "srv" / "releases").glob(".incoming.*"))
