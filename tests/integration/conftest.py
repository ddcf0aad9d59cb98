from __future__ import annotations

from collections.abc import Iterator
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
    """Two app hosts behind Caddy (flipped through its admin API)."""
    yield from serve(Service(fleet, tmp_path, ["app1", "app2"], ["lb1"],
                             balancer_kinds={"lb1": "caddy"}))
