"""Secrets reach the app's start command through its environment and nowhere else: not in any
process's command line on the host while the start runs, not in bluegreen's output."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import run_cli
from tests.integration.service import Service

SECRET = "s3cr3t-$(id)-'quoted' value"


def command_lines_containing(needle: bytes) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline:
                found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def test_a_secret_never_appears_in_a_command_line_or_the_output(service: Service,
                                                                 tmp_path: Path) -> None:
    start = service.data["app"]["start"]
    inventory = service.inventory(
        secrets={"SHOP_TOKEN": {"env": "BG_TEST_SHOP_TOKEN"}},
        app={"start": 'printf %s "$SHOP_TOKEN" | sha256sum > {{ app_root }}/token.sum && '
                      "sleep 1 && " + start})
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:  # bounded: at most 30 s
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            seen.extend(command_lines_containing(b"s3cr3t"))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result: Any = run_cli("-i", str(inventory), "deploy", "--source",
                              str(service.release("v1")), "--release", "v1",
                              env={"BG_TEST_SHOP_TOKEN": SECRET})
    finally:
        done.set()
        watcher.join(timeout=40)
    assert result.returncode == 0, result.stderr
    assert seen == []
    assert "s3cr3t" not in result.stdout + result.stderr
    expected = hashlib.sha256(SECRET.encode()).hexdigest()
    for host in service.app_hosts:  # the app got it, byte for byte
        assert (service.app_root(host) / "token.sum").read_text().split()[0] == expected
    plan = run_cli("-i", str(inventory), "deploy", "--dry-run", "--source",
                   str(service.release("v2")), "--release", "v2",
                   env={"BG_TEST_SHOP_TOKEN": SECRET})
    assert plan.returncode == 0 and "SHOP_TOKEN=***" in plan.stdout
    assert "s3cr3t" not in plan.stdout + plan.stderr


def test_a_secret_the_app_echoes_is_masked_in_errors_json_and_history(service: Service) -> None:
    start = service.data["app"]["start"]
    inventory = service.inventory(
        secrets={"SHOP_TOKEN": {"env": "BG_TEST_SHOP_TOKEN"}},
        app={"start": 'echo "connecting with $SHOP_TOKEN" && false && ' + start})
    for mode in ([], ["--json"]):
        result = run_cli("-i", str(inventory), *mode, "deploy", "--source",
                         str(service.release("v1")), "--release", "v1",
                         env={"BG_TEST_SHOP_TOKEN": SECRET})
        assert result.returncode == 5, result.stderr
        assert "connecting with ***" in result.stdout + result.stderr
        assert "s3cr3t" not in result.stdout + result.stderr
    history = (service.root / "state-lb1" / "history.jsonl").read_text()
    assert "s3cr3t" not in history
