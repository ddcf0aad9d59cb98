"""The loopback test fleet: one real OpenSSH sshd per host, each on its own 127.x address with its
own host key, an authorized client key made for the run, and a known_hosts file for the client.

Started once per pytest session; readiness is polled, never slept for; teardown stops only the
PIDs it started."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
# each sshd runs under a subreaper, so that an app server a test stops is reaped at once (why:
# tests/reaper.py)
UNDER_REAPER = (sys.executable, str(Path(__file__).with_name("reaper.py")))


@dataclass
class FleetHost:
    name: str
    address: str
    port: int
    dir: Path
    host_key: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def known_hosts_line(self) -> str:
        key = (self.host_key.with_suffix(".pub")).read_text().split()
        return f"[{self.address}]:{self.port} {key[0]} {key[1]}\n"


@dataclass
class Fleet:
    root: Path
    client_key: Path
    known_hosts: Path
    hosts: dict[str, FleetHost] = field(default_factory=dict)
    pids: list[int] = field(default_factory=list)

    def __getitem__(self, name: str) -> FleetHost:
        return self.hosts[name]

    def add_host(self, name: str, address: str, *, forwarding: bool = True) -> FleetHost:
        host_dir = self.root / "hosts" / name
        host_dir.mkdir(parents=True)
        key = host_dir / "ssh_host_ed25519_key"
        _keygen(key)
        host = FleetHost(name, address, free_port(address), host_dir, key)
        home = host_dir / "home"
        home.mkdir()
        # A stock, empty shell profile: the machine's own root profile runs slow init code that
        # would dominate every remote command's time.
        (home / ".bashrc").write_text("")
        (home / ".profile").write_text("")
        config = host_dir / "sshd_config"
        config.write_text(
            f"ListenAddress {address}:{host.port}\n"
            f"HostKey {key}\n"
            f"PidFile {host_dir}/sshd.pid\n"
            f"AuthorizedKeysFile {self.root}/authorized_keys\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "UseDNS no\n"
            f"AllowTcpForwarding {'yes' if forwarding else 'no'}\n"
            "MaxSessions 100\n"
            "MaxStartups 100:30:200\n"
            f"SetEnv HOME={home}\n"
            "Subsystem sftp internal-sftp\n"
        )
        self.hosts[name] = host
        self.start(name)
        with self.known_hosts.open("a") as handle:
            handle.write(host.known_hosts_line)
        return host

    def start(self, name: str) -> None:
        host = self.hosts[name]
        log = (host.dir / "sshd.log").open("ab")
        host.process = subprocess.Popen(
            [*UNDER_REAPER, SSHD, "-D", "-e", "-f", str(host.dir / "sshd_config")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )
        self.pids.append(host.process.pid)
        wait_for_banner(host.address, host.port, process=host.process)

    def stop(self, name: str) -> None:
        host = self.hosts[name]
        if host.process is not None:
            stop_process(host.process)
        host.process = None

    def close(self) -> None:
        for host in self.hosts.values():
            if host.process is not None and host.process.poll() is None:
                os.kill(host.process.pid, signal.SIGTERM)
        for host in self.hosts.values():
            if host.process is not None:
                try:
                    host.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    host.process.kill()


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str],
                 timeout: float = 10) -> None:
    """Stop a process this run started: SIGTERM, then SIGKILL if it is still there after
    `timeout` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def start_fleet(root: Path, names: dict[str, str]) -> Fleet:
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    client_key = root / "client_ed25519"
    _keygen(client_key)
    (root / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
    known_hosts = root / "known_hosts"
    known_hosts.write_text("")
    fleet = Fleet(root, client_key, known_hosts)
    try:
        for name, address in names.items():
            fleet.add_host(name, address)
    except BaseException:
        fleet.close()
        raise
    return fleet


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True, stdin=subprocess.DEVNULL,
    )


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def wait_for_banner(address: str, port: int, *, process: subprocess.Popen[bytes],
                    timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd on {address}:{port} exited with {process.returncode}")
        try:
            with socket.create_connection((address, port), timeout=1) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"sshd on {address}:{port} did not answer within {timeout} s")


def wait_for_port(address: str, port: int, *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {address}:{port} after {timeout} s")


@dataclass
class SilentServer:
    """Accepts TCP connections and never answers: a host whose sshd hangs."""

    address: str
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind((self.address, 0))
        self.sock.listen(16)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()


def iter_hosts(fleet: Fleet) -> Iterator[FleetHost]:
    return iter(fleet.hosts.values())
