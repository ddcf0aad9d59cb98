"""Progress as a person at a terminal sees it: the real CLI with its stderr on a pseudo-terminal
shows each host's upload (bytes and rate) and a ticking spinner for the phase under way; with
`--json`, or when stderr is not a terminal, none of it."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.integration.service import Service

RELEASE_MB = 24


def big_release(service: Service, name: str) -> Path:
    """A release with a large incompressible file, so its upload takes a while."""
    path = service.release(name)
    (path / "assets.bin").write_bytes(os.urandom(RELEASE_MB * 1_000_000))
    return path


def run_on_terminal(*args: str, timeout: float = 180, **extra_env: str) -> tuple[int, str, str]:
    """The CLI with stderr on a pseudo-terminal (stdout piped): exit code, stdout, and what the
    terminal received."""
    main, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")}
    env.update(TERM="xterm-256color", COLUMNS="160")
    env.pop("NO_COLOR", None)
    env.update(extra_env)
    process = subprocess.Popen([sys.executable, "-m", "bluegreen", *args], stdout=subprocess.PIPE,
                               stderr=terminal, stdin=subprocess.DEVNULL, env=env)
    os.close(terminal)
    received: list[bytes] = []

    def read_terminal() -> None:  # drained as it comes: a full terminal buffer blocks the CLI
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not chunk:
                return
            received.append(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        stdout, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    os.close(main)
    return process.returncode, stdout.decode(), b"".join(received).decode(errors="replace")


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_a_terminal_sees_upload_rates_per_host_and_a_phase_spinner(service: Service) -> None:
    inventory = str(service.inventory())
    code, stdout, terminal = run_on_terminal(
        "-i", inventory, "deploy", "--source", str(big_release(service, "v1")), "--release", "v1")
    assert code == 0, terminal
    shown = plain(terminal)
    rates = re.findall(r"(app[12]) upload v1\s+([\d.]+)/([\d.]+) MB, ([\d.]+) MB/s", shown)
    assert {host for host, *_ in rates} == {"app1", "app2"}, shown[-3000:]
    total = float(rates[0][2])
    assert RELEASE_MB * 0.95 < total < RELEASE_MB * 1.1  # the gzipped release: about its size
    assert all(float(rate) > 0 for *_, rate in rates)
    assert re.search(r"health-check 2 blue instance\(s\)\s+0:00:\d\d", shown), shown[-3000:]
    assert "uploaded release v1" in shown and "verify through 1 public URL(s)" in shown
    assert "deployed v1" in stdout or "v1" in stdout
    assert service.fetch().startswith("release v1 (blue)")


def test_no_progress_with_json_or_without_a_terminal(service: Service) -> None:
    inventory = str(service.inventory())
    code, stdout, terminal = run_on_terminal(
        "-i", inventory, "--json", "deploy", "--source", str(big_release(service, "v1")),
        "--release", "v1")
    assert code == 0, terminal
    assert "MB/s" not in terminal and "0:00:0" not in terminal
    assert '"data"' in stdout
    piped: Any = service.cli("deploy", "--source", str(big_release(service, "v2")),
                             "--release", "v2")
    assert piped.returncode == 0, piped.stderr
    assert "MB/s" not in piped.stderr and "\x1b[" not in piped.stderr
    assert "uploaded release v2" in piped.stderr


def test_no_color_is_honoured_on_a_terminal(service: Service) -> None:
    inventory = str(service.inventory())
    colour_codes = re.compile(r"\x1b\[(?:[0-9;]*;)?3[0-9](?:;[0-9;]*)?m")
    code, _, coloured = run_on_terminal("-i", inventory, "deploy", "--source",
                                        str(service.release("v1")), "--release", "v1")
    assert code == 0 and colour_codes.search(coloured), coloured[-2000:]
    for args, env in ((("--no-color", "rollback"), {}), (("rollback",), {"NO_COLOR": "1"})):
        # each rollback fails the same way (nothing to roll back to): only the colours differ
        code, _, shown = run_on_terminal("-i", inventory, *args, **env)
        assert code != 0 and "error" in shown
        assert not colour_codes.search(shown), (args, env, shown[-2000:])
