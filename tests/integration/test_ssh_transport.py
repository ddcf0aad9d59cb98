"""The SSH transport against real sshd processes on loopback."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import msgspec
import pytest

from bluegreen.errors import CommandTimeout, ConnectError
from bluegreen.inventory import HostSpec, SSHSettings
from bluegreen.release import FilePayload
from bluegreen.shell import Command
from bluegreen.transport.base import get_file, put_file
from bluegreen.transport.ssh import SSHTransport, jumps, openssh, resolve_target
from tests.fleet import Fleet, free_port

NASTY = "$(touch PWNED1) `touch PWNED2`; touch PWNED3 && echo 'single' \"double\" \\ back\nline2"


def settings(fleet: Fleet, **changes: object) -> SSHSettings:
    values: dict[str, object] = {
        "user": "root", "identity_file": str(fleet.client_key),
        "known_hosts": str(fleet.known_hosts), "config_file": None, "use_agent": False,
        "connect_timeout": 5, "command_timeout": 30,
    }
    values.update(changes)
    return msgspec.convert(values, SSHSettings)


def connect(fleet: Fleet, name: str, *, channels_ahead: bool = False) -> SSHTransport:
    host = fleet[name]
    conf = settings(fleet)
    return SSHTransport.connect(
        resolve_target(HostSpec(name=name, address=host.address, port=host.port), conf), conf,
        channels_ahead=channels_ahead)


@pytest.fixture(params=[False, True], ids=["channel-per-command", "channels-ahead"])
def app1(fleet: Fleet, request: pytest.FixtureRequest) -> Iterator[SSHTransport]:
    """Every test runs twice: with a channel opened for each command, and with the next
    command's channel opened ahead (as for a balancer)."""
    transport = connect(fleet, "app1", channels_ahead=request.param)
    try:
        yield transport
    finally:
        transport.close()


def channel_openers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread that opens each session channel from now on."""
    import paramiko

    opened_by: list[str] = []
    open_session = paramiko.Transport.open_session

    def recorded(self: paramiko.Transport, *args: object, **kwargs: object) -> object:
        opened_by.append(threading.current_thread().name)
        return open_session(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(paramiko.Transport, "open_session", recorded)
    return opened_by


def test_with_channels_ahead_each_command_runs_on_a_channel_opened_before_it(
        fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    opened_by = channel_openers(monkeypatch)
    transport = connect(fleet, "app1", channels_ahead=True)
    try:
        outputs = [transport.run(Command("echo", str(n))).stdout for n in range(3)]
        assert transport.run(Command("cat"), stdin=b"input intact").stdout == "input intact"
    finally:
        transport.close()
    assert outputs == ["0\n", "1\n", "2\n"]
    # one opened at connect, then one ahead of each command: none opened by a command itself
    assert len(opened_by) >= 4 and set(opened_by) == {"open a channel ahead"}


def test_a_channel_held_too_long_is_not_used(fleet: Fleet, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    """sshd may close an idle session channel (ChannelTimeout): one held past
    `ChannelAhead.FRESH_FOR` is closed unused, and the command opens its own."""
    from bluegreen.transport.ssh.channel import ChannelAhead

    monkeypatch.setattr(ChannelAhead, "FRESH_FOR", 0.0)
    opened_by = channel_openers(monkeypatch)
    transport = connect(fleet, "app1", channels_ahead=True)
    try:
        assert [transport.run(Command("echo", str(n))).stdout for n in range(2)] == ["0\n",
                                                                                   "1\n"]
    finally:
        transport.close()
    assert opened_by.count("MainThread") == 2


def test_runs_commands_and_keeps_exit_status_as_data(app1: SSHTransport) -> None:
    ok = app1.run(Command("sh", "-c", "echo out; echo err >&2"))
    assert (ok.exit_status, ok.stdout, ok.stderr) == (0, "out\n", "err\n")
    failed = app1.run(Command("sh", "-c", "exit 7"))
    assert failed.exit_status == 7 and not failed.ok


def test_a_command_that_ends_before_reading_its_input_gives_its_exit_status(
        app1: SSHTransport) -> None:
    """A lock attempt that finds the lock held exits at once, before its input (the owner
    record) is sent: that is its exit status, never a lost connection. The race is the
    host's to win: many attempts make it likely (before the fix, with both CPUs busy, 1 run in
    4 of 300 attempts failed)."""
    started = time.monotonic()
    for _ in range(300):
        result = app1.run(Command("sh", "-c", "exit 75"), stdin=b'{"owner": "deploy"}\n' * 4)
        assert result.exit_status == 75
        if time.monotonic() - started > 20:
            break
    assert app1.run(Command("echo", "still connected")).stdout == "still connected\n"


def test_large_output_on_both_streams_does_not_deadlock(app1: SSHTransport) -> None:
    result = app1.run(Command.script(
        'head -c 3000000 /dev/zero | tr "\\0" a; head -c 3000000 /dev/zero | tr "\\0" b >&2'),
        timeout=20)
    assert len(result.stdout) == 3_000_000 and set(result.stdout) == {"a"}
    assert len(result.stderr) == 3_000_000 and set(result.stderr) == {"b"}


def test_command_timeout_fires_on_a_remote_sleep(app1: SSHTransport) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as caught:
        app1.run(Command("sleep", "60"), timeout=1)
    assert time.monotonic() - started < 5
    assert caught.value.where == "app1" and "sleep 60" in caught.value.message
    # the connection is still usable afterwards
    assert app1.run(Command("echo", "still here")).stdout == "still here\n"


def test_a_timed_out_command_is_killed_on_the_host_with_what_it_started(
        app1: SSHTransport) -> None:
    marker = "61.4242"  # a sleep no one else runs
    with pytest.raises(CommandTimeout) as caught:
        app1.run(Command.script(f"sleep {marker} & sleep {marker}; wait"), timeout=1)
    assert "killed on the host" in caught.value.message
    deadline = time.monotonic() + 15
    while _running(f"sleep {marker}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(f"sleep {marker}")


def _running(command_line: str) -> bool:
    import subprocess

    return subprocess.run(["pgrep", "-f", command_line], capture_output=True).returncode == 0


def test_an_upload_to_a_command_that_stops_reading_times_out(app1: SSHTransport) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as caught:  # the SSH window fills, then nothing moves
        app1.run(Command("sleep", "60"), stdin=b"x" * (32 << 20), timeout=2)
    assert time.monotonic() - started < 10
    assert "stopped reading its input" in caught.value.message
    assert app1.run(Command("echo", "still here")).stdout == "still here\n"


def test_values_reach_the_remote_command_as_literal_text(app1: SSHTransport, tmp_path: Path
                                                         ) -> None:
    workdir = app1.run(Command("mktemp", "-d", "-p", str(tmp_path))).stdout.strip()
    result = app1.run(Command.script('cd "$1" && printf %s "$2" && ls -A', workdir, NASTY))
    assert result.stdout == NASTY  # printed verbatim, and `ls -A` found no PWNED file
    direct = app1.run(Command("printf", "%s", NASTY))
    assert direct.stdout == NASTY
    assert not list(Path("/").glob("PWNED*")) and not list(Path(workdir).glob("PWNED*"))


def test_put_writes_atomically_with_the_mode_and_get_reads_back(app1: SSHTransport,
                                                                 tmp_path: Path) -> None:
    target = tmp_path / "sub dir" / "state.json"
    put_file(app1, b'{"generation": 1}\n', str(target), mode=0o640)
    assert target.read_bytes() == b'{"generation": 1}\n'
    assert target.stat().st_mode & 0o777 == 0o640
    put_file(app1, b"second\n", str(target))
    assert target.read_text() == "second\n" and target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]  # no temp file left
    assert get_file(app1, str(target)) == "second\n"
    assert get_file(app1, str(tmp_path / "missing")) is None


def test_tunnel_reaches_a_port_on_the_host(app1: SSHTransport, fleet: Fleet) -> None:
    address = fleet["app1"].address
    server = http.server.ThreadingHTTPServer((address, free_port(address)), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with app1.tunnel(server.server_address[1], address=address) as (host, port):
            assert host == "127.0.0.1"
            with httpx.Client() as client:
                for _ in range(3):
                    response = client.get(f"http://{host}:{port}/hello")
                    assert response.status_code == 200 and response.text == "hello via tunnel"
    finally:
        server.shutdown()
        server.server_close()


def test_proxy_jump_chains_through_the_jump_host(fleet: Fleet) -> None:
    bastion, app2 = fleet["bastion"], fleet["app2"]
    conf = settings(fleet, jump=f"root@{bastion.address}:{bastion.port}")
    target = resolve_target(HostSpec(name="app2", address=app2.address, port=app2.port), conf)
    assert [j.address for j in target.jumps] == [bastion.address]
    before = (bastion.dir / "sshd.log").read_text().count("Accepted publickey")
    transport = SSHTransport.connect(target, conf)
    try:
        assert transport.run(Command("echo", "jumped")).stdout == "jumped\n"
        log = (bastion.dir / "sshd.log").read_text()
        assert log.count("Accepted publickey") == before + 1
    finally:
        transport.close()


def test_connections_through_one_jump_host_share_its_connection(fleet: Fleet) -> None:
    """A fleet behind a bastion: one authenticated connection to it, opened at once by many
    hosts' connections (the bastion's MaxStartups refuses beyond 10 by default), closed by
    the last of them."""
    bastion = fleet["bastion"]
    conf = settings(fleet, jump=f"root@{bastion.address}:{bastion.port}")
    targets = [resolve_target(HostSpec(name=f"{name}-{i}", address=fleet[name].address,
                                       port=fleet[name].port), conf)
               for i in range(6) for name in ("app1", "app2")]
    accepted = (bastion.dir / "sshd.log").read_text().count("Accepted publickey")
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        transports = list(pool.map(lambda t: SSHTransport.connect(t, conf), targets))
    try:
        assert (bastion.dir / "sshd.log").read_text().count("Accepted publickey") == accepted + 1
        for transport in transports[:-1]:
            transport.close()
        last = transports[-1]
        assert last.run(Command("echo", "still through")).stdout == "still through\n"
    finally:
        transports[-1].close()
    assert not jumps._shared  # the last user closed the bastion's connection
    # the next operation opens it again
    transport = SSHTransport.connect(targets[0], conf)
    try:
        assert transport.run(Command("echo", "again")).stdout == "again\n"
    finally:
        transport.close()
    assert (bastion.dir / "sshd.log").read_text().count("Accepted publickey") == accepted + 2


def test_ssh_config_supplies_hostname_port_user_identity_and_proxyjump(fleet: Fleet,
                                                                       tmp_path: Path) -> None:
    bastion, app1 = fleet["bastion"], fleet["app1"]
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host jumpbox\n  HostName {bastion.address}\n  Port {bastion.port}\n  User root\n"
        f"  IdentityFile {fleet.client_key}\n"
        f"Host shop-app1\n  HostName {app1.address}\n  Port {app1.port}\n  User root\n"
        f"  IdentityFile {fleet.client_key}\n  ProxyJump jumpbox\n"
    )
    conf = settings(fleet, user=None, identity_file=None, config_file=str(config))
    target = resolve_target(HostSpec(name="shop-app1"), conf)
    assert (target.address, target.port, target.user) == (app1.address, app1.port, "root")
    assert target.jumps[0].address == bastion.address
    transport = SSHTransport.connect(target, conf)
    try:
        assert transport.run(Command("hostname")).ok
    finally:
        transport.close()


def test_a_lost_connection_is_a_connect_error_naming_the_host(fleet: Fleet) -> None:
    transport = connect(fleet, "app2")
    transport._client.close()
    with pytest.raises(ConnectError) as caught:
        transport.run(Command("true"))
    assert caught.value.where == "app2"


def test_a_connection_lost_with_a_channel_opened_ahead_is_a_connect_error(fleet: Fleet
                                                                          ) -> None:
    """The channel opened ahead dies with the connection: the next command says the
    connection was lost, at once, as without one."""
    import socket

    transport = connect(fleet, "app2", channels_ahead=True)
    try:
        assert transport.run(Command("true")).ok  # the next command's channel is opening
        transport._client.get_transport().sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        started = time.monotonic()
        with pytest.raises(ConnectError) as caught:
            transport.run(Command("true"))
        assert caught.value.where == "app2" and time.monotonic() - started < 5
    finally:
        transport.close()


def _release_file(tmp_path: Path, size: int) -> tuple[FilePayload, str]:
    path = tmp_path / "release.tar.gz"
    data = os.urandom(size)
    path.write_bytes(data)
    return FilePayload(path.open("rb"), size), hashlib.sha256(data).hexdigest()


_RECEIVE_AND_SAY_WHO_SENT = 'sha256sum | cut -d" " -f1; echo "$SSH_CONNECTION" | cut -d" " -f2'


def _paramiko_port(transport: SSHTransport) -> str:
    return str(transport._client.get_transport().sock.getsockname()[1])  # type: ignore[union-attr]


def test_a_large_upload_goes_through_openssh_pinned_to_the_verified_key(
        app1: SSHTransport, tmp_path: Path) -> None:
    payload, digest = _release_file(tmp_path, openssh.WORTH_IT + 12345)
    progress: list[int] = []
    result = app1.run(Command.script(_RECEIVE_AND_SAY_WHO_SENT), stdin=payload,
                      sent=progress.append).check()
    checksum, client_port = result.stdout.split()
    assert checksum == digest
    assert client_port != _paramiko_port(app1)  # a connection of its own
    assert progress[-1] == payload.size
    failed = app1.run(Command.script("cat > /dev/null; echo no >&2; exit 7"), stdin=payload)
    assert (failed.exit_status, failed.stderr) == (7, "no\n")
    small = app1.run(Command.script(_RECEIVE_AND_SAY_WHO_SENT), stdin=b"x" * 1000).check()
    assert small.stdout.split()[1] == _paramiko_port(app1)


@pytest.mark.parametrize("why", ["switched off", "no ssh on PATH"])
def test_the_built_in_client_sends_it_when_openssh_is_not_used(
        fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, why: str) -> None:
    conf = settings(fleet, openssh_uploads=why != "switched off")
    host = fleet["app1"]
    transport = SSHTransport.connect(
        resolve_target(HostSpec(name="app1", address=host.address, port=host.port), conf), conf)
    if why == "no ssh on PATH":
        monkeypatch.setenv("PATH", str(tmp_path))
    payload, digest = _release_file(tmp_path, openssh.WORTH_IT)
    try:
        result = transport.run(Command.script(_RECEIVE_AND_SAY_WHO_SENT), stdin=payload).check()
        assert result.stdout.split() == [digest, _paramiko_port(transport)]
    finally:
        transport.close()


def test_openssh_refuses_a_host_whose_key_is_not_the_verified_one(
        app1: SSHTransport, fleet: Fleet, tmp_path: Path) -> None:
    binary = openssh.client()
    assert binary is not None
    payload, digest = _release_file(tmp_path, 1 << 20)

    def send_pinned_to(name: str) -> openssh.Sent | None:
        key_type, key = fleet[name].host_key.with_suffix(".pub").read_text().split()[:2]
        return openssh.send(binary, app1.target, openssh.PinnedKey(key_type, key),
                            "sha256sum", payload, deadline=time.monotonic() + 20,
                            connect_timeout=5, use_agent=False)

    assert send_pinned_to("app2") is None  # app2's key, app1 answering: no connection
    sent = send_pinned_to("app1")
    assert sent is not None and sent.status == 0 and sent.stdout.split()[0] == digest.encode()


def test_an_openssh_upload_to_a_command_that_stops_reading_times_out(
        app1: SSHTransport, tmp_path: Path) -> None:
    payload, _ = _release_file(tmp_path, 4 * openssh.WORTH_IT)
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        app1.run(Command("sleep", "60"), stdin=payload, timeout=2)
    assert time.monotonic() - started < 10
    assert not _running(f"-- {app1.target.address} timeout -k 5 3 sleep 60")  # no ssh left
    assert app1.run(Command("echo", "still here")).stdout == "still here\n"


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello via tunnel"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass
