"""A Prometheus server the test starts (and stops, by its PID) on a loopback address, scraping
the targets it is given every second, its data in the test's own directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fleet import free_port, stop_process, wait_for_port

ADDRESS = "127.0.10.240"


def require_prometheus() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (scripts/setup.sh installs it)")
    return binary


@contextmanager
def prometheus_scraping(root: Path, *targets: str) -> Iterator[str]:
    """Its base URL, once it answers queries and has scraped every target once."""
    binary = require_prometheus()
    root.mkdir(parents=True, exist_ok=True)
    port = free_port(ADDRESS)
    config = root / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "balancer",
                            "static_configs": [{"targets": list(targets)}]}]}))
    log = (root / "prometheus.log").open("ab")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
         f"--web.listen-address={ADDRESS}:{port}"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    url = f"http://{ADDRESS}:{port}"
    try:
        wait_for_port(ADDRESS, port, timeout=30)
        deadline = time.monotonic() + 30
        while not ready(url) or query(url, "sum(up)") != float(len(targets)):
            assert time.monotonic() < deadline, (root / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)
        yield url
    finally:
        stop_process(process)


def ready(url: str) -> bool:
    """It answers queries (it says 503 while it starts)."""
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError):
        return False


def query(url: str, promql: str) -> float | None:
    """An instant query's one number, or None."""
    data = urllib.parse.urlencode({"query": promql}).encode()
    with urllib.request.urlopen(f"{url}/api/v1/query", data=data, timeout=5) as response:
        result = json.load(response)["data"]["result"]
    if isinstance(result, list) and result and isinstance(result[0], dict):
        return float(result[0]["value"][1])
    return float(result[1]) if len(result) == 2 and not isinstance(result[0], dict) else None


def wait_for_a_scrape(url: str, *, limit: float = 20) -> None:
    """Until every target was scraped after now: what they counted so far is in Prometheus."""
    since = time.time()
    deadline = time.monotonic() + limit
    while (query(url, "min(timestamp(up))") or 0) <= since:
        assert time.monotonic() < deadline, "no scrape within the limit"
        time.sleep(0.2)
