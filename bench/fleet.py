"""Fleets of N app hosts: wall time and client CPU of `deploy`, `rollback` and `status` at each
size, against the floor measured in the same run — bare paramiko, one thread per host, connect +
auth + one command on every host (TCP_NODELAY, as bluegreen), run as a process of its own like
the CLI.
    .venv/bin/python bench/fleet.py [sizes, default 1,8,32,64] [runs, default 3]
        [--parallelism N (ssh.parallelism, default the inventory's)] [--memory HOSTS]

The fleet: loopback addresses 127.0.11.x (and 127.0.12.x beyond 254), served by one sshd per 15
addresses; on each host a colour is a `socat` listener answering "ok release X" through a shell
script shipped in the release (cheap enough that 128 of them fit on two cores); one nginx
balancer on its own address. Every process is started by this script and stopped by PID.
`--memory HOSTS` also reports bluegreen's peak RSS for `status` on that many hosts (the fleet
grows to them; most have nothing deployed, which costs `status` the same commands). bluegreen's
bytecode is compiled first, as an installed bluegreen's is.

`--pyinfra` adds a peer: a hand-written pyinfra deploy doing less than `rollback` — check the
target colour's health with curl on every app host, write an upstream file, `nginx -t`, reload;
no lock, state, history or verification — timed in pairs with `bluegreen rollback` (the ratio
of each pair's times, median). Its file is one nginx does not include, so it costs what a flip
costs without moving traffic. pyinfra pins its own paramiko, so it lives in a virtualenv of its
own: `python3 -m venv .venv-pyinfra && .venv-pyinfra/bin/pip install -r
bench/requirements-pyinfra.txt`."""

from __future__ import annotations

import compileall
import json
import os
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import write_inventory  # noqa: E402
from tests.fleet import SSHD, UNDER_REAPER, _keygen, free_port, wait_for_banner  # noqa: E402
from tests.integration.service import Nginx  # noqa: E402

ADDRESSES_PER_SSHD = 15

RESPOND = r"""# answers one HTTP request with this release's id (socat runs it per connection, in
# the release's directory), with shell builtins only: a real app answers a check in well under
# a millisecond of CPU, and every process started here is paid by the client's two cores
read -r release < RELEASE
while read -r line; do [ "${#line}" -gt 1 ] || break; done  # up to the blank line (or "\r")
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nX-Release: %s\r\n\r\nok release %s\n' \
  "$release" "$release"
"""

# floor: connect + auth + `true` on every host, one thread each, in a process of its own
FLOOR = r"""
import json, socket, sys, threading, time
import paramiko
hosts, key_path = json.loads(sys.argv[1]), sys.argv[2]
key = paramiko.Ed25519Key.from_private_key_file(key_path)
started = time.monotonic()
def one(address, port):
    sock = socket.create_connection((address, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(address, port, username="root", pkey=key, sock=sock,
                   allow_agent=False, look_for_keys=False)
    _, out, _ = client.exec_command("true")
    assert out.channel.recv_exit_status() == 0
    client.close()
threads = [threading.Thread(target=one, args=tuple(h)) for h in hosts]
for t in threads: t.start()
for t in threads: t.join()
print(time.monotonic() - started)
"""


@dataclass
class MultiFleet:
    """sshd processes each listening on up to 15 loopback addresses."""

    root: Path
    client_key: Path
    known_hosts: Path
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)  # name → (addr, port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path, names: list[str]) -> MultiFleet:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        client_key = root / "client_ed25519"
        _keygen(client_key)
        (root / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
        (root / "home").mkdir()
        for profile in (".bashrc", ".profile"):
            (root / "home" / profile).write_text("")
        fleet = cls(root, client_key, root / "known_hosts")
        lines = []
        try:
            for group in range(0, len(names), ADDRESSES_PER_SSHD):
                members = names[group:group + ADDRESSES_PER_SSHD]
                addresses = [address_of(group + i) for i in range(len(members))]
                port = free_port(addresses[0])
                key = root / f"sshd{group}_ed25519"
                _keygen(key)
                config = root / f"sshd{group}.conf"
                config.write_text(
                    "".join(f"ListenAddress {a}:{port}\n" for a in addresses)
                    + f"HostKey {key}\nPidFile {root}/sshd{group}.pid\n"
                    f"AuthorizedKeysFile {root}/authorized_keys\n"
                    "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\n"
                    "AllowTcpForwarding yes\nMaxSessions 100\nMaxStartups 200:30:400\n"
                    f"SetEnv HOME={root / 'home'}\nSubsystem sftp internal-sftp\n")
                log = (root / f"sshd{group}.log").open("ab")
                process = subprocess.Popen([*UNDER_REAPER, SSHD, "-D", "-e", "-f", str(config)],
                                           stdout=log, stderr=log, stdin=subprocess.DEVNULL)
                fleet.processes.append(process)
                public = key.with_suffix(".pub").read_text().split()
                for name, address in zip(members, addresses, strict=True):
                    fleet.addresses[name] = (address, port)
                    lines.append(f"[{address}]:{port} {public[0]} {public[1]}\n")
                wait_for_banner(addresses[-1], port, process=process)
        except BaseException:
            fleet.close()
            raise
        fleet.known_hosts.write_text("".join(lines))
        return fleet

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def address_of(index: int) -> str:
    return f"127.0.{11 + index // 254}.{1 + index % 254}"


def inventory(fleet: MultiFleet, root: Path, apps: list[str], nginx: Nginx,
              parallelism: int | None) -> Path:
    def entry(name: str, **extra: Any) -> dict[str, Any]:
        address, port = fleet.addresses[name]
        return {"name": name, "address": address, "port": port, **extra}

    pidfile = "{{ app_root }}/{{ colour }}.pid"
    data = {
        "service": "shop",
        "ssh": {"user": "root", "identity_file": str(fleet.client_key),
                "known_hosts": str(fleet.known_hosts), "config_file": None, "use_agent": False,
                "connect_timeout": 10, "command_timeout": 60,
                **({"parallelism": parallelism} if parallelism else {})},
        "hosts": {"app": [entry(name, app_root=str(root / "srv" / name)) for name in apps],
                  "balancer": [entry("lb1", balancer=nginx.balancer_override(
                      root / "state-lb1"))]},
        "colours": {"blue": {"port": 9501}, "green": {"port": 9502}},
        "release": {"keep": 2},
        "app": {
            "root": str(root / "unused"),
            "start": "cd {{ current_dir }} && { nohup socat TCP-LISTEN:{{ port }},"
                     "bind={{ address }},fork,reuseaddr EXEC:'sh respond.sh' "
                     f">/dev/null 2>&1 & echo $! > {pidfile}; }}",
            "stop": f'kill "$(cat {pidfile})"',
            "status": f'kill -0 "$(cat {pidfile} 2>/dev/null)" 2>/dev/null',
            "pid_file": pidfile,
            "start_timeout": 30,
        },
        "health": {"path": "/", "expect_body": "ok release", "interval": 0.1, "retries": 50,
                   "successes": 1},
        "balancer": {"kind": "nginx", "managed_file": "/nonexistent", "reload_timeout": 10},
        "verify": {"urls": [nginx.url], "expect_body": "release {{ release }}",
                   "attempts": 20},
        "deploy": {"drain": False},
    }
    return write_inventory(root / "inventory.yml", data)


def release(root: Path, name: str) -> Path:
    path = root / "releases" / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "RELEASE").write_text(name + "\n")
    (path / "respond.sh").write_text(RESPOND)
    return path


PYINFRA_DEPLOY = r"""
import io
from pyinfra import host
from pyinfra.operations import files, server

if "app" in host.groups:
    server.shell(name="health of the target colour",
                 commands=[f"curl -fsS http://{host.data.address}:{host.data.target_port}/ "
                           "| grep -q 'ok release'"])
if "balancer" in host.groups:
    files.put(name="upstream", src=io.StringIO(host.data.upstream), dest=host.data.upstream_path)
    server.shell(name="validate and reload", commands=[host.data.nginx_test, host.data.reload])
"""


def pyinfra_project(root: Path, fleet: MultiFleet, apps: list[str], nginx: Nginx,
                    parallelism: int | None) -> tuple[Path, Path]:
    """An inventory and a deploy for pyinfra that flip `nginx`'s upstream to the green colour
    of `apps` (the deploy file) — into a file nginx does not include."""
    project = root / "pyinfra"
    project.mkdir(exist_ok=True)
    nginx_argv = f"nginx -p {nginx.prefix} -c {nginx.prefix / 'nginx.conf'}"
    upstream = "upstream shop_pyinfra {\n" + "".join(
        f"    server {fleet.addresses[name][0]}:9502;\n" for name in apps) + "}\n"

    def host(name: str, **data: object) -> tuple[str, dict[str, object]]:
        address, port = fleet.addresses[name]
        return (name, {"ssh_hostname": address, "ssh_port": port, **data})

    inventory = {
        "app": [host(name, address=fleet.addresses[name][0], target_port=9502)
                for name in apps],
        "balancer": [host("lb1", upstream=upstream,
                          upstream_path=str(nginx.prefix / "pyinfra-upstream.conf"),
                          nginx_test=f"{nginx_argv} -t -q", reload=f"{nginx_argv} -s reload")],
    }
    global_data = {"ssh_user": "root", "ssh_key": str(fleet.client_key),
                   "ssh_known_hosts_file": str(fleet.known_hosts),
                   "ssh_strict_host_key_checking": "yes", "ssh_allow_agent": False,
                   "ssh_look_for_keys": False}
    inventory_path = project / "inventory.py"
    inventory_path.write_text("".join(
        f"{group} = {[(n, {**global_data, **d}) for n, d in hosts]!r}\n"
        for group, hosts in inventory.items()))
    deploy_path = project / "deploy.py"
    deploy_path.write_text(PYINFRA_DEPLOY)
    return inventory_path, deploy_path


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) of the process, and its exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600,
                            stdin=subprocess.DEVNULL)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
    return wall, cpu, result.returncode


def peak_rss_mb(argv: list[str], env: dict[str, str]) -> float:
    """The peak resident memory of one run of `argv` (its own rusage, from wait4)."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024


def main() -> None:
    # a TERM runs the clean-up below (every process this script started, by PID)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sizes = [int(s) for s in (args[0] if args else "1,8,32,64").split(",")]
    runs = int(args[1]) if len(args) > 1 else 3
    parallelism = None
    if "--parallelism" in sys.argv:
        parallelism = int(sys.argv[sys.argv.index("--parallelism") + 1])
    pyinfra = None
    if "--pyinfra" in sys.argv:
        pyinfra = str(ROOT / ".venv-pyinfra" / "bin" / "pyinfra")
        if not Path(pyinfra).exists():
            sys.exit(f"--pyinfra needs {pyinfra}: python3 -m venv .venv-pyinfra && "
                     ".venv-pyinfra/bin/pip install -r bench/requirements-pyinfra.txt")
    compileall.compile_dir(str(ROOT / "bluegreen"), quiet=1)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BLUEGREEN_") and k != "PYTHONDONTWRITEBYTECODE"}
    cli = [sys.executable, "-m", "bluegreen"]
    memory_hosts = (int(sys.argv[sys.argv.index("--memory") + 1])
                    if "--memory" in sys.argv else 0)
    largest = max(*sizes, memory_hosts)
    apps = [f"app{i:03d}" for i in range(1, largest + 1)]
    with tempfile.TemporaryDirectory(prefix="bluegreen-fleet-") as tmp:
        root = Path(tmp)
        env["XDG_CACHE_HOME"] = str(root / "cache")  # removed with the fleet
        fleet = MultiFleet.start(root, [*apps, "lb1"])
        lb_address = fleet.addresses["lb1"][0]
        nginx = Nginx("lb1", lb_address, free_port(lb_address), root / "nginx")
        nginx.start()
        try:
            print(f"fleet: {largest} app hosts + 1 balancer, {len(fleet.processes)} sshd; "
                  f"{runs} run(s) per figure, medians", flush=True)
            rows = []
            for size in sizes:
                for name in apps[:size]:
                    (root / "srv" / name).mkdir(parents=True, exist_ok=True)
                hosts = [list(fleet.addresses[name]) for name in apps[:size]]
                path = inventory(fleet, root, apps[:size], nginx, parallelism)
                base = [*cli, "-i", str(path)]
                floor = [timed([sys.executable, "-c", FLOOR, json.dumps(hosts),
                                str(fleet.client_key)], env) for _ in range(runs)]
                for warm_up in ("a", "b"):  # both colours run on every host
                    name = f"s{size}{warm_up}"
                    timed([*base, "deploy", "--source", str(release(root, name)),
                           "--release", name], env)
                figures: dict[str, list[tuple[float, float, int]]] = {
                    "deploy": [], "rollback": [], "status": []}
                for run in range(1, runs + 1):
                    name = f"s{size}r{run}"
                    figures["deploy"].append(timed(
                        [*base, "deploy", "--source", str(release(root, name)), "--release",
                         name], env))
                    figures["rollback"].append(timed([*base, "rollback"], env))
                    figures["status"].append(timed([*base, "--json", "status"], env))
                    # back to the deployed colour, so the next deploy has an idle one
                    timed([*base, "rollback"], env)
                if pyinfra:
                    inv, deploy = pyinfra_project(root, fleet, apps[:size], nginx, parallelism)
                    argv = [pyinfra, "-y", "--parallel",
                            str(parallelism or 10), str(inv), str(deploy)]
                    figures["pyinfra"], ratios = [], []
                    for _ in range(runs):
                        ours = timed([*base, "rollback"], env)
                        theirs = timed(argv, env)
                        figures["pyinfra"].append(theirs)
                        ratios.append(ours[0] / theirs[0])
                    ratio = statistics.median(ratios)
                failed = {op: sum(1 for *_, rc in results if rc != 0)
                          for op, results in figures.items()}
                floor_wall = statistics.median(w for w, _, _ in floor)
                floor_cpu = statistics.median(c for _, c, _ in floor)
                row = {"hosts": size, "floor_wall": floor_wall, "floor_cpu": floor_cpu,
                       "failed": failed}
                for op, results in figures.items():
                    row[op] = statistics.median(w for w, _, _ in results)
                    row[f"{op}_cpu"] = statistics.median(c for _, c, _ in results)
                if pyinfra:
                    row["rollback_over_pyinfra"] = ratio
                rows.append(row)
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                  for k, v in row.items()}), flush=True)
            one = rows[0]
            print("\nhosts | floor wall / CPU | deploy | rollback (× floor) | status (× floor) "
                  "| CPU per host per op, status (× floor's)")
            for row in rows:
                per_host = row["status_cpu"] / row["hosts"]
                floor_per_host = row["floor_cpu"] / row["hosts"]
                print(f"{row['hosts']} | {row['floor_wall']:.2f} s / {row['floor_cpu']:.2f} s | "
                      f"{row['deploy']:.2f} s ({row['deploy'] / one['deploy']:.1f}× 1 host) | "
                      f"{row['rollback']:.2f} s ({row['rollback'] / row['floor_wall']:.1f}×) | "
                      f"{row['status']:.2f} s ({row['status'] / row['floor_wall']:.1f}×) | "
                      f"{per_host * 1000:.0f} ms ({per_host / floor_per_host:.1f}×)")
                if pyinfra:
                    print(f"   rollback / pyinfra's flip, median of {runs} pair(s): "
                          f"{row['rollback_over_pyinfra']:.2f}")
            if memory_hosts:
                for name in apps[:memory_hosts]:
                    (root / "srv" / name).mkdir(parents=True, exist_ok=True)
                path = inventory(fleet, root, apps[:memory_hosts], nginx, parallelism)
                started = time.monotonic()
                rss = peak_rss_mb([*cli, "-i", str(path), "--json", "status"], env)
                print(f"\npeak RSS of `status` on {memory_hosts} hosts: {rss:.0f} MB "
                      f"({time.monotonic() - started:.1f} s)")
        finally:
            stop_apps(root, apps)
            nginx.stop()
            fleet.close()


def stop_apps(root: Path, apps: list[str]) -> None:
    """The socat listeners the deploys started, by the PIDs they recorded."""
    for name in apps:
        for colour in ("blue", "green"):
            pidfile = root / "srv" / name / f"{colour}.pid"
            if pidfile.exists():
                subprocess.run(f"kill {shlex.quote(pidfile.read_text().strip())} 2>/dev/null",
                               shell=True, check=False)


if __name__ == "__main__":
    main()
