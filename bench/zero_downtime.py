"""Requests lost while traffic moves: steady load through nginx while bluegreen runs
deploy → rollback → deploy on the loopback fleet, compared with a naive in-place restart of the
app — each in two client modes: a new connection per request, and strict keep-alive clients that
reuse one connection and never retry.

    .venv/bin/python bench/zero_downtime.py [--rate 200] [--seconds 20]

Traffic goes only to nginx on 127.0.10.3; every load loop is bounded by count and time."""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import FLEET_ADDRESSES
from tests.fleet import start_fleet
from tests.integration.service import (
    BALANCER_SETUPS,
    GUNICORN,
    Service,
    balanced_service,
    process_alive,
)

WORKERS = 8


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, latency: float, error: str | None) -> None:
        with self.lock:
            self.sent += 1
            if error:
                self.failed += 1
                self.errors[error] = self.errors.get(error, 0) + 1
            else:
                self.latencies.append(latency)

    def summary(self) -> str:
        ordered = sorted(self.latencies) or [0.0]

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items()))
        return (f"sent {self.sent:5d}  failed {self.failed:4d}  p50 {pct(0.50):5.1f} ms  "
                f"p95 {pct(0.95):5.1f} ms  p99 {pct(0.99):6.1f} ms"
                + (f"  ({kinds})" if kinds else ""))


def run_load(host: str, port: int, *, keepalive: bool, rate: float, seconds: float,
             stop: threading.Event, result: LoadResult | None = None
             ) -> tuple[LoadResult, list[threading.Thread]]:
    """Start WORKERS threads sending rate req/s in total, until `seconds` pass, the request
    budget (rate × seconds) is spent, or `stop` is set."""
    result = result if result is not None else LoadResult()
    budget = int(rate * seconds)
    per_worker = budget // WORKERS
    interval = WORKERS / rate

    def worker() -> None:
        connection: http.client.HTTPConnection | None = None
        deadline = time.monotonic() + seconds
        next_at = time.monotonic()
        for _ in range(per_worker):
            if stop.is_set() or time.monotonic() >= deadline:
                break
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            started = time.perf_counter()
            error = None
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(host, port, timeout=5)
                connection.request("GET", "/")
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    error = f"HTTP {response.status}"
                if not keepalive or response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                error = type(exc).__name__
                if connection is not None:
                    connection.close()
                connection = None  # strict: the failed request is not retried
            result.record(time.perf_counter() - started, error)
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    return result, threads


def bluegreen_cycle(service: Service) -> list[str]:
    timings = []
    for name, args in (("deploy v2", ["deploy", "--source", str(service.release("v2")),
                                      "--release", "v2"]),
                       ("rollback", ["rollback"]),
                       ("deploy v3", ["deploy", "--source", str(service.release("v3")),
                                      "--release", "v3"])):
        started = time.perf_counter()
        result = service.cli(*args)
        if result.returncode != 0:
            raise SystemExit(f"{name} failed:\n{result.stderr}")
        timings.append(f"{name} {time.perf_counter() - started:.2f}s")
    return timings


def naive_restart_cycle(service: Service) -> list[str]:
    """What people do without bluegreen: restart the server with the new code in place on
    every app host at once (`systemctl restart app` from a playbook), three times."""
    timings = []
    for release in ("v2", "v1", "v3"):
        source = service.release(release)
        started = time.perf_counter()
        pids = [service.master_pid(host, "blue") for host in service.app_hosts]
        for pid in pids:
            if pid:
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            while pid and process_alive(pid):
                time.sleep(0.01)
        for host in service.app_hosts:
            root = service.app_root(host)
            subprocess.run([str(GUNICORN), "--daemon", "--workers", "2", "--bind",
                            f"{service.fleet[host].address}:{service.ports['blue']}",
                            "--pid", str(root / "blue.pid"), "--log-file",
                            str(root / "blue.log"), "--chdir", str(source), "app:app"],
                           check=True)
        timings.append(f"restart {release} {time.perf_counter() - started:.2f}s")
        time.sleep(1)
    return timings


def measure(fleet: object, root: Path, *, mode: str, keepalive: bool, rate: float,
            seconds: float, nginx_keepalive_timeout: str | None, balancer: str) -> str:
    hosts = BALANCER_SETUPS[balancer][0]
    service = balanced_service(fleet, root, balancer,  # type: ignore[arg-type]
                               nginx_keepalive_timeout=nginx_keepalive_timeout)
    try:
        stop = threading.Event()
        result, threads = LoadResult(), []
        for name in hosts:  # the load is split across the balancers
            server = service.nginx[name]
            _, part_threads = run_load(server.address, server.port, keepalive=keepalive,
                                          rate=rate / len(hosts), seconds=seconds, stop=stop,
                                          result=result)
            threads += part_threads
        time.sleep(1)
        timings = bluegreen_cycle(service) if mode == "bluegreen" else naive_restart_cycle(service)
        for thread in threads:
            thread.join(timeout=seconds + 10)
        stop.set()
        client = "keep-alive     " if keepalive else "new connection "
        label = f"{mode}, {balancer}" + (
            f" (keepalive_timeout {nginx_keepalive_timeout})" if nginx_keepalive_timeout else "")
        return f"{label}\n  {client} {result.summary()}\n  ({', '.join(timings)})"
    finally:
        service.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--modes", default="bluegreen,naive")
    parser.add_argument("--balancer", default="nginx", choices=sorted(BALANCER_SETUPS))
    parser.add_argument("--nginx-keepalive-timeout", default=None,
                        help="also set nginx's keepalive_timeout (e.g. 0) for the run")
    args = parser.parse_args()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp) / "fleet", FLEET_ADDRESSES)
        try:
            for index, (mode, keepalive) in enumerate(
                    (m, k) for m in args.modes.split(",") for k in (False, True)):
                lines.append(measure(fleet, Path(tmp) / f"run{index}", mode=mode,
                                     keepalive=keepalive, rate=args.rate,
                                     seconds=args.seconds,
                                     nginx_keepalive_timeout=args.nginx_keepalive_timeout,
                                     balancer=args.balancer))
                print(lines[-1], flush=True)
        finally:
            fleet.close()
    print(f"\n{args.rate:g} req/s for {args.seconds:g} s through {args.balancer}, "
          f"{WORKERS} client threads per balancer")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
