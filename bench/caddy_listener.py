"""New connections reset by Caddy's config swaps, with and without the kernel's migration of a
closing listener's queued connections (`net.ipv4.tcp_migrate_req`).

On Linux, Caddy (2.6 and later) binds each new config's listener with SO_REUSEPORT beside the old
one, then closes the old one. A connection whose handshake the kernel had already queued on the
old listener, not yet accepted, is reset when that listener closes — unless
`net.ipv4.tcp_migrate_req` is 1 (Linux 5.14+), which moves it to another listener of the group.

Each run happens in a network namespace this script creates (its own loopback and its own
sysctl), so the machine's setting is never touched: Caddy serves a static response on
127.0.0.1 there, client threads open a new connection per request, and the config is swapped
through the admin API. Every loop is bounded in count and time.

    .venv/bin/python bench/caddy_listener.py [--swaps 300] [--clients 6]"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fleet import stop_process

ADMIN = "127.0.0.1:2019"
SERVED = ("127.0.0.1", 8080)
MAX_SECONDS = 120.0  # each run, whatever the counts


def config(body: str) -> bytes:
    return json.dumps({
        "admin": {"listen": ADMIN},
        "apps": {"http": {"servers": {"bench": {
            "listen": [f"{SERVED[0]}:{SERVED[1]}"],
            "routes": [{"handle": [{"handler": "static_response", "body": body}]}]}}}},
    }).encode()


def load(body: str) -> None:
    request = urllib.request.Request(f"http://{ADMIN}/load", data=config(body),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def inner(swaps: int, clients: int) -> None:
    """Inside the namespace: Caddy, the clients, the swaps; prints one JSON line."""
    work = Path(tempfile.mkdtemp(prefix="bluegreen-caddy-bench-"))
    (work / "caddy.json").write_bytes(config("a"))
    caddy = subprocess.Popen(["caddy", "run", "--config", str(work / "caddy.json")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "HOME": str(work), "XDG_DATA_HOME": str(work),
                                  "XDG_CONFIG_HOME": str(work)})
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                load("a")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        stop = threading.Event()
        counts = {"sent": 0, "failed": 0}
        errors: dict[str, int] = {}
        lock = threading.Lock()

        def client() -> None:
            sent = 0
            while not stop.is_set() and sent < 200_000:
                sent += 1
                error = None
                try:
                    connection = http.client.HTTPConnection(*SERVED, timeout=5)
                    connection.request("GET", "/")
                    connection.getresponse().read()
                    connection.close()
                except (OSError, http.client.HTTPException) as caught:
                    error = type(caught).__name__
                with lock:
                    counts["sent"] += 1
                    if error:
                        counts["failed"] += 1
                        errors[error] = errors.get(error, 0) + 1

        threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        done = 0
        for number in range(swaps):
            if time.monotonic() - started > MAX_SECONDS:
                break
            load("b" if number % 2 else "a")
            done += 1
            time.sleep(0.02)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        print(json.dumps({"swaps": done, **counts, "errors": errors,
                          "seconds": round(time.monotonic() - started, 1)}))
    finally:
        stop_process(caddy)
        shutil.rmtree(work, ignore_errors=True)


def in_namespace(migrate: int, swaps: int, clients: int) -> dict[str, object]:
    name = f"bgbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        run = ["ip", "netns", "exec", name]
        subprocess.run([*run, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run([*run, "sysctl", "-q", "-w", f"net.ipv4.tcp_migrate_req={migrate}"],
                       check=True)
        out = subprocess.run([*run, sys.executable, __file__, "--inner", "--swaps", str(swaps),
                              "--clients", str(clients)],
                             check=True, capture_output=True, text=True, timeout=300).stdout
        return dict(json.loads(out.strip().splitlines()[-1]))
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swaps", type=int, default=300)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.inner:
        inner(options.swaps, options.clients)
        return
    version = subprocess.run(["caddy", "version"], capture_output=True, text=True).stdout
    print(f"caddy {version.split()[0] if version else '?'}; kernel {os.uname().release}; "
          f"{options.swaps} config swaps per run, {options.clients} new-connection clients")
    for number in range(options.runs):
        for migrate in (0, 1):
            result = in_namespace(migrate, options.swaps, options.clients)
            print(f"run {number + 1}, tcp_migrate_req={migrate}: {result['failed']} failed of "
                  f"{result['sent']} in {result['swaps']} swaps ({result['seconds']} s) "
                  f"{result['errors'] or ''}", flush=True)


if __name__ == "__main__":
    main()
