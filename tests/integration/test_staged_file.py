"""A staged balancer file withdraws itself when the flip that staged it never activates it (a
lost connection, a killed bluegreen), so no later reload by anyone serves it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bluegreen.balancer.base import ManagedFile
from bluegreen.errors import BalancerError
from bluegreen.shell import Command
from bluegreen.transport.ssh import SSHTransport
from tests.fleet import Fleet
from tests.integration.test_ssh_transport import connect

VALID = Command("true")  # these tests are about staging: every file passes validation


@pytest.fixture
def lb1(fleet: Fleet) -> Iterator[SSHTransport]:
    transport = connect(fleet, "lb1")
    try:
        yield transport
    finally:
        transport.close()


def wait_for(condition: object, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_a_staged_file_not_taken_is_restored_byte_for_byte(lb1: SSHTransport, tmp_path: Path
                                                           ) -> None:
    live = tmp_path / "conf.d" / "shop.conf"
    live.parent.mkdir()
    live.write_bytes(b"upstream shop { server 127.0.0.1:9501; }\n")
    live.chmod(0o640)
    managed = ManagedFile(str(live), str(tmp_path / "state"), lifetime=1)
    managed.stage_and_validate(lb1, "upstream shop { server 127.0.0.1:9502; }\n", VALID)
    assert live.read_text().endswith("9502; }\n")
    assert wait_for(lambda: live.read_bytes().endswith(b"9501; }\n"))
    assert live.stat().st_mode & 0o777 == 0o640
    try:
        managed.take(lb1)
        raise AssertionError("a withdrawn file was taken")
    except BalancerError as error:
        assert "withdrawn" in error.message

    managed.stage_and_validate(lb1, "upstream shop { server 127.0.0.1:9503; }\n", VALID)
    managed.take(lb1)  # activated in time: it stays
    time.sleep(2)
    assert live.read_text().endswith("9503; }\n")


def test_a_staged_file_for_a_new_path_is_removed_again(lb1: SSHTransport, tmp_path: Path) -> None:
    live = tmp_path / "new.conf"
    ManagedFile(str(live), str(tmp_path / "state"), lifetime=1).stage_and_validate(
        lb1, "x\n", VALID)
    assert live.exists()
    assert wait_for(lambda: not live.exists())


def test_a_restore_puts_back_only_a_file_this_flip_staged(lb1: SSHTransport, tmp_path: Path
                                                           ) -> None:
    live = tmp_path / "shop.conf"
    live.write_text("generation 1\n")
    managed = ManagedFile(str(live), str(tmp_path / "state"), lifetime=30)
    managed.stage_and_validate(lb1, "generation 2\n", VALID)
    managed.take(lb1)  # the flip to generation 2 went through; its backup stays
    # the next flip never reached this host's staging (its guard refused, its connection
    # failed first): the backup is generation 1's, and must not come back
    assert managed.restore(lb1, "generation 3\n") is False
    assert live.read_text() == "generation 2\n"
    # where it did stage, the file it replaced comes back byte for byte
    managed.stage_and_validate(lb1, "generation 3\n", VALID)
    assert managed.restore(lb1, "generation 3\n") is True
    assert live.read_text() == "generation 2\n"


def test_the_activation_takes_the_staged_file_with_its_first_command(lb1: SSHTransport,
                                                                     tmp_path: Path) -> None:
    """A flip's activation runs its first command through `ManagedFile.taking`: one round
    trip takes the staged file, then runs the command (its stdin intact). When the watchdog
    withdrew the file first, that command does not run."""
    live = tmp_path / "shop.conf"
    live.write_text("generation 1\n")
    managed = ManagedFile(str(live), str(tmp_path / "state"), lifetime=1)
    managed.stage_and_validate(lb1, "generation 2\n", VALID)
    taking = managed.taking(lb1)
    first = taking.run(Command("cat"), stdin=b"the activation's input")
    assert (first.ok, first.stdout, first.command) == (True, "the activation's input", "cat")
    assert taking.run(Command("true")).ok  # the file is taken once
    taking.finish()  # nothing left to take
    time.sleep(2)  # past the lifetime: taken, so the watchdog left it
    assert live.read_text() == "generation 2\n"

    managed.stage_and_validate(lb1, "generation 3\n", VALID)
    assert wait_for(lambda: live.read_text() == "generation 2\n")  # withdrawn
    ran = tmp_path / "ran"
    taking = managed.taking(lb1)
    try:
        taking.run(Command("touch", str(ran)))
        raise AssertionError("a withdrawn file was taken")
    except BalancerError as error:
        assert "withdrawn" in error.message
    assert not ran.exists()
