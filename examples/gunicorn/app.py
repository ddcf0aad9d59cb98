"""A small WSGI app for the bluegreen demo and tests. It serves the release named in the RELEASE
file next to it, so two colours running two releases answer differently.

Routes: ``/`` (the release, also in the X-Release header), ``/health``, ``/slow?seconds=N`` (a
long-lived response, for drain tests). A file named FAIL_HEALTH next to it — or at the path in
the FAIL_HEALTH_FILE environment variable, e.g. under one host's app root — makes /health answer
500; a file named CRASH makes the app fail at start-up; a file named ERROR_EVERY holding N makes
every Nth request to ``/`` of each worker answer 500 (a release that fails 1/N of its requests),
and one named ERROR_FIRST holding N makes the first N requests to ``/`` of each worker answer
500 (a release that fails while it warms up, then recovers)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import parse_qs

HERE = Path(__file__).resolve().parent
RELEASE = (HERE / "RELEASE").read_text().strip() if (HERE / "RELEASE").exists() else "unknown"
COLOUR = os.environ.get("BLUEGREEN_COLOUR", "?")
STARTED = time.time()

if (HERE / "CRASH").exists():
    raise RuntimeError("CRASH file present: refusing to start (simulated broken release)")
ERROR_EVERY = int((HERE / "ERROR_EVERY").read_text()) if (HERE / "ERROR_EVERY").exists() else 0
ERROR_FIRST = int((HERE / "ERROR_FIRST").read_text()) if (HERE / "ERROR_FIRST").exists() else 0
served = 0


def app(environ: dict, start_response):  # type: ignore[no-untyped-def]
    global served
    path = environ.get("PATH_INFO", "/")
    status, body = "200 OK", f"release {RELEASE} ({COLOUR}) pid {os.getpid()}\n"
    if path == "/" and (ERROR_EVERY or ERROR_FIRST):
        served += 1
        if (ERROR_EVERY and served % ERROR_EVERY == 0) or served <= ERROR_FIRST:
            status, body = "500 Internal Server Error", f"simulated error in {RELEASE}\n"
    if path == "/health":
        fail_file = os.environ.get("FAIL_HEALTH_FILE")
        if (HERE / "FAIL_HEALTH").exists() or (fail_file and Path(fail_file).exists()):
            status, body = "500 Internal Server Error", f"unhealthy release {RELEASE}\n"
        else:
            body = f"ok release {RELEASE} ({COLOUR}) started {STARTED:.0f}\n"
    elif path == "/slow":
        seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("seconds", ["2"])[0])
        time.sleep(min(seconds, 60))
        body = f"slow response from release {RELEASE} ({COLOUR})\n"
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data))),
                            ("X-Release", RELEASE)])
    return [data]
