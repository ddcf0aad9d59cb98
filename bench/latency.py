"""What a network's round-trip time adds to `deploy`, `rollback` and `status`: each runs on the
loopback fleet (two app hosts, one nginx balancer) once directly and once through a proxy in front
of every sshd that holds each chunk of bytes for half the RTT in each direction — a real delay
on every SSH round trip, health checks included. The growth is compared with the round trips
the client waited for, counted at each host's proxy (each time the client sends after an answer
came back, or closes after one: an upper bound, since a send that did not wait for the answer
before it counts too), for the busiest app host plus the balancer — app hosts are asked in
parallel, the balancer mostly before and after them. The commands and channels of the busiest
host (as in bench/round_trips.py) are shown beside them.

    .venv/bin/python bench/latency.py [rtt_ms] [runs]

BLUEGREEN_SOURCE=DIR runs the bluegreen of another checkout (the same inventory and fleet), to
compare two versions in one run.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.round_trips import COUNTED_CLI
from tests.conftest import FLEET_ADDRESSES, write_inventory
from tests.fleet import Fleet, free_port, start_fleet
from tests.integration.service import Service, balanced_service

SOURCE = os.environ.get("BLUEGREEN_SOURCE")
CLI = (f"import sys; sys.path.insert(0, {SOURCE!r}); sys.argv[0] = 'bluegreen'; "
       "from bluegreen.cli import main; main()") if SOURCE else None


class DelayProxy:
    """Listens on `address:port`, forwards to `address:target`; every chunk of bytes reaches
    the other side `one_way` seconds after it arrived, in order, in both directions."""

    def __init__(self, address: str, target: int, one_way: float):
        self.address, self.target, self.one_way = address, target, one_way
        self.port = free_port(address)
        # the round trips the client waited for, over every connection since the last reset:
        # each time it sends after data came back (or closes after it), one RTT was waited
        self.round_trips = 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._connection, self.address, self.port))
        started.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()

    async def _connection(self, client_reader: asyncio.StreamReader,
                          client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(self.address, self.target)
        answered = [False]  # data reached the client since it last sent

        def sent() -> None:
            if answered[0]:
                self.round_trips += 1
                answered[0] = False

        def received() -> None:
            answered[0] = True

        try:
            await asyncio.gather(self._pipe(client_reader, server_writer, sent),
                                 self._pipe(server_reader, client_writer, received))
            sent()  # the last answer was waited for too
        except asyncio.CancelledError:  # the proxy is closing
            client_writer.close()
            server_writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    seen: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def receive() -> None:
            while data := await reader.read(65536):
                seen()
                queue.put_nowait((loop.time() + self.one_way, data))
            queue.put_nowait((loop.time() + self.one_way, b""))

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not data:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.gather(receive(), deliver())
        except (ConnectionError, OSError):
            writer.close()

    def close(self) -> None:
        async def shut_down() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(shut_down(), self.loop)
        self.thread.join(5)


def delayed_inventory(service: Service, fleet: Fleet, rtt: float, root: Path
                      ) -> tuple[Path, dict[str, DelayProxy]]:
    """The service's inventory with every host reached through a DelayProxy of `rtt`."""
    data: dict[str, Any] = json.loads(json.dumps(service.data))
    proxies = {}
    for role in ("app", "balancer"):
        for entry in data["hosts"][role]:
            host = fleet[entry["name"]]
            proxy = DelayProxy(host.address, host.port, rtt / 2)
            proxies[entry["name"]] = proxy
            entry["port"] = proxy.port
            with fleet.known_hosts.open("a") as handle:  # the same host key behind the proxy
                handle.write(host.known_hosts_line.replace(f":{host.port} ", f":{proxy.port} "))
    for key, value in service.overrides.items():
        data[key] = value
    return write_inventory(root / "delayed.yml", data), proxies


def round_trips(inventory: Path, hosts: list[str], *args: str) -> int:
    """The busiest host's SSH commands and channels for one run of `args`."""
    prefix = f"import sys; sys.path.insert(0, {SOURCE!r})\n" if SOURCE else ""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")}
    result = subprocess.run([sys.executable, "-c", prefix + COUNTED_CLI, "-i", str(inventory),
                             *args], capture_output=True, text=True, env=env, timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    lines = [line.split() for line in result.stderr.splitlines() if line.startswith("[rt] ")]
    return max(sum(1 for line in lines if line[1] in ("command", "channel") and line[2] == host)
               for host in hosts)


def timed(inventory: Path, *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")}
    argv = ([sys.executable, "-c", CLI] if CLI else [sys.executable, "-m", "bluegreen"])
    started = time.perf_counter()
    result = subprocess.run([*argv, "-i", str(inventory), *args], capture_output=True,
                            text=True, env=env, timeout=300)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return elapsed


def main() -> None:
    rtt = float(sys.argv[1]) / 1000 if len(sys.argv) > 1 else 0.050
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp) / "fleet", FLEET_ADDRESSES)
        service = balanced_service(fleet, Path(tmp) / "svc", "nginx")
        proxies: dict[str, DelayProxy] = {}
        try:
            direct = service.inventory()
            delayed, proxies = delayed_inventory(service, fleet, rtt, Path(tmp))
            hosts = [*service.app_hosts, *service.balancer_hosts]
            print(f"{SOURCE or 'this checkout'}: nginx, {', '.join(hosts)}; RTT {rtt * 1000:g} ms "
                  f"added on every SSH connection; median of {runs}")
            number = iter(range(2, 1000))

            def deploy() -> tuple[str, ...]:
                release = f"v{next(number)}"  # each deploy a new release, verified by its body
                return ("deploy", "--source", str(service.release(release)), "--release",
                        release)

            operations = {
                "deploy": deploy,
                "rollback": lambda: ("rollback",),
                "status": lambda: ("status",),
            }
            for label, args in operations.items():
                busiest = round_trips(direct, hosts, *args())
                plain = statistics.median(timed(direct, *args()) for _ in range(runs))
                slow, waited = [], []
                for _ in range(runs):
                    for proxy in proxies.values():
                        proxy.round_trips = 0
                    slow.append(timed(delayed, *args()))
                    waited.append({name: p.round_trips for name, p in proxies.items()})
                added = statistics.median(slow) - plain
                seen = waited[slow.index(statistics.median(slow))] if runs % 2 else waited[-1]
                app = max(seen[name] for name in service.app_hosts)
                balancer = max(seen[name] for name in service.balancer_hosts)
                print(f"  {label:9} {plain:.2f} s direct, {statistics.median(slow):.2f} s at "
                      f"{rtt * 1000:g} ms: +{added:.2f} s = {added / rtt:.1f} RTT; commands and "
                      f"channels of the busiest host {busiest}; round trips waited for (at the "
                      f"proxies): busiest app host {app}, balancer {balancer}; app + balancer "
                      f"× RTT = {(app + balancer) * rtt:.2f} s")
        finally:
            for proxy in proxies.values():
                proxy.close()
            service.close()
            fleet.close()


if __name__ == "__main__":
    main()
