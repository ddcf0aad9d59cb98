"""Uploading a release: bluegreen's SSH transport streaming a file of N MB of incompressible data
to several hosts in parallel (`cat > /dev/null` on each) — read by offset as a release is, never
held whole in memory — against the floor of OpenSSH's own client doing the same in the same run.
bluegreen is measured twice: as it runs by default (a large release handed to the system's
OpenSSH client) and with `ssh.openssh_uploads: false` (the built-in paramiko client).

    .venv/bin/python bench/upload.py [sizes in MB, default 8,32,105] [hosts, default 4]

Starts its own sshd processes on 127.0.10.x (see tests/fleet.py) and stops them at the end."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bluegreen.fanout import fan_out
from bluegreen.inventory import HostSpec, SSHSettings
from bluegreen.release import FilePayload
from bluegreen.shell import Command
from bluegreen.transport.ssh import SSHTransport, resolve_target
from tests.fleet import start_fleet


def main() -> None:
    sizes = [int(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "8,32,105").split(",")]
    hosts_count = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp), {f"u{i}": f"127.0.10.{60 + i}" for i in range(hosts_count)})
        try:
            hosts = list(fleet.hosts.values())
            transports = {}
            for openssh in (True, False):
                settings = SSHSettings(user="root", identity_file=str(fleet.client_key),
                                       known_hosts=str(fleet.known_hosts), config_file=None,
                                       use_agent=False, command_timeout=600,
                                       openssh_uploads=openssh)
                transports[openssh] = [SSHTransport.connect(resolve_target(
                    HostSpec(name=h.name, address=h.address, port=h.port), settings), settings)
                    for h in hosts]
            payload = Path(tmp) / "payload"
            for size in sizes:
                with payload.open("wb") as out:
                    for _ in range(size):
                        out.write(os.urandom(1 << 20))
                ours = {}
                for openssh, connected in transports.items():
                    with payload.open("rb") as source:
                        streamed = FilePayload(source, size << 20)
                        started = time.perf_counter()
                        fan_out(connected, lambda t, streamed=streamed: t.run(
                            Command("sh", "-c", "cat > /dev/null"), stdin=streamed).check(),
                                step="upload", name=lambda t: t.host, parallelism=hosts_count)
                        ours[openssh] = time.perf_counter() - started
                started = time.perf_counter()
                clients = [subprocess.Popen(
                    ["ssh", "-q", "-i", str(fleet.client_key), "-o",
                     f"UserKnownHostsFile={fleet.known_hosts}", "-o", "BatchMode=yes",
                     "-p", str(h.port), f"root@{h.address}", "cat > /dev/null"],
                    stdin=payload.open("rb")) for h in hosts]
                assert all(c.wait(timeout=600) == 0 for c in clients)
                floor = time.perf_counter() - started
                print(f"{size:4d} MB to {hosts_count} hosts: bluegreen {ours[True]:6.2f} s "
                      f"(ratio {ours[True] / floor:5.2f}), built-in client {ours[False]:6.2f} s "
                      f"(ratio {ours[False] / floor:5.2f}), ssh {floor:6.2f} s", flush=True)
            for connected in transports.values():
                for transport in connected:
                    transport.close()
        finally:
            fleet.close()


if __name__ == "__main__":
    main()
