"""The WebSocket variant of the Swoole example (examples/swoole/websocket/) as a service under
test — the `SwooleService` set-up (real sshd per host, the real CLI, daemonized Swoole masters
on the hosts' addresses) running ws-server.php, behind an nginx that proxies WebSockets — and
a pool of reconnecting WebSocket clients that count what they see: connections, close codes,
messages sent, echoed and resent."""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

from tests.integration.service import Nginx
from tests.integration.swoole import EXAMPLE, SwooleService

WS_EXAMPLE = EXAMPLE / "websocket"
# app.drain as examples/swoole/websocket/README.md gives it, with the test's pid file
DRAIN = 'kill -s URG "$(cat {{ app_root }}/{{ colour }}.pid)"'
DRAIN_BY_PID = "kill -s URG {{ pid }}"  # the same, the master's pid read from app.pid_file
ABNORMAL = 1006  # RFC 6455: the connection closed without a close frame (never sent on the wire)


class WebSocketService(SwooleService):
    """Each colour runs ws-server.php; nginx proxies WebSockets (reconfigured and reloaded right
    after the base class started it); HAProxy in HTTP mode tunnels them as it is."""

    def __post_init__(self) -> None:
        super().__post_init__()
        start = self.data["app"]["start"]
        assert "/server.php" in start, start
        self.data["app"]["start"] = start.replace("/server.php", "/ws-server.php")
        self.data["app"]["env"].pop("SHOP_TASK_WORKER_NUM", None)  # no task workers here
        for server in self.nginx.values():
            if isinstance(server, Nginx):
                proxy_websockets(server, self.balancer_validate_command(server.host))

    def release(self, name: str, *, fail_health: bool = False, crash: bool = False,
                slow_start: float = 0) -> Path:
        if fail_health or slow_start or crash:
            raise ValueError("the WebSocket example has no failure switches")
        path = self.root / "releases" / name
        path.mkdir(parents=True, exist_ok=True)
        for source in ("ws-server.php", "ws-app.php"):
            (path / source).write_bytes((WS_EXAMPLE / source).read_bytes())
        (path / "RELEASE").write_text(name + "\n")
        return path

    @property
    def ws_url(self) -> str:
        """The WebSocket URL through the first balancer."""
        return self.ws_url_through(self.balancer_hosts[0])

    def ws_url_through(self, balancer: str) -> str:
        server = self.nginx[balancer]
        return f"ws://{server.address}:{server.port}/ws"

    def instance_ws_url(self, host: str, colour: str) -> str:
        return f"ws://{self.fleet[host].address}:{self.ports[colour]}/ws"


def proxy_websockets(server: Nginx, validate: list[str]) -> None:
    """Rewrite the test nginx's configuration as examples/swoole/websocket/README.md says
    (HTTP/1.1 to the upstream, Upgrade and Connection passed on, long read timeouts), validate
    it, reload (SIGHUP to the master this test started) and wait for the new workers."""
    prefix = server.prefix
    (prefix / "nginx.conf").write_text(
        f"pid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log;\n"
        "worker_processes 1;\nevents { worker_connections 512; }\n"
        "http {\n  access_log off;\n"
        "  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }\n"
        f"  include {prefix}/conf.d/*.conf;\n"
        f"  server {{\n    listen {server.address}:{server.port};\n"
        '    location = /__websocket_proxy { return 200 "websocket proxy\\n"; }\n'
        "    location / {\n      proxy_pass http://shop;\n      proxy_http_version 1.1;\n"
        "      proxy_set_header Upgrade $http_upgrade;\n"
        "      proxy_set_header Connection $connection_upgrade;\n"
        "      proxy_read_timeout 1h;\n      proxy_send_timeout 1h;\n    }\n  }\n}\n")
    subprocess.run(validate, check=True, capture_output=True, timeout=30)
    assert server.process is not None and server.process.poll() is None
    server.process.send_signal(1)  # SIGHUP: reload
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(f"{server.url}__websocket_proxy", timeout=2) as response:
                if response.read() == b"websocket proxy\n":
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nginx on {server.address}:{server.port} did not load the "
                               "WebSocket configuration")
        time.sleep(0.05)


@dataclass
class Close:
    at: float  # time.monotonic()
    code: int  # 1006 (ABNORMAL) when no close frame came
    reason: str
    where: str  # the connection's "<release> (<colour>)"


@dataclass
class WsClient:
    """One client, run in its own thread: connect, then send {"seq": n} every `interval` and wait
    for its echo. When the connection closes it records the close code, reconnects with
    exponential backoff and full jitter, and resends the message whose echo it had not seen
    (it resumes after the last message the server processed). Bounded by `limit` seconds and
    `max_messages`."""

    url: str
    interval: float = 0.1
    limit: float = 120.0
    max_messages: int = 5000
    stop: threading.Event = field(default_factory=threading.Event)
    connects: list[tuple[float, str]] = field(default_factory=list)  # (time, where)
    closes: list[Close] = field(default_factory=list)
    connect_failures: list[str] = field(default_factory=list)
    echoes: Counter[str] = field(default_factory=Counter)  # where → echoes received
    sent: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)
    resent: int = 0
    errors: list[str] = field(default_factory=list)
    where: str | None = None  # where the current connection goes, None while disconnected
    pending: int | None = None  # sent, echo not seen yet: resent first after a reconnect

    def __post_init__(self) -> None:
        if not self.url.startswith("ws://127."):
            raise ValueError(f"clients only go to loopback addresses, not {self.url}")
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def lost(self) -> int:
        """Messages sent whose echo never came (none once a resend was echoed)."""
        return len(self.sent - self.acked)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        failures = 0  # connection attempts failed in a row
        try:
            for _ in range(200):  # connections, each until it closes
                # full jitter before each (re)connection: anywhere up to 0.25 s, then up to
                # 0.5 s, 1 s, … 4 s after failed attempts
                time.sleep(random.uniform(0, min(4.0, 0.25 * 2 ** failures)))
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    with connect(self.url, open_timeout=5, close_timeout=2, compression=None,
                                 proxy=None, ping_interval=None) as ws:
                        hello = json.loads(ws.recv(timeout=5))
                        self.where = f"{hello['release']} ({hello['colour']})"
                        self.connects.append((time.monotonic(), self.where))
                        failures = 0
                        self._talk(ws, deadline)
                except ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd else ABNORMAL
                    reason = closed.rcvd.reason if closed.rcvd else ""
                    self.closes.append(Close(time.monotonic(), code, reason, self.where or "?"))
                except (OSError, TimeoutError, WebSocketException, ValueError, KeyError) as exc:
                    self.connect_failures.append(repr(exc))
                    failures += 1
                self.where = None
        except Exception as exc:  # recorded: the test asserts there are no errors
            self.errors.append(f"client crashed: {exc!r}")
        finally:
            self.where = None

    def _talk(self, ws: ClientConnection, deadline: float) -> None:
        """Send numbered messages, each after the previous one's echo, until told to stop (then
        close with 1000) or the connection closes (ConnectionClosed). The first message is the
        one whose echo the last connection did not deliver, if any."""
        while not self.stop.is_set() and time.monotonic() < deadline:
            if len(self.sent) >= self.max_messages:
                return
            seq = self.pending if self.pending is not None else len(self.sent) + 1
            if seq in self.sent:
                self.resent += 1
            self.pending = seq
            self.sent.add(seq)
            ws.send(json.dumps({"seq": seq}))
            try:
                reply = json.loads(ws.recv(timeout=5))
            except TimeoutError:
                self.errors.append(f"no echo of {seq} within 5 s")
                return
            if reply.get("type") != "echo" or json.loads(reply["data"]) != {"seq": seq}:
                self.errors.append(f"expected the echo of {seq}, got {reply}")
            self.acked.add(seq)
            self.pending = None
            self.echoes[f"{reply['release']} ({reply['colour']})"] += 1
            try:  # waits `interval`, but sees a close frame at once
                extra = ws.recv(timeout=self.interval)
            except TimeoutError:
                continue
            self.errors.append(f"unexpected message {extra!r}")


class Clients:
    """`with Clients(url, 20) as clients:` — 20 WsClients running for the block's span."""

    def __init__(self, url: str, count: int, **options: Any):
        self.all = [WsClient(url, **options) for _ in range(count)]

    def __enter__(self) -> Clients:
        for client in self.all:
            client.thread.start()
        self.wait(lambda c: c.echoes.total() >= 3, "all connected and talking")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for client in self.all:
            client.stop.set()
        for client in self.all:
            client.thread.join(timeout=15)

    def wait(self, condition: Callable[[WsClient], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not all(condition(c) for c in self.all):
            if time.monotonic() > deadline:
                raise AssertionError(f"not every client {what} within {timeout} s: "
                                     + "; ".join(self.describe(c) for c in self.all))
            time.sleep(0.02)

    def talking_to(self, where: str, *, echoes: int = 3, timeout: float = 30) -> None:
        """Until every client is connected to `where` and got `echoes` echoes from it."""
        self.wait(lambda c: c.where == where and c.echoes[where] >= echoes,
                  f"talking to {where}", timeout)

    def more_echoes(self, count: int, timeout: float = 30) -> None:
        """Until every client got `count` more echoes than now."""
        start = {id(c): c.echoes.total() for c in self.all}
        self.wait(lambda c: c.echoes.total() >= start[id(c)] + count, f"got {count} more echoes",
                  timeout)

    @staticmethod
    def describe(client: WsClient) -> str:
        return (f"where={client.where} connects={client.connects} "
                f"closes={[(c.code, c.where) for c in client.closes]} "
                f"echoes={dict(client.echoes)} failures={client.connect_failures[-3:]} "
                f"errors={client.errors[-3:]}")

    def close_codes(self) -> Counter[int]:
        return Counter(close.code for client in self.all for close in client.closes)

    @property
    def errors(self) -> list[str]:
        return [error for client in self.all for error in client.errors]

    @property
    def lost(self) -> int:
        return sum(client.lost for client in self.all)

    @property
    def resent(self) -> int:
        return sum(client.resent for client in self.all)

    @property
    def echoed(self) -> int:
        return sum(client.echoes.total() for client in self.all)
