"""bluegreen's SSH transport on the loopback fleet: connect + auth, one command on an open
connection, and fan-out to 1 vs 4 hosts (connect + one command each, in parallel).

    .venv/bin/python bench/transport.py [runs]

Starts its own sshd processes on 127.0.10.x (see tests/fleet.py) and stops them at the end."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bluegreen.fanout import fan_out
from bluegreen.inventory import HostSpec, SSHSettings
from bluegreen.shell import Command
from bluegreen.transport.ssh import SSHTransport, resolve_target
from tests.fleet import start_fleet


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp), {f"h{i}": f"127.0.10.{40 + i}" for i in range(4)})
        try:
            settings = SSHSettings(user="root", identity_file=str(fleet.client_key),
                                   known_hosts=str(fleet.known_hosts), config_file=None,
                                   use_agent=False)
            targets = [resolve_target(HostSpec(name=h.name, address=h.address, port=h.port),
                                      settings) for h in fleet.hosts.values()]

            def connect_and_run(target: object) -> None:
                transport = SSHTransport.connect(target, settings)  # type: ignore[arg-type]
                transport.run(Command("true")).check()
                transport.close()

            connect = []
            for _ in range(runs):
                started = time.perf_counter()
                transport = SSHTransport.connect(targets[0], settings)
                connect.append(time.perf_counter() - started)
                transport.close()
            transport = SSHTransport.connect(targets[0], settings)
            command = []
            for _ in range(runs * 5):
                started = time.perf_counter()
                transport.run(Command("true")).check()
                command.append(time.perf_counter() - started)
            transport.close()
            fan = {}
            for count in (1, 4):
                samples = []
                for _ in range(runs):
                    started = time.perf_counter()
                    fan_out(targets[:count], connect_and_run, step="bench", name=str,
                            parallelism=10)
                    samples.append(time.perf_counter() - started)
                fan[count] = statistics.median(samples)
        finally:
            fleet.close()
    print(f"connect + auth (median of {runs})          {statistics.median(connect) * 1000:6.1f} ms"
          "  (floor measured with bare paramiko + TCP_NODELAY: 19 ms)")
    print(f"command on open connection (median of {runs * 5}) "
          f"{statistics.median(command) * 1000:6.1f} ms  (floor: 3 ms)")
    print(f"fan-out connect+command, 1 host          {fan[1] * 1000:6.1f} ms  (floor: 67 ms)")
    print(f"fan-out connect+command, 4 hosts         {fan[4] * 1000:6.1f} ms  (floor: 99 ms)")


if __name__ == "__main__":
    main()
