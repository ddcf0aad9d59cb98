"""The Swoole example (examples/swoole/) as a service under test: the `Service` of service.py —
real sshd per host, nginx per balancer, the real CLI — with releases that are copies of the
example's server.php and app.php plus a RELEASE file. The inventory's app.start runs each colour
as a daemonized Swoole master on the host's address and the colour's port, its pid file and log
under the app root; the reload keys (signals, timeouts, worker patterns) and the health check are
the example inventory's own. Teardown stops only the masters this service started."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.service import Service

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "swoole"
EXAMPLE_INVENTORY: dict[str, Any] = yaml.safe_load((EXAMPLE / "inventory.yml").read_text())
# taken from the example as they are: what tells a reload which processes to replace and how
EXAMPLE_APP_KEYS = ("reload_signal", "task_reload_signal", "reload_timeout", "server_mode",
                    "worker_pattern", "task_worker_pattern", "stop_timeout")
PHP = shutil.which("php") or "/usr/bin/php"
WORKERS, TASK_WORKERS = 2, 1  # per instance: 2 CPUs run four instances at once


def require_swoole() -> None:
    """Skip the calling test module when PHP with the Swoole extension is not installed."""
    try:
        result = subprocess.run([PHP, "--ri", "swoole"], capture_output=True, text=True,
                                timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"Swoole tests need PHP with the swoole extension: {exc}",
                    allow_module_level=True)
    if result.returncode != 0:
        said = (result.stdout + result.stderr).strip().splitlines()
        pytest.skip("Swoole tests need PHP with the swoole extension: `php --ri swoole` exited "
                    f"{result.returncode}" + (f" ({said[0]})" if said else ""),
                    allow_module_level=True)


class SwooleService(Service):
    def __post_init__(self) -> None:
        super().__post_init__()
        example_app = EXAMPLE_INVENTORY["app"]
        self.data["app"] = {
            "root": self.data["app"]["root"],
            # the same variables the example's unit gets from its environment file, inline
            "start": "COLOUR={{ colour }} SHOP_ADDRESS={{ address }} SHOP_PORT={{ port }} "
                     "SHOP_PID_FILE={{ app_root }}/{{ colour }}.pid "
                     "SHOP_LOG_FILE={{ app_root }}/{{ colour }}.log SHOP_DAEMONIZE=1 "
                     f"exec {shlex.quote(PHP)} {{{{ current_dir }}}}/server.php",
            "stop": 'kill -TERM "$(cat {{ app_root }}/{{ colour }}.pid)"',
            "status": 'kill -0 "$(cat {{ app_root }}/{{ colour }}.pid 2>/dev/null)" '
                      "2>/dev/null",
            "log": "tail -n 20 {{ app_root }}/{{ colour }}.log",
            "pid_file": "{{ app_root }}/{{ colour }}.pid",
            "env": {"SHOP_WORKER_NUM": str(WORKERS), "SHOP_TASK_WORKER_NUM": str(TASK_WORKERS)},
            "start_timeout": 30,
            **{key: example_app[key] for key in EXAMPLE_APP_KEYS},
        }
        self.data["health"] = {**self.data["health"], **EXAMPLE_INVENTORY["health"]}

    def add_user_process(self) -> None:
        """Colours started from now on also run the example's addProcess() user process."""
        self.data["app"]["env"]["SHOP_HEARTBEAT"] = "1"

    def release(self, name: str, *, fail_health: bool = False, crash: bool = False,
                slow_start: float = 0) -> Path:
        """A copy of the example plus a RELEASE file; `crash`: app.php does not parse, so every
        worker dies at start (the master stays up and answers no request)."""
        if fail_health or slow_start:
            raise ValueError("the Swoole example has no failing-health or slow-start switch")
        path = self.root / "releases" / name
        path.mkdir(parents=True, exist_ok=True)
        for source in ("server.php", "app.php"):
            shutil.copyfile(EXAMPLE / source, path / source)
        if crash:
            with (path / "app.php").open("a") as handle:
                handle.write("\nfunction broken( {\n")
        (path / "RELEASE").write_text(name + "\n")
        return path

    def log(self, host: str, colour: str) -> str:
        with contextlib.suppress(FileNotFoundError):
            return (self.app_root(host) / f"{colour}.log").read_text(errors="replace")
        return ""

    def close(self) -> None:
        """SIGTERM to every master this service started — a pid file under its app roots naming
        a live Swoole process — then wait for them to exit (Swoole removes its pid file first,
        so the pids are read once, before signalling)."""
        masters = [pid for host in self.app_hosts for colour in ("blue", "green")
                   if (pid := self.master_pid(host, colour)) and _is_swoole_master(pid)]
        for pid in masters:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for pid in masters:
            while running(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        for server in self.nginx.values():
            server.stop()


def _is_swoole_master(pid: int) -> bool:
    """The process is one of ours: renamed by server.php, or not yet (still `php …server.php`)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return bool(re.match(r"shop-\w+: master", args)) or "server.php" in args


def running(pid: int) -> bool:
    """The process exists and is not a zombie (an exited daemon waits there until init reaps
    it, which can take a second or more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def process_args() -> dict[int, tuple[int, str]]:
    """Every process on the machine: pid → (ppid, command line as `ps -o args=` shows it), the
    view bluegreen's reload has of a host."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,args="], capture_output=True, text=True,
                         check=True).stdout
    table = {}
    for line in out.splitlines():
        fields = line.split(None, 2)
        if len(fields) >= 2:
            table[int(fields[0])] = (int(fields[1]), fields[2].strip() if len(fields) > 2 else "")
    return table


def descendants(master: int) -> dict[int, str]:
    """The master's descendants: pid → command line."""
    table = process_args()
    found: dict[int, str] = {}
    frontier = {master}
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier}
        found.update({pid: table[pid][1] for pid in frontier})
    return found
