"""Round trips per host per operation: how many SSH commands (each at least one network round
trip), forwarded channels and requests through them `deploy`, `rollback` and `status` send to
each host, counted from the real CLI on the loopback fleet. On a real network each of them
costs an RTT; `at 50 ms` is the time they add there when no two of a host's round trips
overlap (one connection per host: a host's commands run one after another).

    .venv/bin/python bench/round_trips.py [nginx|haproxy-runtime|two-nginx]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import FLEET_ADDRESSES
from tests.fleet import start_fleet
from tests.integration.service import balanced_service

RTT = 0.050

# The CLI, with every SSH command and forwarded channel counted on stderr: bluegreen's own code,
# only wrapped.
COUNTED_CLI = r"""
import sys
from bluegreen.transport.ssh import SSHTransport
_run, _tunnel = SSHTransport.run, SSHTransport.tunnel
def run(self, command, **options):
    sys.stderr.write(f"[rt] command {self.host}\n")
    return _run(self, command, **options)
def tunnel(self, *args, **options):
    sys.stderr.write(f"[rt] channel {self.host}\n")
    return _tunnel(self, *args, **options)
SSHTransport.run, SSHTransport.tunnel = run, tunnel
import httpx
_send = httpx.Client.send
def send(self, request, **options):
    where = "tunnelled" if request.url.host == "127.0.0.1" else "direct"
    sys.stderr.write(f"[rt] http-{where} -\n")
    return _send(self, request, **options)
httpx.Client.send = send
sys.argv[0] = "bluegreen"
from bluegreen.cli import main
main()
"""


def counted(inventory: str, *args: str) -> Counter[tuple[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")}
    result = subprocess.run([sys.executable, "-c", COUNTED_CLI, "-i", inventory, *args],
                            capture_output=True, text=True, env=env, timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return Counter((kind, host) for kind, host in (
        line.split()[1:3] for line in result.stderr.splitlines() if line.startswith("[rt] ")))


def main() -> None:
    setup = sys.argv[1] if len(sys.argv) > 1 else "nginx"
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp) / "fleet", FLEET_ADDRESSES)
        service = balanced_service(fleet, Path(tmp) / "svc", setup)
        try:
            inventory = str(service.inventory())
            hosts = [*service.app_hosts, *service.balancer_hosts]
            print(f"round trips per host ({setup}: {', '.join(hosts)}): SSH commands + "
                  "tunnels opened (health checks through SSH)")
            source = str(service.release("v2"))
            for label, args in (("deploy", ("deploy", "--source", source, "--release", "v2")),
                                ("rollback", ("rollback",)), ("status", ("status",))):
                counts = counted(inventory, *args)
                per_host = {h: counts["command", h] + counts["channel", h] for h in hosts}
                busiest = max(per_host.values())
                tunnelled = counts["http-tunnelled", "-"]
                print(f"  {label:9} " + ", ".join(
                    f"{h} {counts['command', h]}+{counts['channel', h]}" for h in hosts)
                    + f"; {tunnelled} HTTP request(s) through SSH (each a channel, then the "
                    f"request), {counts['http-direct', '-']} direct; busiest host {busiest}: "
                    f"≥ {busiest * RTT:.2f} s at 50 ms RTT")
        finally:
            service.close()
            fleet.close()


if __name__ == "__main__":
    main()
