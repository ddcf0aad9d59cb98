"""Parsers of what hosts print, against real outputs (recorded from HAProxy 2.6, nginx 1.22,
procps and iproute2 on Debian): given this text, expect this value."""

from __future__ import annotations

from pathlib import Path

import pytest

from bluegreen.balancer.activation import parse_workers
from bluegreen.balancer.haproxy import HAProxyBalancer
from bluegreen.balancer.nginx import NginxBalancer
from bluegreen.inventory import BalancerSettings

FIXTURES = Path(__file__).parent / "fixtures"


def haproxy() -> HAProxyBalancer:
    return HAProxyBalancer(BalancerSettings(managed_file="/etc/haproxy/shop.cfg", kind="haproxy",
                                            admin_socket="/run/haproxy/admin.sock"))


@pytest.mark.parametrize(("fixture", "serving", "statuses"), [
    ("haproxy-show-stat.csv", {"blue"}, {"blue-app1": "no check", "green-app1": "MAINT"}),
    ("haproxy-show-stat-draining.csv", {"green"},
     {"blue-app1": "DRAIN", "green-app1": "no check"}),
])
def test_haproxy_show_stat(fixture: str, serving: set[str], statuses: dict[str, str]) -> None:
    stats = HAProxyBalancer.parse_stats((FIXTURES / fixture).read_text(), "shop")
    assert {name: stat.status for name, stat in stats.items()} == statuses  # no FRONTEND/BACKEND
    assert haproxy().serving_colours(stats) == serving
    assert HAProxyBalancer.parse_stats((FIXTURES / fixture).read_text(), "other") == {}


NGINX_MID_RELOAD = """\
 27301 nginx: worker process is shutting down
 27388 nginx: worker process
"""


def test_balancer_workers_from_ps() -> None:
    assert parse_workers(NGINX_MID_RELOAD) == {
        27301: "nginx: worker process is shutting down", 27388: "nginx: worker process"}
    assert parse_workers("27134 haproxy -W -D -f h.cfg -p /tmp/hap/pid\n") == {
        27134: "haproxy -W -D -f h.cfg -p /tmp/hap/pid"}
    assert parse_workers("") == {}


def test_an_nginx_reload_took_only_when_no_old_worker_still_accepts() -> None:
    nginx = NginxBalancer(BalancerSettings(managed_file="/etc/nginx/shop.conf"))
    before = parse_workers(" 27301 nginx: worker process\n")
    assert not nginx.reload_took(before, before)
    assert nginx.reload_took(before, parse_workers(NGINX_MID_RELOAD))
    assert not nginx.reload_took(before, parse_workers(
        " 27301 nginx: worker process\n 27388 nginx: worker process\n"))


@pytest.mark.parametrize(("output", "owner", "age", "stale"), [
    ('{"owner": "ci@runner", "pid": 4242, "host": "runner", "command": "deploy v9", '
     '"started": "2026-11-29T05:00:00+00:00", "token": "abc"}\n3\n', "ci@runner", 3.0, False),
    ('{"owner": "ci@runner", "pid": 4242, "host": "runner", "command": "deploy v9", '
     '"started": "2026-11-29T05:00:00+00:00", "token": "abc"}\n400\n', "ci@runner", 400.0, True),
    ("\n\n", "unknown", None, True),  # an owner file never written, no heartbeat
    ('{"owner": "ci@ru\n7\n', "unknown", 7.0, False),  # half-written JSON
])
def test_lock_files(output: str, owner: str, age: float | None, stale: bool) -> None:
    from bluegreen.lock import is_stale, parse_lock

    info = parse_lock(output)
    assert (info.owner, info.heartbeat_age) == (owner, age)
    assert is_stale(info, 300) is stale


@pytest.mark.parametrize(("output", "version"), [
    ("nginx version: nginx/1.22.1", "1.22.1"),
    ("HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/", "2.6.12"),
    ("2.6.2", "2.6.2"),
    ("v2.7.6 h1:w0NymbG2m9PcvKWsrXO6EEkY9Ru4FJK8uQbYcev1p3A=", "2.7.6"),
    ("sh: 1: nginx: not found", None),
])
def test_balancer_versions_are_read_from_what_the_binaries_print(output: str,
                                                                 version: str | None) -> None:
    from bluegreen.balancer.base import parse_version

    assert parse_version(output) == version


def test_haproxy_reads_old_workers_and_its_runtime_in_one_command() -> None:
    """What `status` reads of HAProxy with an admin socket: the master's workers, then
    `show stat` through the socket, framed in one command's output."""
    from bluegreen.balancer.haproxy import _END_OF_WORKERS
    from bluegreen.transport.base import CommandResult

    read = haproxy().runtime_read("shop", lingering=True)
    assert read is not None and "show stat" in str(read.command)
    stats = (FIXTURES / "haproxy-show-stat-draining.csv").read_text()
    workers = "27301 haproxy -sf 27134 (shutting down)\n27388 haproxy -W\n"
    facts = read.read(CommandResult("lb1", "", 0, f"{workers}\n{_END_OF_WORKERS} 0\n{stats}", ""))
    assert facts.serving == "green"
    assert facts.lingering == {"old_workers": 1, "sessions": {"blue": 0, "green": 0}}
    # no master (the workers' read exits 3) and no socket: neither is known, nothing is made up
    facts = read.read(CommandResult("lb1", "", 1, f"\n{_END_OF_WORKERS} 3\n", "no socket"))
    assert (facts.serving, facts.lingering) == (None, {"old_workers": None})
    # before a flip, only what it serves is asked
    before_flip = haproxy().runtime_read("shop", lingering=False)
    assert before_flip is not None and "ps -o" not in str(before_flip.command)
    assert before_flip.read(CommandResult(
        "lb1", "", 0, f"\n{_END_OF_WORKERS} 0\n{stats}", "")).lingering == {}


# `ss -Htn state established "( src 10.0.0.5:9501 ) or ( src 10.0.0.5:9502 ) or …"`, its local
# ends counted as `_FACTS` counts them: IPv4, IPv4-mapped (a socket bound to ::), bound to a
# device, IPv6
SS_LOCAL_ENDS = """\
3 10.0.0.5:9501
2 [::ffff:10.0.0.5]:9501
1 10.0.0.5%eth0:9502
4 [fd00::5]:9503
"""


def test_established_connections_are_counted_per_instance_from_one_ss() -> None:
    from bluegreen.app import connections_of, local_ends

    ends = local_ends(SS_LOCAL_ENDS + "garbage\n\n")
    assert len(ends) == 4
    running = [("10.0.0.5", 9501), ("10.0.0.5", 9502), ("fd00::5", 9503)]
    assert connections_of(ends, running) == [5, 1, 4]
    # an instance named by host name is matched by its port, as its filter is (`sport = :N`)
    assert connections_of(ends, [("app1.internal", 9501), ("10.0.0.5", 9502)]) == [5, 1]
    # an end whose address matches no instance counts for the one instance on its port
    assert connections_of(local_ends("7 [fe80::1]%lo:9502\n"), running) == [0, 7, 0]
    assert connections_of(local_ends("7 10.9.9.9:9502\n"),
                          [("10.0.0.5", 9502), ("10.0.0.6", 9502)]) == [0, 0]
    assert connections_of([], running) == [0, 0, 0]
