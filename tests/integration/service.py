"""A service under test on the loopback fleet: its own nginx (a child process of the test, on
lb hosts' addresses), per-host app roots, releases of the demo app, and an inventory that deploys
them with gunicorn through the real sshd hosts. Teardown stops only what this service started."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from bluegreen.balancer.nginx import LOG_FORMAT
from tests.conftest import fleet_inventory, host_entry, run_cli, write_inventory
from tests.fleet import Fleet, free_port, wait_for_port

DEMO_APP = Path(__file__).resolve().parents[2] / "examples" / "gunicorn" / "app.py"
GUNICORN = Path(sys.executable).parent / "gunicorn"


@dataclass
class BalancerServer:
    """A balancer process the test started (and so may stop), listening on address:port."""

    host: str
    address: str
    port: int
    prefix: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/"

    def _stop(self, stop_signal: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(stop_signal)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@dataclass
class Nginx(BalancerServer):
    @property
    def managed_file(self) -> Path:
        return self.prefix / "conf.d" / "shop-upstream.conf"

    @property
    def access_log(self) -> Path:
        """The requests through the balancer, in the format a canary's analysis reads."""
        return self.prefix / "logs" / "upstream.log"

    def start(self, *, upstream: str = "shop", keepalive_timeout: str | None = None,
              sticky_route: bool = False) -> None:
        """`sticky_route`: proxy_pass names the upstream through canary.sticky's variable."""
        (self.prefix / "conf.d").mkdir(parents=True)
        (self.prefix / "logs").mkdir()
        (self.prefix / "nginx.conf").write_text(
            f"pid {self.prefix}/nginx.pid;\nerror_log {self.prefix}/logs/error.log;\n"
            "worker_processes 1;\nevents { worker_connections 256; }\n"
            f"http {{\n  {LOG_FORMAT}\n  access_log {self.access_log} bluegreen;\n"
            + (f"  keepalive_timeout {keepalive_timeout};\n" if keepalive_timeout else "") +
            f"  include {self.prefix}/conf.d/*.conf;\n"
            f"  server {{\n    listen {self.address}:{self.port};\n"
            f"    location / {{ proxy_pass http://{'$bluegreen_' if sticky_route else ''}"
            f"{upstream}; proxy_http_version 1.1;\n"
            '      proxy_set_header Connection ""; }\n  }\n}\n')
        self.managed_file.write_text(
            f"upstream {upstream} {{ server 127.0.0.1:9 down; }}\n"
            + (f"map $http_x_canary $bluegreen_{upstream} {{ default {upstream}; }}\n"
               if sticky_route else ""))
        log = (self.prefix / "logs" / "stderr.log").open("ab")
        self.process = subprocess.Popen(
            ["nginx", "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"),
             "-g", "daemon off;"], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_for_port(self.address, self.port)

    def stop(self) -> None:
        self._stop(signal.SIGQUIT)  # graceful shutdown

    def balancer_override(self, state_dir: Path) -> dict[str, str]:
        return {"managed_file": str(self.managed_file),
                "main_config": str(self.prefix / "nginx.conf"), "prefix": str(self.prefix),
                "pid_file": str(self.prefix / "nginx.pid"), "state_dir": str(state_dir)}


@dataclass
class HAProxy(BalancerServer):
    """HAProxy in master-worker mode, a child process of the test (the master stays in the
    foreground), with an admin socket for the runtime API."""

    @property
    def managed_file(self) -> Path:
        return self.prefix / "shop-backend.cfg"

    metrics_port: int = 0  # HAProxy's own Prometheus exporter, at /metrics

    @property
    def admin_socket(self) -> Path:
        return self.prefix / "admin.sock"

    @property
    def metrics_target(self) -> str:
        return f"{self.address}:{self.metrics_port}"

    def start(self, *, upstream: str = "shop", keepalive_timeout: str | None = None,
              sticky_route: bool = False) -> None:
        self.prefix.mkdir(parents=True)
        self.metrics_port = free_port(self.address)
        (self.prefix / "haproxy.cfg").write_text(
            "global\n    master-worker\n"
            f"    stats socket {self.admin_socket} mode 600 level admin\n"
            "defaults\n    mode http\n    timeout connect 5s\n    timeout client 60s\n"
            "    timeout server 60s\n    timeout tunnel 1h\n"
            + ("    option http-server-close\n" if keepalive_timeout == "0" else "")
            + f"frontend web\n    bind {self.address}:{self.port}\n"
            f"    default_backend {upstream}\n"
            f"frontend metrics\n    bind {self.metrics_target}\n"
            "    http-request use-service prometheus-exporter if { path /metrics }\n")
        self.managed_file.write_text(
            f"backend {upstream}\n    server placeholder 127.0.0.1:9 disabled\n")
        log = (self.prefix / "stderr.log").open("ab")
        self.process = subprocess.Popen(
            ["haproxy", "-W", "-f", str(self.prefix / "haproxy.cfg"), "-f",
             str(self.managed_file), "-p", str(self.prefix / "haproxy.pid")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_for_port(self.address, self.port)

    def stop(self) -> None:
        self._stop(signal.SIGTERM)

    def balancer_override(self, state_dir: Path) -> dict[str, str]:
        return {"kind": "haproxy", "managed_file": str(self.managed_file),
                "main_config": str(self.prefix / "haproxy.cfg"),
                "pid_file": str(self.prefix / "haproxy.pid"), "state_dir": str(state_dir),
                "admin_socket": str(self.admin_socket)}

    def runtime(self, command: str) -> str:
        return subprocess.run(["socat", "stdio", f"UNIX-CONNECT:{self.admin_socket}"],
                              input=command + "\n", capture_output=True, text=True,
                              check=True).stdout


@dataclass
class Caddy(BalancerServer):
    """Caddy with a Caddyfile that imports the managed snippet; its admin API on the balancer
    host's address, its own storage under the prefix."""

    admin_port: int = 0

    @property
    def managed_file(self) -> Path:
        return self.prefix / "shop-upstream.caddy"

    @property
    def admin_address(self) -> str:
        return f"{self.address}:{self.admin_port}"

    def start(self, *, upstream: str = "shop", keepalive_timeout: str | None = None,
              sticky_route: bool = False) -> None:
        self.prefix.mkdir(parents=True)
        self.admin_port = free_port(self.address)
        (self.prefix / "Caddyfile").write_text(
            "{\n"
            f"\tadmin {self.admin_address}\n"
            "\tauto_https off\n"
            f"\tstorage file_system {self.prefix}/data\n"
            "}\n"
            f"import {self.managed_file}\n"
            f"http://{self.address}:{self.port} {{\n"
            f"\tbind {self.address}\n"
            f"\treverse_proxy {{\n\t\timport {upstream}_upstream\n\t}}\n"
            "}\n")
        self.managed_file.write_text(f"({upstream}_upstream) {{\n\tto 127.0.0.1:9\n}}\n")
        log = (self.prefix / "stderr.log").open("ab")
        home = {"HOME": str(self.prefix), "XDG_CONFIG_HOME": str(self.prefix / "config"),
                "XDG_DATA_HOME": str(self.prefix / "data")}
        self.process = subprocess.Popen(
            ["caddy", "run", "--config", str(self.prefix / "Caddyfile"), "--adapter",
             "caddyfile"], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            env={**os.environ, **home})
        wait_for_port(self.address, self.port)

    def stop(self) -> None:
        self._stop(signal.SIGTERM)

    def balancer_override(self, state_dir: Path) -> dict[str, str]:
        return {"kind": "caddy", "managed_file": str(self.managed_file),
                "main_config": str(self.prefix / "Caddyfile"),
                "admin_address": self.admin_address, "state_dir": str(state_dir)}


@dataclass
class Service:
    fleet: Fleet
    root: Path
    app_hosts: list[str]
    balancer_hosts: list[str]
    nginx: dict[str, Nginx | HAProxy | Caddy] = field(default_factory=dict)  # host → server
    ports: dict[str, int] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    nginx_keepalive_timeout: str | None = None
    balancer_kinds: dict[str, str] = field(default_factory=dict)  # host → nginx|haproxy|caddy
    sticky_route: bool = False  # nginx's proxy_pass goes through canary.sticky's variable
    overrides: dict[str, Any] = field(default_factory=dict)  # applied by every inventory()

    def __post_init__(self) -> None:
        self.ports = {}
        for colour in ("blue", "green"):  # one after the other: the second avoids the first
            self.ports[colour] = self._free_app_port()
        for name in self.balancer_hosts:
            address = self.fleet[name].address
            kind = self.balancer_kinds.get(name, "nginx")
            server_class = {"haproxy": HAProxy, "caddy": Caddy}.get(kind, Nginx)
            server: Nginx | HAProxy | Caddy = server_class(
                name, address, free_port(address), self.root / f"{kind}-{name}")
            server.start(keepalive_timeout=self.nginx_keepalive_timeout,
                         sticky_route=self.sticky_route)
            self.nginx[name] = server
        balancer_entries = [
            host_entry(self.fleet, name, balancer=self.nginx[name].balancer_override(
                self.root / f"state-{name}")) for name in self.balancer_hosts]
        app_entries = [host_entry(self.fleet, name, app_root=str(self.app_root(name)))
                       for name in self.app_hosts]
        self.data = fleet_inventory(self.fleet, app=self.app_hosts, balancer=self.balancer_hosts)
        self.data["hosts"] = {"app": app_entries, "balancer": balancer_entries}
        gunicorn = shlex.quote(str(GUNICORN))
        self.data.update({
            "colours": {"blue": {"port": self.ports["blue"]},
                        "green": {"port": self.ports["green"]}},
            "release": {"keep": 3},
            "app": {
                "root": str(self.root / "unused-root"),
                "start": f"{gunicorn} --daemon --workers 2 --graceful-timeout 5 "
                         "--bind {{ address }}:{{ port }} --pid {{ app_root }}/{{ colour }}.pid "
                         "--log-file {{ app_root }}/{{ colour }}.log --chdir {{ current_dir }} "
                         "app:app",
                "stop": 'kill -TERM "$(cat {{ app_root }}/{{ colour }}.pid)"',
                "status": 'kill -0 "$(cat {{ app_root }}/{{ colour }}.pid 2>/dev/null)" '
                          "2>/dev/null",
                "log": "tail -n 20 {{ app_root }}/{{ colour }}.log",
                "pid_file": "{{ app_root }}/{{ colour }}.pid",
                "start_timeout": 30,
            },
            "health": {"path": "/health", "expect_body": "ok", "interval": 0.1, "retries": 60,
                       "successes": 1},
            "balancer": {"kind": "nginx", "managed_file": "/nonexistent/overridden.conf",
                         "reload_timeout": 10},
            "verify": {"urls": [n.url for n in self.nginx.values()],
                       "expect_body": "release {{ release }}", "attempts": 20},
            "lock": {"stale_after": 30},
        })

    def _free_app_port(self) -> int:
        while True:
            port = free_port(self.fleet[self.app_hosts[0]].address)
            taken = self.ports.values()
            if port not in taken and all(_port_free(self.fleet[h].address, port)
                                         for h in self.app_hosts):
                return port

    def balancer_validate_command(self, host: str) -> list[str]:
        server = self.nginx[host]
        if isinstance(server, HAProxy):
            return ["haproxy", "-c", "-q", "-f", str(server.prefix / "haproxy.cfg"), "-f",
                    str(server.managed_file)]
        return ["nginx", "-p", str(server.prefix), "-c", str(server.prefix / "nginx.conf"),
                "-t", "-q"]

    def app_root(self, host: str) -> Path:
        return self.root / f"srv-{host}"

    def release(self, name: str, *, fail_health: bool = False, crash: bool = False,
                slow_start: float = 0, error_every: int = 0, error_first: int = 0) -> Path:
        path = self.root / "releases" / name
        path.mkdir(parents=True, exist_ok=True)
        source = DEMO_APP.read_text()
        if slow_start:  # the worker imports the app this much later
            source += f"\nimport time as _time\n\n_time.sleep({slow_start})\n"
        (path / "app.py").write_text(source)
        (path / "RELEASE").write_text(name + "\n")
        if fail_health:
            (path / "FAIL_HEALTH").write_text("")
        if crash:
            (path / "CRASH").write_text("")
        if error_every:
            (path / "ERROR_EVERY").write_text(f"{error_every}\n")
        if error_first:
            (path / "ERROR_FIRST").write_text(f"{error_first}\n")
        return path

    def inventory(self, **changes: Any) -> Path:
        data = json.loads(json.dumps(self.data))
        for key, value in [*self.overrides.items(), *changes.items()]:
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key].update(value)
            else:
                data[key] = value
        return write_inventory(self.root / "inventory.yml", data)

    def cli(self, *args: str, inventory: Path | None = None, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
        path = inventory or self.inventory()
        return run_cli("-i", str(path), *args, timeout=timeout)

    def deploy(self, name: str, *extra: str, **release_options: Any
               ) -> subprocess.CompletedProcess[str]:
        source = self.release(name, **release_options)
        return self.cli("deploy", "--source", str(source), "--release", name, *extra)

    def fetch(self, balancer: str | None = None, path: str = "") -> str:
        server = self.nginx[balancer or self.balancer_hosts[0]]
        with urllib.request.urlopen(server.url + path, timeout=5) as response:
            return str(response.read().decode())

    def master_pid(self, host: str, colour: str) -> int | None:
        pid_file = self.app_root(host) / f"{colour}.pid"
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(pid_file.read_text().strip())
        return None

    def state(self, balancer: str | None = None) -> dict[str, Any]:
        name = balancer or self.balancer_hosts[0]
        return dict(json.loads((self.root / f"state-{name}" / "state.json").read_text()))

    def history(self, balancer: str | None = None) -> list[dict[str, Any]]:
        name = balancer or self.balancer_hosts[0]
        path = self.root / f"state-{name}" / "history.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def with_balancer_override(self, index: int, **values: Any) -> Path:
        """The inventory with extra per-host `balancer:` overrides on balancer `index`."""
        path = self.inventory()
        data = yaml.safe_load(path.read_text())
        data["hosts"]["balancer"][index]["balancer"].update(values)
        return write_inventory(path, data)

    def lock_dir(self, balancer: str | None = None) -> Path:
        return self.root / f"state-{balancer or self.balancer_hosts[0]}" / "lock"

    def close(self) -> None:
        for host in self.app_hosts:
            for colour in ("blue", "green"):
                pid = self.master_pid(host, colour)
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for host in self.app_hosts:
            for colour in ("blue", "green"):
                pid = self.master_pid(host, colour)
                while pid and process_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
        for server in self.nginx.values():
            server.stop()


def steady_load(url: str, stop: threading.Event, results: dict[str, Any]) -> None:
    """GET `url` on a new connection each time until `stop`, at most 3 000 requests and 30 s;
    `results` counts ok and failed requests and collects the distinct bodies' first lines."""
    if not url.startswith("http://127."):
        raise ValueError(f"load only goes to loopback addresses, not {url}")
    deadline = time.monotonic() + 30
    for _ in range(3000):
        if stop.is_set() or time.monotonic() > deadline:
            return
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                first = response.read().decode().split(" pid ", 1)[0]
            results["ok"] += 1
            results["bodies"].add(first)
        except (urllib.error.URLError, OSError) as exc:
            results["failed"] += 1
            results["errors"].append(repr(exc))
        time.sleep(0.005)


class LoadDuring:
    """`with LoadDuring(url) as load:` keeps bounded steady load on `url` for the block's span."""

    def __init__(self, url: str):
        self.url = url
        self.stop = threading.Event()
        self.results: dict[str, Any] = {"ok": 0, "failed": 0, "bodies": set(), "errors": []}
        self.thread = threading.Thread(target=steady_load, args=(url, self.stop, self.results))

    def __enter__(self) -> LoadDuring:
        self.thread.start()
        deadline = time.monotonic() + 10
        while self.results["ok"] + self.results["failed"] < 20 and time.monotonic() < deadline:
            time.sleep(0.01)  # the load runs before the operation starts
        return self

    def wait_for_body(self, first_line: str, timeout: float = 30) -> None:
        """Until the load has been served `first_line` (it spans the flip), or the load ended."""
        deadline = time.monotonic() + timeout
        while (first_line not in self.results["bodies"] and self.thread.is_alive()
               and time.monotonic() < deadline):
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=45)


ServiceT = TypeVar("ServiceT", bound="Service")


def serve(service: ServiceT) -> Iterator[ServiceT]:
    """A fixture's body: the service for the test, then its teardown however the test ended."""
    try:
        yield service
    finally:
        service.close()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _port_free(address: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


BALANCER_SETUPS: dict[str, tuple[list[str], dict[str, str], dict[str, Any]]] = {
    # name: (balancer hosts, their kinds, inventory overrides) — for the benchmarks
    "nginx": (["lb1"], {}, {}),
    "haproxy-reload": (["lb1"], {"lb1": "haproxy"}, {}),
    "haproxy-runtime": (["lb1"], {"lb1": "haproxy"},
                        {"balancer": {"flip": "runtime", "drain_timeout": 5}}),
    "two-nginx": (["lb1", "lb2"], {}, {}),
    "caddy": (["lb1"], {"lb1": "caddy"}, {}),
}


def balanced_service(fleet: Fleet, root: Path, setup: str, **options: Any) -> Service:
    """Two app hosts behind `setup`, with v1 live on blue (and, for runtime flips, both colours
    already known to HAProxy, so the measured flips go through the runtime API)."""
    hosts, kinds, overrides = BALANCER_SETUPS[setup]
    service = Service(fleet, root, ["app1", "app2"], hosts, balancer_kinds=kinds,
                      overrides=overrides, **options)
    releases = ["v1", "v0", "v1"] if setup == "haproxy-runtime" else ["v1"]
    for release in releases:
        result = service.deploy(release)
        if result.returncode != 0:
            service.close()
            raise RuntimeError(f"deploy {release} failed:\n{result.stderr}")
    return service
