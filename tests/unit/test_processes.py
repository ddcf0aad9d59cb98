from __future__ import annotations

import pytest

from bluegreen.app import listen_filter, listener
from bluegreen.processes import ProcessTable
from bluegreen.worker_reload import churn, reload_complete

# `ps -e -o pid=,ppid=,stat=,args=`
GUNICORN = ("  1 0 Ss init\n 100 1 S gunicorn: master\n 101 100 S gunicorn: worker\n"
            " 102 100 S gunicorn: worker\n 200 1 S other\n")
# Swoole process mode: the pid file holds the master; manager 301; workers and task workers
SWOOLE_PROCESS = ("1 0 Ss init\n300 1 Sl php\n301 300 S php\n302 301 S php\n303 301 S php\n"
                  "304 301 S php\n")
# Swoole base mode with several workers: the pid file holds the manager
SWOOLE_BASE = "1 0 Ss init\n400 1 S php\n401 400 S php\n402 400 S php\n"


def test_workers_are_the_leaves_below_the_pid_file_process() -> None:
    assert ProcessTable.parse(GUNICORN).workers(100) == {101, 102}
    assert ProcessTable.parse(SWOOLE_PROCESS).workers(300) == {302, 303, 304}
    assert ProcessTable.parse(SWOOLE_BASE).workers(400) == {401, 402}
    assert ProcessTable.parse("garbage\n\n7 x\n").workers(1) == set()
    # an exited master not yet reaped is not running, nor are its exited workers
    zombie = ProcessTable.parse("1 0 Ss init\n700 1 Z [php] <defunct>\n701 700 Z [php]\n")
    assert not zombie.alive(700) and zombie.workers(700) == set()


# Swoole 6.2 process mode with named processes (swoole_set_process_name) and a user process
# from $server->addProcess(), which no reload replaces — `ps -e -o pid=,ppid=,args=`
SWOOLE_NAMED = """\
      1       0 Ss   /sbin/init
    500       1 Ssl  shop-blue: master
    501     500 S    shop-blue: manager
    502     501 S    shop-blue: worker #0
    503     501 S    shop-blue: worker #1
    504     501 S    shop-blue: task #2
    505     501 S    shop-blue: user-process
    600       1 Sl   php /srv/shop/green/server.php
"""


def test_a_pattern_picks_the_workers_a_reload_replaces_and_leaves_user_processes() -> None:
    table = ProcessTable.parse(SWOOLE_NAMED)
    assert table.workers(500) == {502, 503, 504, 505}  # without names every leaf counts
    assert table.workers(500, r"shop-\w+: (worker|task) #") == {502, 503, 504}
    assert table.workers(500, r": task #") == {504}
    assert table.args[600] == "php /srv/shop/green/server.php"
    assert table.alive(500) and not table.alive(4_000_000)


def test_a_reload_is_complete_when_no_old_worker_is_left_and_the_count_is_back() -> None:
    old = {1, 2, 3}
    assert not reload_complete(old, {1, 2, 3}, partial=False)
    assert not reload_complete(old, {3, 4, 5}, partial=False)  # one old still serving
    assert not reload_complete(old, {4, 5}, partial=False)  # not all back yet
    assert reload_complete(old, {4, 5, 6}, partial=False)
    assert reload_complete(old, {1, 2, 7}, partial=True)  # task workers only, unnamed


def test_churn_counts_new_workers_that_died_while_watched() -> None:
    assert churn([{4, 5}, {4, 5}, {4, 5}]) == 0  # settled
    assert churn([{4, 5}, {6, 7}, {8, 9}]) == 4  # a crash loop: every sample new pids
    assert churn([{4, 5}, {4, 5, 6}]) == 0  # a late worker joining is no churn
    assert churn([{4, 5}, set()]) == 2  # the master took them all down


@pytest.mark.parametrize(("ss_output", "expected"), [
    ('LISTEN 0 2048 127.0.10.1:9501 0.0.0.0:* users:(("gunicorn",pid=4242,fd=5),'
     '("gunicorn",pid=4243,fd=5))\n', "gunicorn (pid 4242)"),
    ("LISTEN 0 511 0.0.0.0:9502 0.0.0.0:*\n", "an unknown process"),
])
def test_the_listener_on_a_port_is_named_from_ss(ss_output: str, expected: str) -> None:
    assert listener(ss_output) == expected


@pytest.mark.parametrize(("address", "expected"), [
    ("127.0.10.1", "( src 127.0.10.1:9501 or src 0.0.0.0:9501 or src [::]:9501 )"),
    ("fd00::5", "( src [fd00::5]:9501 or src [::]:9501 )"),
    ("app1.internal", "sport = :9501"),  # a name: only the port can be matched
    (None, "sport = :9501"),
])
def test_a_port_check_matches_the_instance_address_or_a_wildcard(address: str | None,
                                                                  expected: str) -> None:
    assert listen_filter(9501, address) == expected
