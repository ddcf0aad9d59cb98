"""Wall time of `bluegreen rollback` as a whole process on the loopback fleet (two app hosts, one
nginx balancer, all through real sshd), median of N, and the floor it is made of.

    .venv/bin/python bench/rollback.py [runs] [nginx|haproxy-reload|haproxy-runtime|two-nginx]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bluegreen.inventory import HostSpec, SSHSettings
from bluegreen.shell import Command
from bluegreen.transport.ssh import SSHTransport, resolve_target
from tests.conftest import FLEET_ADDRESSES
from tests.fleet import start_fleet
from tests.integration.service import balanced_service


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed with exit {result.returncode}:\n"
                         f"{result.stdout}\n{result.stderr}")
    return elapsed


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    setup = sys.argv[2] if len(sys.argv) > 2 else "nginx"
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp) / "fleet", FLEET_ADDRESSES)
        service = balanced_service(fleet, Path(tmp) / "svc", setup)
        try:
            if service.deploy("v2").returncode != 0:
                raise SystemExit("deploy v2 failed")
            inventory = str(service.inventory())
            cli = [sys.executable, "-m", "bluegreen", "-i", inventory]
            samples = [timed([*cli, "rollback"]) for _ in range(runs)]
            status = statistics.median(timed([*cli, "status"]) for _ in range(3))
            startup = statistics.median(timed([*cli, "--help"]) for _ in range(5))
            imports = {
                module: statistics.median(
                    timed([sys.executable, "-c", f"import {module}"]) for _ in range(5))
                for module in ("paramiko", "httpx", "bluegreen.inventory")}
            bare = statistics.median(timed([sys.executable, "-c", "pass"]) for _ in range(5))
            lb = fleet["lb1"]
            settings = SSHSettings(user="root", identity_file=str(fleet.client_key),
                                   known_hosts=str(fleet.known_hosts), config_file=None,
                                   use_agent=False)
            target = resolve_target(HostSpec(name="lb1", address=lb.address, port=lb.port),
                                    settings)
            connect = []
            for _ in range(5):
                started = time.perf_counter()
                transport = SSHTransport.connect(target, settings)
                connect.append(time.perf_counter() - started)
                transport.close()
            validate_command = service.balancer_validate_command("lb1")
            transport = SSHTransport.connect(target, settings)
            validate = statistics.median(
                transport.run(Command(*validate_command)).duration for _ in range(5))
            transport.close()
        finally:
            service.close()
            fleet.close()
    print(f"{setup}: bluegreen rollback, whole process (median of {runs}): "
          f"{statistics.median(samples) * 1000:.0f} ms  "
          f"(min {min(samples) * 1000:.0f}, max {max(samples) * 1000:.0f}; goal ≤ 400 ms)")
    print("  of which, floors:")
    print(f"    python + bluegreen --help          {startup * 1000:6.0f} ms")
    print(f"    SSH connect + auth (one host)      {statistics.median(connect) * 1000:6.0f} ms")
    print(f"    config validation over SSH         {validate * 1000:6.0f} ms")
    if setup.startswith("nginx") or setup == "two-nginx":
        print("    nginx's own pause before retiring old workers on reload: 100 ms")
    for module, seconds in imports.items():
        print(f"    import {module:27s} {(seconds - bare) * 1000:6.0f} ms")
    print(f"bluegreen status, whole process:        {status * 1000:6.0f} ms")


if __name__ == "__main__":
    main()
