"""WebSockets through blue/green flips (examples/swoole/websocket/), by the real CLI on the
loopback fleet: two app hosts running ws-server.php behind an nginx that proxies WebSockets, and
20 reconnecting clients that count connections, close codes and messages. Skipped where PHP has
no Swoole."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.fleet import Fleet, free_port, wait_for_port
from tests.integration.service import serve
from tests.integration.swoole import require_swoole
from tests.integration.websocket import (
    DRAIN,
    DRAIN_BY_PID,
    WS_EXAMPLE,
    Clients,
    WebSocketService,
)

require_swoole()

CLIENTS = 20
DRAIN_TIMEOUT = 30  # retire --drain-timeout when app.drain is set: it must finish far below it
SHORT_DRAIN_TIMEOUT = 3  # retire --drain-timeout without app.drain: it waits all of it


@pytest.fixture
def ws(fleet: Fleet, tmp_path: Path) -> Iterator[WebSocketService]:
    """Two app hosts running the WebSocket example, one nginx balancer proxying WebSockets."""
    yield from serve(WebSocketService(fleet, tmp_path, ["app1", "app2"], ["lb1"]))


def ok(result: Any) -> None:
    assert result.returncode == 0, (result.stdout, result.stderr)


def data(result: Any) -> dict[str, Any]:
    ok(result)
    return dict(json.loads(result.stdout)["data"])


def figures(name: str, **values: Any) -> None:
    """What the test measured, on stdout (`pytest -s` shows it), for docs/benchmarks.md."""
    print(f"\nFIGURES {name}: {json.dumps(values, sort_keys=True)}")


def closed_by_drain(service: WebSocketService, colour: str) -> int:
    """WebSockets the colour's masters closed with 1001 when drained, from their logs."""
    return sum(int(n) for host in service.app_hosts for n in re.findall(
        r"draining: (\d+) (?:late )?WebSocket connection", service.log(host, colour)))


def closed_on_stop(service: WebSocketService, colour: str) -> int:
    """WebSockets the colour's masters closed with 1001 in BeforeShutdown, from their logs."""
    return sum(int(n) for host in service.app_hosts for n in re.findall(
        r"shutting down: (\d+) WebSocket connection", service.log(host, colour)))


def test_deploy_leaves_websockets_on_the_old_colour_and_new_ones_reach_the_new(
        ws: WebSocketService) -> None:
    ok(ws.deploy("v1"))
    with Clients(ws.ws_url, CLIENTS) as clients:
        clients.talking_to("v1 (blue)")
        ok(ws.deploy("v2"))
        clients.more_echoes(10)  # a second more on the connections opened before the flip
        status = data(ws.cli("--json", "status"))
        with Clients(ws.ws_url, 5) as newcomers:
            newcomers.talking_to("v2 (green)")
        clients.more_echoes(3)
    assert clients.errors == [] and newcomers.errors == []
    for client in clients.all:
        assert [where for _, where in client.connects] == ["v1 (blue)"]  # never reconnected
        assert client.closes == []
        assert set(client.echoes) == {"v1 (blue)"}
    assert (clients.lost, clients.resent) == (0, 0)
    # nginx's old worker carries them: blue, idle, still holds every client's connection
    assert status["balancers"][0]["old_workers"] == 1
    assert status["colours"]["blue"]["connections"] == CLIENTS
    figures("deploy", clients=CLIENTS, reconnects=0, closes=0, lost=clients.lost,
            echoed=clients.echoed, new_connections_to=sorted(
                {w for c in newcomers.all for _, w in c.connects}),
            blue_connections_after_flip=status["colours"]["blue"]["connections"])


def test_retire_with_app_drain_closes_every_websocket_with_1001_and_clients_reconnect(
        ws: WebSocketService) -> None:
    ok(ws.deploy("v1"))
    with Clients(ws.ws_url, CLIENTS) as clients:
        clients.talking_to("v1 (blue)")
        ok(ws.deploy("v2"))  # the clients stay on blue, now idle
        clients.more_echoes(3)
        started = time.monotonic()
        result = ws.cli("--json", "retire", "--drain-timeout", str(DRAIN_TIMEOUT),
                        inventory=ws.inventory(app={"drain": DRAIN}))
        finished = time.monotonic()
        clients.talking_to("v2 (green)")
    retired = data(result)
    assert clients.errors == []
    assert clients.close_codes() == {1001: CLIENTS}  # a close frame for every one: no 1006
    reconnect_delays = []
    for client in clients.all:
        [close] = client.closes
        assert close.where == "v1 (blue)" and close.reason == "going away"
        assert [where for _, where in client.connects] == ["v1 (blue)", "v2 (green)"]
        reconnect_delays.append(client.connects[1][0] - close.at)
    assert max(reconnect_delays) < 2.0  # backoff with jitter: about a second at most
    all_reconnected = max(c.connects[1][0] for c in clients.all) - started
    first_close = min(c.closes[0].at for c in clients.all) - started  # app.drain took effect
    assert finished - started < DRAIN_TIMEOUT / 2
    assert clients.lost == 0  # the message in flight at the close was resent and echoed
    assert "asked to drain (app.drain)" in result.stderr
    assert (retired["retired"], retired["connections_cut"], retired["drained"]) == (
        "blue", 0, True)
    record = ws.history()[-1]
    assert (record["operation"], record["colour"], record["release"]) == ("retire", "blue", "v1")
    assert (record["connections_cut"], record["drained"]) == (0, True)
    assert record["cut_by_host"] == {"app1": 0, "app2": 0}
    # blue's masters closed all 20: by the drain, or (a client caught mid-reconnect) on the stop
    assert closed_by_drain(ws, "blue") + closed_on_stop(ws, "blue") == CLIENTS
    figures("retire with app.drain", clients=CLIENTS, close_codes=dict(clients.close_codes()),
            connections_cut=retired["connections_cut"], drained=retired["drained"],
            retire_seconds=round(finished - started, 2),
            all_reconnected_after_retire_start_seconds=round(all_reconnected, 2),
            first_close_after_retire_start_seconds=round(first_close, 2),
            max_reconnect_delay_seconds=round(max(reconnect_delays), 2),
            drain_timeout_seconds=DRAIN_TIMEOUT, resent=clients.resent, lost=clients.lost)


def test_retire_without_app_drain_waits_the_timeout_and_counts_what_it_cuts(
        ws: WebSocketService) -> None:
    ok(ws.deploy("v1"))
    with Clients(ws.ws_url, CLIENTS) as clients:
        clients.talking_to("v1 (blue)")
        ok(ws.deploy("v2"))
        clients.more_echoes(3)
        started = time.monotonic()
        result = ws.cli("--json", "retire", "--drain-timeout", str(SHORT_DRAIN_TIMEOUT))
        finished = time.monotonic()
        clients.talking_to("v2 (green)")
    retired = data(result)
    assert finished - started >= SHORT_DRAIN_TIMEOUT  # nobody told the clients to go
    assert (retired["connections_cut"], retired["drained"]) == (CLIENTS, False)
    assert sum(retired["cut_by_host"].values()) == CLIENTS
    record = ws.history()[-1]
    assert (record["connections_cut"], record["drained"]) == (CLIENTS, False)
    assert "connection(s) still open at the drain timeout were closed by its stop" in result.stderr
    codes = clients.close_codes()
    assert sum(codes.values()) == CLIENTS and all(len(c.closes) == 1 for c in clients.all)
    # the stop (SIGTERM) still closes them cleanly: BeforeShutdown sends 1001
    assert codes == {1001: CLIENTS}, codes
    assert closed_by_drain(ws, "blue") == 0
    assert clients.errors == [] and clients.lost == 0
    figures("retire without app.drain", clients=CLIENTS, close_codes=dict(codes),
            connections_cut=retired["connections_cut"], cut_by_host=retired["cut_by_host"],
            retire_seconds=round(finished - started, 2),
            drain_timeout_seconds=SHORT_DRAIN_TIMEOUT)


def test_deploy_onto_an_idle_colour_holding_websockets_drains_them_first(
        ws: WebSocketService) -> None:
    ok(ws.deploy("v1"))
    ok(ws.deploy("v2"))

    def with_drain() -> Path:  # written just before each use: every cli() call rewrites it
        # the flip waits a second: clients closed by the drain or the stop come back (within
        # their 0.25 s reconnect jitter) to the colour live until then, however fast the
        # stand-up was
        return ws.inventory(app={"drain": DRAIN, "drain_timeout": DRAIN_TIMEOUT},
                            hooks={"pre_flip": [{"run": "sleep 1"}]})

    with Clients(ws.ws_url, CLIENTS) as clients:
        clients.talking_to("v2 (green)")
        ok(ws.cli("rollback"))  # blue live; the clients stay on green, now idle
        clients.more_echoes(3)
        assert all(c.where == "v2 (green)" for c in clients.all)

        started = time.monotonic()
        drained_run = ws.cli("--json", "deploy", "--source", str(ws.release("v3")),
                             "--release", "v3", inventory=with_drain())  # onto green
        drained = data(drained_run)
        drained_seconds = time.monotonic() - started
        # drained with 1001 before the stop, so they went to blue (then live) and stay there
        clients.talking_to("v1 (blue)")
        drained_codes = clients.close_codes()
        assert drained["idle_connections_cut"] == 0
        assert "asked to drain (app.drain)" in drained_run.stderr
        assert closed_by_drain(ws, "green") == CLIENTS

        cut_run = ws.cli("--json", "deploy", "--no-drain", "--source", str(ws.release("v4")),
                         "--release", "v4", inventory=with_drain())  # onto blue, at once
        cut = data(cut_run)
        clients.talking_to("v3 (green)")
    assert drained_codes == {1001: CLIENTS}
    assert drained_seconds < DRAIN_TIMEOUT
    assert cut["idle_connections_cut"] == CLIENTS
    warned = re.findall(r"(app\d): (\d+) connection\(s\) to blue still open, closed by its stop "
                        r"\(no drain\)",
                        cut_run.stderr)
    assert sorted(h for h, _ in warned) == ["app1", "app2"]
    assert sum(int(n) for _, n in warned) == CLIENTS
    assert "asked to drain" not in cut_run.stderr
    assert all([c.where for c in client.closes] == ["v2 (green)", "v1 (blue)"]
               for client in clients.all)
    cut_codes = clients.close_codes() - drained_codes
    assert sum(cut_codes.values()) == CLIENTS
    assert clients.errors == [] and clients.lost == 0
    figures("deploy onto an idle colour holding connections", clients=CLIENTS,
            with_app_drain={"idle_connections_cut": drained["idle_connections_cut"],
                            "close_codes": dict(drained_codes),
                            "deploy_seconds": round(drained_seconds, 2)},
            no_drain={"idle_connections_cut": cut["idle_connections_cut"],
                      "close_codes": dict(cut_codes)})


def test_a_drained_server_refuses_upgrades_and_fails_its_health_check(
        ws: WebSocketService) -> None:
    ok(ws.deploy("v1"))
    ok(ws.deploy("v2"))  # blue idle
    pid = ws.master_pid("app1", "blue")
    assert pid
    os.kill(pid, signal.SIGURG)  # what app.drain sends, to the master this test started
    url = ws.instance_ws_url("app1", "blue")
    address = f"http://{ws.fleet['app1'].address}:{ws.ports['blue']}"
    deadline = time.monotonic() + 10
    while "draining" not in ws.log("app1", "blue") and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=5, proxy=None, compression=None)
    assert refused.value.response.status_code == 503
    assert refused.value.response.headers["Retry-After"] == "1"
    with pytest.raises(urllib.error.HTTPError) as health:
        urllib.request.urlopen(address + "/health", timeout=5)
    assert health.value.code == 503 and b'"status":"draining"' in health.value.read()
    with urllib.request.urlopen(address + "/", timeout=5) as response:  # plain HTTP still served
        assert response.read().decode().startswith("release v1 (blue)")
    # the other host's blue was not drained: it still takes upgrades
    with connect(ws.instance_ws_url("app2", "blue"), open_timeout=5, proxy=None,
                 compression=None) as other:
        assert json.loads(other.recv(timeout=5))["colour"] == "blue"
    # no flip goes back to a drained colour
    rollback = ws.cli("rollback")
    assert rollback.returncode == 5, (rollback.stdout, rollback.stderr)
    assert ws.fetch().startswith("release v2 (green)")


@pytest.fixture
def ws_haproxy(fleet: Fleet, tmp_path: Path) -> Iterator[WebSocketService]:
    """Two app hosts running the WebSocket example behind HAProxy flipped through its runtime
    API, both colours already known to it."""
    service = WebSocketService(fleet, tmp_path, ["app1", "app2"], ["lb1"],
                               balancer_kinds={"lb1": "haproxy"},
                               overrides={"balancer": {"flip": "runtime", "drain_timeout": 3}})
    yield from serve(service)


def test_haproxy_runtime_flips_leave_websockets_up_and_retire_drains_them(
        ws_haproxy: WebSocketService) -> None:
    ws = ws_haproxy
    for release in ("v1", "v2", "v3"):  # HAProxy knows both colours' servers from v3 on
        ok(ws.deploy(release))
    with Clients(ws.ws_url, CLIENTS) as clients:
        clients.talking_to("v3 (blue)")
        started = time.monotonic()
        flip = ws.cli("--json", "deploy", "--source", str(ws.release("v4")), "--release", "v4")
        flip_seconds = time.monotonic() - started
        ok(flip)
        clients.more_echoes(5)  # still on blue: maintenance ends no session
        status = data(ws.cli("--json", "status"))
        with Clients(ws.ws_url, 5) as newcomers:
            newcomers.talking_to("v4 (green)")
        clients.more_echoes(3)
        started = time.monotonic()
        result = ws.cli("--json", "retire", "--drain-timeout", str(DRAIN_TIMEOUT),
                        inventory=ws.inventory(app={"drain": DRAIN_BY_PID}))
        retire_seconds = time.monotonic() - started
        clients.talking_to("v4 (green)")
        after = data(ws.cli("--json", "status"))
    assert "runtime API: 2 server(s) ready" in flip.stderr
    assert f"{CLIENTS} session(s) still open at the drain timeout stay on them" in flip.stderr
    assert "cut" not in flip.stderr
    assert newcomers.errors == [] and newcomers.close_codes() == {}
    [balancer] = status["balancers"]
    assert (balancer["kind"], balancer["runtime_serving"]) == ("haproxy", "green")
    assert balancer["sessions"] == {"blue": CLIENTS, "green": 0}
    assert status["colours"]["blue"]["connections"] == CLIENTS
    # retire: app.drain (SIGURG to the master named by {{ pid }}) closes every one with 1001
    retired = data(result)
    assert "asked to drain (app.drain)" in result.stderr
    assert (retired["connections_cut"], retired["drained"]) == (0, True)
    assert retire_seconds < DRAIN_TIMEOUT / 2
    assert clients.close_codes() == {1001: CLIENTS}
    for client in clients.all:
        assert [where for _, where in client.connects] == ["v3 (blue)", "v4 (green)"]
    assert clients.errors == [] and (clients.lost, clients.resent) <= (0, CLIENTS)
    assert after["balancers"][0]["sessions"]["blue"] == 0
    figures("HAProxy runtime flip and retire", clients=CLIENTS,
            flip_closes=0, deploy_seconds=round(flip_seconds, 2),
            balancer_drain_timeout_seconds=3, sessions_left_on_blue=CLIENTS,
            retire_seconds=round(retire_seconds, 2), close_codes=dict(clients.close_codes()),
            lost=clients.lost)


def test_the_example_counts_every_websocket_its_drain_closes(tmp_path: Path) -> None:
    """ws-server.php's drain log says how many WebSockets it closed: every one, those whose
    client answered the close frame and hung up before the server closed its side included
    (`disconnect()` then finds no session left and returns false). Many connections straight
    to one server make that race likely: it undercounted 4 of 300 on a busy host before."""
    connections = 300
    address = "127.0.10.1"
    port = free_port(address)
    log = tmp_path / "blue.log"
    env = {**os.environ, "COLOUR": "blue", "SHOP_ADDRESS": address, "SHOP_PORT": str(port),
           "SHOP_PID_FILE": str(tmp_path / "blue.pid"), "SHOP_WORKER_NUM": "2",
           "BLUEGREEN_CURRENT": str(WS_EXAMPLE)}
    with log.open("wb") as out:
        server = subprocess.Popen(["php", str(WS_EXAMPLE / "ws-server.php")], env=env,
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        wait_for_port(address, port)
        url = f"ws://{address}:{port}/ws"
        with contextlib.ExitStack() as stack:
            clients = [stack.enter_context(connect(url, open_timeout=10))
                       for _ in range(connections)]
            for client in clients:
                client.recv(timeout=10)  # its hello
            server.send_signal(signal.SIGURG)
            codes = []
            deadline = time.monotonic() + 30
            for client in clients:
                with contextlib.suppress(ConnectionClosed, TimeoutError):
                    while time.monotonic() < deadline:
                        client.recv(timeout=max(0.1, deadline - time.monotonic()))
                codes.append(client.close_code)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise
    assert codes == [1001] * connections
    closed = sum(int(n) for n in re.findall(r"draining: (\d+) (?:late )?WebSocket connection",
                                            log.read_text(errors="replace")))
    assert closed == connections, log.read_text(errors="replace")[-2000:]
