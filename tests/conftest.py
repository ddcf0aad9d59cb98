from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fleet import Fleet, start_fleet

FLEET_ADDRESSES = {
    "app1": "127.0.10.1",
    "app2": "127.0.10.2",
    "lb1": "127.0.10.3",
    "lb2": "127.0.10.4",
    "bastion": "127.0.10.5",
}


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    started = start_fleet(tmp_path_factory.mktemp("fleet"), FLEET_ADDRESSES)
    try:
        yield started
    finally:
        started.close()


def host_entry(fleet: Fleet, name: str, **extra: Any) -> dict[str, Any]:
    host = fleet[name]
    return {"name": name, "address": host.address, "port": host.port, **extra}


def fleet_inventory(
    fleet: Fleet,
    *,
    app: list[str] | None = None,
    balancer: list[str] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """An inventory dict for the loopback fleet; `sections` replace or add top-level keys."""
    data: dict[str, Any] = {
        "service": "shop",
        "ssh": {
            "user": "root",
            "identity_file": str(fleet.client_key),
            "known_hosts": str(fleet.known_hosts),
            "config_file": None,
            "use_agent": False,
            "connect_timeout": 5,
            "command_timeout": 30,
        },
        "hosts": {
            "app": [host_entry(fleet, n) for n in (app or ["app1", "app2"])],
            "balancer": [host_entry(fleet, n) for n in (balancer or ["lb1"])],
        },
    }
    data.update(sections)
    return data


def write_inventory(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")}
    # what `check` remembers goes to a cache of the tests', not the user's
    full_env["XDG_CACHE_HOME"] = str(Path(tempfile.gettempdir()) / "bluegreen-tests-cache")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bluegreen", *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
