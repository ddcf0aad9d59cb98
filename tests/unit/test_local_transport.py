from __future__ import annotations

import time
from pathlib import Path

import pytest

from bluegreen.errors import CommandTimeout
from bluegreen.shell import Command
from bluegreen.transport.base import get_file, put_file
from bluegreen.transport.local import LocalTransport


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
