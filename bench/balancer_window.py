"""The window a failing balancer leaves: with two nginx balancers, one of which fails to
activate, how long (and for how many requests) the other one serves the new colour before
bluegreen puts it back. Steady load through the healthy balancer counts the responses that came
from the never-deployed release.

    .venv/bin/python bench/balancer_window.py [--rate 200] [--reload-timeout 2]

Two failures: the reload command fails at once (`balancer.reload: false` on lb2), and a reload
that "succeeds" but never takes (`balancer.reload: true`: no new workers), which is only known
when `balancer.reload_timeout` runs out. Traffic goes only to nginx on 127.0.10.3; every load
loop is bounded by count and time."""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import FLEET_ADDRESSES
from tests.fleet import start_fleet
from tests.integration.service import Service


def measure(fleet: object, root: Path, *, reload_command: str, rate: float,
            reload_timeout: float) -> str:
    service = Service(fleet, root, ["app1", "app2"], ["lb1", "lb2"])  # type: ignore[arg-type]
    try:
        result = service.deploy("v1")
        assert result.returncode == 0, result.stderr
        healthy = service.nginx["lb1"]
        seen: list[tuple[float, str]] = []
        stop = threading.Event()
        budget = int(rate * 60)

        def load() -> None:
            interval = 1 / rate
            for _ in range(budget):
                if stop.is_set():
                    return
                started = time.monotonic()
                connection = http.client.HTTPConnection(healthy.address, healthy.port,
                                                        timeout=5)
                try:
                    connection.request("GET", "/")
                    body = connection.getresponse().read().decode()
                    seen.append((time.monotonic(), body.split(" (")[0]))
                except OSError as exc:
                    seen.append((time.monotonic(), f"error {type(exc).__name__}"))
                finally:
                    connection.close()
                time.sleep(max(0.0, interval - (time.monotonic() - started)))

        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        time.sleep(0.5)
        service.overrides["balancer"] = {"reload_timeout": reload_timeout}
        inventory = service.with_balancer_override(1, reload=reload_command)
        started = time.monotonic()
        failed = service.cli("deploy", "--source", str(service.release("v2")), "--release",
                             "v2", inventory=inventory)
        took = time.monotonic() - started
        assert failed.returncode == 6, failed.stderr
        time.sleep(0.5)
        stop.set()
        thread.join(timeout=10)
        wrong = [t for t, body in seen if body == "release v2"]
        window = (max(wrong) - min(wrong)) if wrong else 0.0
        errors = sum(1 for _, body in seen if body.startswith("error"))
        return (f"lb2 reload `{reload_command}` (reload_timeout {reload_timeout:g} s): exit "
                f"{failed.returncode} after {took:.2f} s; through lb1 {len(seen)} requests, "
                f"{len(wrong)} served by v2 over {window * 1000:.0f} ms, {errors} failed")
    finally:
        service.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--reload-timeout", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp) / "fleet", FLEET_ADDRESSES)
        try:
            for index, command in enumerate(("false", "true")):
                print(measure(fleet, Path(tmp) / f"run{index}", reload_command=command,
                              rate=args.rate, reload_timeout=args.reload_timeout), flush=True)
        finally:
            fleet.close()


if __name__ == "__main__":
    main()
