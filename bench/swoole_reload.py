"""`bluegreen reload` of the Swoole example under load: a rolling in-place reload (SIGUSR1) of two
app hosts onto a new release while clients send requests through the balancer — nginx, and
HAProxy with `flip: runtime` — in two client modes (a new connection per request; strict
keep-alive clients that reuse one connection and never retry). Then the same reload onto code
that does not parse (every new worker dies at start), against the baseline a user would run
without bluegreen: point both hosts at the broken code and `kill -USR1` both masters.

    .venv/bin/python bench/swoole_reload.py [--rate 200] [--runs 2]
        [--setups nginx,haproxy-runtime] [--nginx-keepalive-timeout 0] [--no-broken]

For each run it prints failed / sent (a request that gets no answer within 5 s is *hung*: the
clients' timeout), the reload's seconds per host (`--json`: signal → every worker replaced, plus
the 1 s settle), the command's wall time and its phases per host (from the time-stamped progress
lines), and what runs under each master afterwards. For the broken code: how long until
bluegreen exits, what the state says, and the restore (`reload --release v1`, run again if it
fails); for the baseline, the same load for as long as bluegreen took to exit, then back to the
good code with `kill -USR1`. Once per set-up, the time split of one more reload and the SSH
commands it runs (an instrumented run outside the measurements: bluegreen's SSH transport
wrapped to print each command's duration). Each broken-code run and each baseline gets a
service of its own.

Every process is started here and stopped by its PID (the harness's `close()`); traffic goes
only to the balancer on 127.0.10.3; every load loop is bounded by count and time."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from zero_downtime import WORKERS, LoadResult, run_load

from tests.conftest import FLEET_ADDRESSES
from tests.fleet import start_fleet
from tests.integration.service import BALANCER_SETUPS
from tests.integration.swoole import (
    EXAMPLE_INVENTORY,
    SwooleService,
    descendants,
    require_swoole,
    running,
)

HUNG = 5.0  # the clients' timeout (run_load's): no answer by then is a hung request
LOAD_CAP = 120.0  # no load runs longer than this, whatever happens
SETTLE = 1.0  # app.reload_settle (default), part of the per-host seconds
WORKER = re.compile(EXAMPLE_INVENTORY["app"]["worker_pattern"])
RESTORE_ATTEMPTS = 3  # a restore that fails is run again, as a user would

# The CLI, run with every SSH command it sends printed to stderr (and so time-stamped with the
# progress lines): bluegreen's own code, only wrapped. Used once per set-up, outside the runs
# that are measured.
TRACED_CLI = r"""
import sys, time
from bluegreen.transport import ssh
_run, _tunnel = ssh.SSHTransport.run, ssh.SSHTransport.tunnel
def run(self, command, **options):
    started = time.monotonic()
    try:
        return _run(self, command, **options)
    finally:
        sys.stderr.write(f"[ssh] {self.host} {time.monotonic() - started:.4f}\n")
        sys.stderr.flush()
def tunnel(self, *args, **options):
    sys.stderr.write(f"[tunnel] {self.host}\n")
    sys.stderr.flush()
    return _tunnel(self, *args, **options)
ssh.SSHTransport.run, ssh.SSHTransport.tunnel = run, tunnel
sys.argv[0] = "bluegreen"
from bluegreen.cli import main
main()
"""


@dataclass
class Timed:
    """A CLI run: exit status, the `--json` document, and stderr's lines with the seconds since
    the process was started."""

    returncode: int
    data: dict[str, Any]
    lines: list[tuple[float, str]]
    wall: float

    @property
    def stderr(self) -> str:
        return "\n".join(line for _, line in self.lines)


def timed_cli(service: SwooleService, *args: str, traced: bool = False,
              timeout: float = 120) -> Timed:
    """`python -m bluegreen -i INVENTORY --json ARGS`, stamping each progress line as it comes."""
    inventory = service.inventory()
    head = ["-c", TRACED_CLI] if traced else ["-m", "bluegreen"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")}
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, *head, "-i", str(inventory), "--json", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL, env=env)
    lines: list[tuple[float, str]] = []
    stdout: list[str] = []

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append((time.monotonic() - started, line.rstrip("\n")))

    def read_stdout() -> None:
        assert process.stdout is not None
        stdout.append(process.stdout.read())

    readers = [threading.Thread(target=read_stderr, daemon=True),
               threading.Thread(target=read_stdout, daemon=True)]
    for reader in readers:
        reader.start()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()  # our own child, by its Popen handle
        process.wait()
        raise
    wall = time.monotonic() - started
    for reader in readers:
        reader.join(timeout=5)
    text = "".join(stdout)
    document = json.loads(text) if text.strip() else {}
    return Timed(process.returncode, document.get("data") or document, lines, wall)


@dataclass
class Load:
    """run_load's client threads on the balancer, from `start()` until `finish()`."""

    service: SwooleService
    keepalive: bool
    rate: float
    result: LoadResult = field(default_factory=LoadResult)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        server = self.service.nginx[self.service.balancer_hosts[0]]
        assert server.address.startswith("127."), server.address
        _, self.threads = run_load(server.address, server.port, keepalive=self.keepalive,
                                   rate=self.rate, seconds=LOAD_CAP, stop=self.stop,
                                   result=self.result)
        time.sleep(1)  # the load runs before the operation starts
        return self

    def finish(self, tail: float = 1.0) -> LoadResult:
        time.sleep(tail)
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=HUNG + 5)
        return self.result

    def answered(self) -> int:
        return self.result.sent - self.result.failed

    def hung(self) -> int:
        return (self.result.errors.get("TimeoutError", 0)
                + sum(1 for latency in self.result.latencies if latency > HUNG))

    def counts(self) -> str:
        result = self.result
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(result.errors.items()))
        return (f"failed {result.failed:4d} / {result.sent:5d} (hung > {HUNG:g} s: "
                f"{self.hung()})" + (f" [{kinds}]" if kinds else ""))


def swoole_service(fleet: object, root: Path, setup: str,
                   nginx_keepalive_timeout: str | None = None) -> SwooleService:
    """Two app hosts running the Swoole example behind `setup`, v1 live on blue."""
    hosts, kinds, overrides = BALANCER_SETUPS[setup]
    service = SwooleService(fleet, root, ["app1", "app2"], hosts,  # type: ignore[arg-type]
                            balancer_kinds=kinds, overrides=overrides,
                            nginx_keepalive_timeout=nginx_keepalive_timeout)
    result = service.cli("deploy", "--source", str(service.release("v1")), "--release", "v1")
    if result.returncode != 0:
        service.close()
        raise RuntimeError(f"deploy v1 failed:\n{result.stderr}")
    return service


def close(service: SwooleService) -> int:
    """The harness's close() (SIGTERM to the masters it started), then the workers a dead
    manager left behind — reparented to init, no master's signal reaches them: processes named
    `shop-…` holding a file under this service's root, stopped by PID. How many there were."""
    service.close()
    root = f"{service.root.resolve()}/"
    leftovers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "cmdline").read_bytes().startswith(b"shop-"):
                continue
            if any(os.readlink(fd).startswith(root) for fd in (entry / "fd").iterdir()):
                leftovers.append(int(entry.name))
        except OSError:
            continue
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while any(running(pid) for pid in leftovers) and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(leftovers)


def masters(service: SwooleService) -> dict[str, int]:
    found = {host: service.master_pid(host, "blue") for host in service.app_hosts}
    return {host: pid for host, pid in found.items() if pid}


def flips(done: Timed) -> str:
    """How the balancer flips went, when HAProxy's runtime API was asked."""
    runtime = sum(1 for _, line in done.lines if "runtime API:" in line)
    if not runtime:
        return ""
    fallback = sum(1 for _, line in done.lines if "does not run these servers yet" in line)
    cut = sum(1 for _, line in done.lines if "session(s) cut" in line)
    return f"; {runtime} runtime flips, {fallback} fell back to a reload, {cut} cut sessions"


def phases(done: Timed) -> str:
    """Per host, from the progress lines: taken out of traffic (flip, record, drain wait), reload
    (pointer, signal, replaced, settle, health check), put back (flip, record)."""
    def at(pattern: str, after: float = -1.0) -> float | None:
        return next((t for t, line in done.lines if t > after and re.search(pattern, line)),
                    None)

    parts = []
    for host in ("app1", "app2"):
        take, signalled = at(rf"^» take {host} out"), at(rf"^» reload {host} ")
        if take is None or signalled is None:
            continue
        put = at(rf"^» put {host} back", signalled)
        back = (at(r"^» (take|verify)", put) or done.wall) - put if put is not None else None
        parts.append(f"{host} out {signalled - take:.2f} + reload "
                     f"{(put if put is not None else done.wall) - signalled:.2f}"
                     + (f" + back {back:.2f} s" if back is not None else " s (exit)"))
    return "; ".join(parts)


def reload_run(service: SwooleService, release: str, *, keepalive: bool, rate: float) -> str:
    """A good reload onto `release` under load: what the clients saw and what it took."""
    before = masters(service)
    source = service.release(release)
    load = Load(service, keepalive, rate).start()
    done = timed_cli(service, "reload", "--source", str(source), "--release", release)
    load.finish()
    if done.returncode != 0:
        raise SystemExit(f"reload {release} exited {done.returncode}:\n{done.stderr}\n"
                         f"{json.dumps(done.data, indent=1)}")
    kept = masters(service) == before
    per_host = ", ".join(f"{h['host']} {h['seconds']:.2f} s ({h['replaced']} replaced)"
                         for h in done.data["hosts"])
    return (f"  {'keep-alive    ' if keepalive else 'new connection'} {load.counts()}; "
            f"reload {per_host}; total {done.data['seconds']:.2f} s, wall {done.wall:.2f} s "
            f"({phases(done)}{flips(done)}); "
            f"masters kept: {kept}; {trees(service)}; {release} answered by "
            f"{serving(service, release)}")


def trees(service: SwooleService) -> str:
    """What runs under each blue master: a manager and its workers, or no manager (it died)."""
    parts = []
    for host, pid in masters(service).items():
        names = list(descendants(pid).values()) if running(pid) else []
        workers = sum(1 for name in names if WORKER.search(name))
        manager = any(name.endswith(": manager") for name in names)
        parts.append(f"{host} " + ("master gone" if not running(pid) else
                                   f"manager + {workers} workers" if manager else
                                   f"NO MANAGER, {workers} workers"))
    return ", ".join(parts)


def serving(service: SwooleService, release: str, attempts: int = 40) -> list[str]:
    """The app hosts whose blue workers answer `release` through the balancer (bounded: a host
    whose workers are gone makes its requests time out after 1 s)."""
    workers = {pid: host for host, master in masters(service).items()
               for pid in descendants(master)}
    seen: set[str] = set()
    server = service.nginx[service.balancer_hosts[0]]
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(server.url, timeout=1) as response:
                body = response.read().decode()
        except OSError:
            continue
        pid = body.rsplit(" pid ", 1)[-1].strip()
        if body.startswith(f"release {release} (blue)") and pid.isdigit():
            seen.add(workers.get(int(pid), "?"))
        if len(seen & set(service.app_hosts)) == len(service.app_hosts):
            break
        time.sleep(0.02)
    return sorted(seen)


def broken_run(service: SwooleService, broken: str, good: str, *, keepalive: bool,
               rate: float) -> tuple[str, float]:
    """A reload onto code that does not parse, under load; then the restore (`reload --release
    GOOD`, again if it fails, as a user would), under load."""
    before = masters(service)
    source = service.release(broken, crash=True)
    load = Load(service, keepalive, rate).start()
    done = timed_cli(service, "reload", "--source", str(source), "--release", broken)
    load.finish()
    state = service.state()["colours"]["blue"]
    failures = done.data.get("error", {}).get("failures") or [{}]
    said = str(failures[0].get("message", "")).splitlines()[0] if failures[0] else ""
    lines = [f"  {'keep-alive    ' if keepalive else 'new connection'} bluegreen reload of "
             f"broken code: {load.counts()}; exit {done.returncode} after {done.wall:.2f} s "
             f"({phases(done)}{flips(done)}); state: blue {state['status']}, release "
             f"{state['release']}, out of traffic {state['out']}; masters kept: "
             f"{masters(service) == before}; {trees(service)}",
             f"      it said: {said[:150]}"]
    for attempt in range(1, RESTORE_ATTEMPTS + 1):
        load = Load(service, keepalive, rate).start()
        restored = timed_cli(service, "reload", "--release", good)
        load.finish()
        state = service.state()["colours"]["blue"]
        per_host = ", ".join(f"{h['host']} {h['replaced']} replaced in {h['seconds']:.2f} s"
                             for h in restored.data.get("hosts", []))
        failures = restored.data.get("error", {}).get("failures") or [{}]
        said = str(failures[0].get("message", "")).splitlines()[0] if failures[0] else ""
        lines.append(f"      restore `reload --release {good}` (attempt {attempt}): "
                     f"{load.counts()}; exit {restored.returncode} after {restored.wall:.2f} s "
                     f"({per_host or said[:150]}); state: blue {state['status']}, release "
                     f"{state['release']}, out {state['out']}; {trees(service)}")
        if restored.returncode == 0:
            lines[-1] += f"; {good} answered by {serving(service, good)}"
            break
    return "\n".join(lines), done.wall


def point(service: SwooleService, host: str, release: str) -> None:
    """What bluegreen (or a playbook) does to put new code in place: swap the colour's symlink."""
    root = service.app_root(host)
    subprocess.run(["ln", "-sfn", "--", f"releases/{release}", str(root / ".blue.next")],
                   check=True)
    subprocess.run(["mv", "-Tf", "--", str(root / ".blue.next"), str(root / "blue")], check=True)


def baseline_run(service: SwooleService, broken: str, good: str, *, keepalive: bool,
                 rate: float, window: float) -> str:
    """Without bluegreen: the broken code copied next to the others on both hosts, the pointer
    moved to it and `kill -USR1` sent to both masters (started by this script), under the same
    load for as long as bluegreen's broken reload took; then back to the good code the same
    way."""
    source = service.release(broken, crash=True)
    pids = masters(service)
    for host in pids:
        shutil.copytree(source, service.app_root(host) / "releases" / broken)
    load = Load(service, keepalive, rate).start()
    for host, pid in pids.items():
        point(service, host, broken)
        os.kill(pid, signal.SIGUSR1)
    signalled, answered = time.monotonic(), load.answered()
    seen: set[int] = set()  # processes seen under the masters while the window runs
    while time.monotonic() - signalled < window:
        for pid in pids.values():
            seen |= set(descendants(pid))
        time.sleep(0.1)
    load.finish(tail=1.0)
    line = (f"  {'keep-alive    ' if keepalive else 'new connection'} plain kill -USR1 of both "
            f"masters: {load.counts()}, answered after the signal: "
            f"{load.answered() - answered}, window {window:.2f} s + 1 s; {len(seen)} distinct "
            "processes seen under the masters (crash loop)")
    for host, pid in pids.items():
        point(service, host, good)
        os.kill(pid, signal.SIGUSR1)
    time.sleep(2)
    return (line + f"\n      back to {good} with kill -USR1: {good} answered by "
            f"{serving(service, good)}; {trees(service)}")


def split(done: Timed) -> list[str]:
    """Where a reload's time goes, from its time-stamped progress lines (and [ssh] lines)."""
    lines = done.lines
    seconds = {h["host"]: h["seconds"] for h in done.data["hosts"]}

    def at(pattern: str, after: float = -1.0) -> float:
        return next(t for t, line in lines if t > after and re.search(pattern, line))

    def last_balancer_line(start: float, end: float) -> float:
        """When the last balancer step between two phases was reported (the flip done)."""
        return max(t for t, line in lines if start < t < end and re.match(r"\s+\S+ lb\d ", line))

    def commands(start: float, end: float) -> int:
        return sum(1 for t, line in lines if start <= t < end and line.startswith("[ssh]"))

    out = []
    first = at(r"^» check \d+")
    out.append(f"    start-up, connect, upload: {first:.2f} s ({commands(0, first)} SSH commands)")
    for host in seconds:
        take = at(rf"^» take {host} out")
        signal_phase = at(rf"^» reload {host} ")
        flipped = last_balancer_line(take, signal_phase)
        healthy = at(rf"^\s+ok {host} .*healthy", signal_phase)
        put = at(rf"^» put {host} back")
        following = at(r"^» (take|verify)", put)
        flipped_back = last_balancer_line(put, following)
        out.append(
            f"    {host}: take-out flip {flipped - take:.2f} s, record + drain wait "
            f"{signal_phase - flipped:.2f} s ({commands(take, signal_phase)} SSH commands); "
            f"signal → replaced + settle {seconds[host]:.2f} s (≈ {seconds[host] - SETTLE:.2f} "
            f"+ {SETTLE:g}), pointer, ps, log and health check "
            f"{healthy - signal_phase - seconds[host]:.2f} s ({commands(signal_phase, put)} SSH "
            f"commands); put-back flip {flipped_back - put:.2f} s + record "
            f"{following - flipped_back:.2f} s ({commands(put, following)} SSH commands); "
            f"{following - take:.2f} s for the host")
    end = at(r"^» verify")
    out.append(f"    verify and write state: {done.wall - end:.2f} s ({commands(end, 1e9)} SSH "
               f"commands); {commands(0, 1e9)} SSH commands in all, "
               f"{sum(1 for _, line in lines if line.startswith('[tunnel]'))} tunnels, "
               f"wall {done.wall:.2f} s")
    return out


def measure(fleet: object, root: Path, setup: str, *, runs: int, rate: float,
            broken: bool, nginx_keepalive_timeout: str | None) -> list[str]:
    lines = [f"{setup}" + (f" (keepalive_timeout {nginx_keepalive_timeout})"
                           if nginx_keepalive_timeout else "") + ":"]
    print(lines[0], flush=True)
    service = swoole_service(fleet, root / "reloads", setup, nginx_keepalive_timeout)
    try:
        release = 1
        for run in range(1, runs + 1):
            for keepalive in (False, True):
                release += 1
                lines.append(f"  run {run} " + reload_run(service, f"v{release}",
                                                          keepalive=keepalive, rate=rate)[2:])
                print(lines[-1], flush=True)
        release += 1  # the time split: one more reload, traced, without load
        traced = timed_cli(service, "reload", "--source", str(service.release(f"v{release}")),
                           "--release", f"v{release}", traced=True)
        if traced.returncode != 0:
            raise SystemExit(f"traced reload exited {traced.returncode}:\n{traced.stderr}")
        parts = ["  time split of one more reload (traced, no load):", *split(traced)]
        lines += parts
        print("\n".join(parts), flush=True)
    finally:
        close(service)
    if not broken:
        return lines
    for run in range(1, runs + 1):
        for keepalive in (False, True):
            # each on a service of its own: a crash loop can leave a master without its manager
            # (the output says so), which nothing but a restart repairs
            name = f"{run}{'k' if keepalive else 'n'}"
            service = swoole_service(fleet, root / f"broken{name}", setup,
                                     nginx_keepalive_timeout)
            try:
                text, window = broken_run(service, f"broken{name}", "v1", keepalive=keepalive,
                                          rate=rate)
            finally:
                orphans = close(service)
            text += f"\n      closed: {orphans} orphaned worker(s) of a dead manager stopped"
            lines.append(f"  run {run} " + text[2:])
            print(lines[-1], flush=True)
            service = swoole_service(fleet, root / f"baseline{name}", setup,
                                     nginx_keepalive_timeout)
            try:
                text = baseline_run(service, f"broken{name}", "v1", keepalive=keepalive,
                                    rate=rate, window=window)
            finally:
                orphans = close(service)
            text += f"\n      closed: {orphans} orphaned worker(s) of a dead manager stopped"
            lines.append(f"  run {run} " + text[2:])
            print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--setups", default="nginx,haproxy-runtime")
    parser.add_argument("--nginx-keepalive-timeout", default=None,
                        help="also set nginx's keepalive_timeout (e.g. 0) for the run")
    parser.add_argument("--no-broken", action="store_true",
                        help="skip the broken-code reloads and their baseline")
    args = parser.parse_args()
    require_swoole_or_exit()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp) / "fleet", FLEET_ADDRESSES)
        try:
            for setup in args.setups.split(","):
                lines += measure(fleet, Path(tmp) / setup, setup, runs=args.runs,
                                 rate=args.rate, broken=not args.no_broken,
                                 nginx_keepalive_timeout=args.nginx_keepalive_timeout)
        finally:
            fleet.close()
    print(f"\n{args.rate:g} req/s through the balancer from {WORKERS} client threads, "
          f"2 app hosts × Swoole (2 workers + 1 task worker), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    print("\n".join(lines))


def require_swoole_or_exit() -> None:
    import pytest

    try:
        require_swoole()
    except pytest.skip.Exception as skipped:
        raise SystemExit(str(skipped)) from None


if __name__ == "__main__":
    main()
