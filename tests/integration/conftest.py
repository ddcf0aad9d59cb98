from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fleet import Fleet
from tests.integration.service import Service, serve


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def service(fleet: Fleet, tmp_path: Path) -> Iterator[Service]:
    """Two app hosts, one nginx balancer."""
    yield from serve(Service(fleet, tmp_path, ["app1", "app2"], ["lb1"]))


@pytest.fixture
def two_balancers(fleet: Fleet, tmp_path: Path) -> Iterator[Service]:
    """One app host, two nginx balancers."""
    yield from serve(Service(fleet, tmp_path, ["app1"], ["lb1", "lb2"]))


@pytest.fixture
def sticky_service(fleet: Fleet, tmp_path: Path) -> Iterator[Service]:
    """Two app hosts behind nginx whose proxy_pass names the upstream through canary.sticky's
    variable ($bluegreen_shop)."""
    yield from serve(Service(fleet, tmp_path, ["app1", "app2"], ["lb1"], sticky_route=True))


@pytest.fixture
def haproxy_service(fleet: Fleet, tmp_path: Path) -> Iterator[Service]:
    """Two app hosts, one HAProxy balancer (reload flips unless the test asks for runtime)."""
    yield from serve(Service(fleet, tmp_path, ["app1", "app2"], ["lb1"],
                             balancer_kinds={"lb1": "haproxy"}))


@pytest.fixture
def mixed_balancers(fleet: Fleet, tmp_path: Path) -> Iterator[Service]:
    """One app host behind nginx on lb1 and HAProxy on lb2."""
    yield from serve(Service(fleet, tmp_path, ["app1"], ["lb1", "lb2"],
                             balancer_kinds={"lb2": "haproxy"}))


@pytest.fixture
def caddy_service(fleet: Fleet, tmp_path: Path) -> Iterator[Service]:
    """Two app hosts behind Caddy (flipped through its admin API), on a host set up as `bluegreen
    check` advises: a config swap hands the connections queued on Caddy's old listener to the
    new one (net.ipv4.tcp_migrate_req; bench/caddy_listener.py measures what happens without)."""
    with migrating_queued_connections(1):
        yield from serve(Service(fleet, tmp_path, ["app1", "app2"], ["lb1"],
                                 balancer_kinds={"lb1": "caddy"}))


MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


@contextmanager
def migrating_queued_connections(value: int) -> Iterator[None]:
    """net.ipv4.tcp_migrate_req set to `value` (this test fleet's network namespace is the
    machine's: the value it had comes back afterwards)."""
    if not MIGRATE_REQ.exists():
        pytest.skip("this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14+)")
    if not os.access(MIGRATE_REQ, os.W_OK):
        pytest.skip("net.ipv4.tcp_migrate_req can only be set as root")
    before = MIGRATE_REQ.read_text().strip()
    MIGRATE_REQ.write_text(f"{value}\n")
    try:
        yield
    finally:
        MIGRATE_REQ.write_text(f"{before}\n")
