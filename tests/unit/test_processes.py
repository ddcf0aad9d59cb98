from __future__ import annotations

import pytest

from bluegreen.app import listener
from bluegreen.processes import ProcessTable
from bluegreen.worker_reload import _reload_complete

GUNICORN = "  1 0\n 100 1\n 101 100\n 102 100\n 200 1\n"
# Swoole process mode: the pid file holds the master; manager 301; workers and task workers
SWOOLE_PROCESS = "1 0\n300 1\n301 300\n302 301\n303 301\n304 301\n"
# Swoole base mode with several workers: the pid file holds the manager
SWOOLE_BASE = "1 0\n400 1\n401 400\n402 400\n"


def test_workers_are_the_leaves_below_the_pid_file_process() -> None:
    assert ProcessTable.parse(GUNICORN).workers(100) == {101, 102}
    assert ProcessTable.parse(SWOOLE_PROCESS).workers(300) == {302, 303, 304}
    assert ProcessTable.parse(SWOOLE_BASE).workers(400) == {401, 402}
    assert ProcessTable.parse("garbage\n\n7 x\n").workers(1) == set()


def test_a_reload_is_complete_when_no_old_worker_is_left_and_the_count_is_back() -> None:
    old = {1, 2, 3}
    assert not _reload_complete(old, {1, 2, 3}, task_workers=False)
    assert not _reload_complete(old, {3, 4, 5}, task_workers=False)  # one old still serving
    assert not _reload_complete(old, {4, 5}, task_workers=False)  # not all back yet
    assert _reload_complete(old, {4, 5, 6}, task_workers=False)
    assert _reload_complete(old, {1, 2, 7}, task_workers=True)  # task workers only


@pytest.mark.parametrize(("ss_output", "expected"), [
    ('LISTEN 0 2048 127.0.10.1:9501 0.0.0.0:* users:(("gunicorn",pid=4242,fd=5),'
     '("gunicorn",pid=4243,fd=5))\n', "gunicorn (pid 4242)"),
    ("LISTEN 0 511 0.0.0.0:9502 0.0.0.0:*\n", "an unknown process"),
])
def test_the_listener_on_a_port_is_named_from_ss(ss_output: str, expected: str) -> None:
    assert listener(ss_output) == expected
