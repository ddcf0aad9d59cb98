"""`bluegreen check`: everything later commands need from each host, as ✓/✗ rows. Reads only:
the one thing it creates is the state directory (mode 700) on balancer hosts."""

from __future__ import annotations

from dataclasses import dataclass

from bluegreen.app import listener, listeners
from bluegreen.balancer import site_for
from bluegreen.balancer.base import parse_version
from bluegreen.errors import BluegreenError, ConnectError, FanOutError
from bluegreen.fanout import fan_out
from bluegreen.inventory import HostSpec, Inventory
from bluegreen.model import Colour
from bluegreen.shell import Command
from bluegreen.transport.base import Transport, tail

# failure categories, mapped to exit codes by `exit_code_for`
CONNECT, HOST, BALANCER = "connect", "host", "balancer"


@dataclass(frozen=True)
class CheckRow:
    host: str
    check: str
    ok: bool
    detail: str
    category: str = HOST
    version: str | None = None  # of the software the row found (the balancer's)
    warning: bool = False  # passes, but a setting should change (the detail says how)

    def to_dict(self) -> dict[str, object]:
        found: dict[str, object] = {"host": self.host, "check": self.check, "ok": self.ok,
                                    "detail": self.detail}
        if self.version:
            found["version"] = self.version
        if self.warning:
            found["warning"] = True
        return found


def exit_code_for(rows: list[CheckRow]) -> int:
    failed = {row.category for row in rows if not row.ok}
    if not failed:
        return 0
    if CONNECT in failed or HOST in failed:
        return 3
    return 6


def run_checks(inventory: Inventory) -> list[CheckRow]:
    from bluegreen.connections import open_transport

    def check_host(host: HostSpec) -> list[CheckRow]:
        try:
            transport = open_transport(host, inventory)
        except BluegreenError as exc:
            return [CheckRow(host.name, "connect", False, exc.paragraph(), CONNECT)]
        try:
            return [CheckRow(host.name, "connect", True, _connect_detail(transport)),
                    *check_connected_host(inventory, host, transport)]
        except BluegreenError as exc:
            return [CheckRow(host.name, "connect", False, exc.paragraph(), CONNECT)]
        finally:
            transport.close()

    try:
        per_host = fan_out(inventory.all_hosts, check_host, step="check",
                           name=lambda h: h.name, parallelism=inventory.ssh.parallelism)
    except FanOutError as exc:  # only bugs get here: check_host reports its own failures
        raise exc.failures[0].error from exc
    return [row for rows in per_host for row in rows]


def check_connected_host(inventory: Inventory, host: HostSpec, transport: Transport
                         ) -> list[CheckRow]:
    rows: list[CheckRow] = []
    name = host.name
    sudo = inventory.ssh.sudo if host.sudo is None else host.sudo
    if sudo:
        result = transport.run(Command("true"))
        rows.append(CheckRow(name, "sudo", result.ok,
                             "sudo -n works" if result.ok else tail(result.stderr, 2)))
    if any(h.name == name for h in inventory.hosts.app):
        rows += _app_checks(inventory, host, transport)
    if any(h.name == name for h in inventory.hosts.balancer):
        rows += _balancer_checks(inventory, host, transport)
    return rows


def _app_checks(inventory: Inventory, host: HostSpec, transport: Transport) -> list[CheckRow]:
    rows: list[CheckRow] = []
    if inventory.app is not None:
        root = inventory.app_root_for(host)
        result = transport.run(Command.script(
            'mkdir -p -- "$1/releases" && test -w "$1/releases"', root))
        rows.append(CheckRow(host.name, "app root writable", result.ok,
                             root if result.ok
                             else tail(result.stderr, 2) or f"{root} not writable"))
    ports = [(colour, inventory.colours.spec(colour).port) for colour in Colour
             if host in inventory.colour_hosts(colour)]
    rows += [_port_row(inventory, host, transport, colour, port) for colour, port in ports]
    if inventory.app is not None and inventory.app.pid_file:
        rows += [row for colour, _ in ports
                 if (row := _signal_row(inventory, host, transport, colour)) is not None]
    if inventory.health.via == "host" and ports:
        # what host_probe's script picks: bash's own requests, else curl
        prober = transport.run(Command("sh", "-c", "command -v bash || command -v curl"))
        if prober.ok:
            found = prober.stdout.strip()
            rows.append(CheckRow(host.name, "health checks", True,
                                 f"{found.rsplit('/', 1)[-1]} on the host ({found}; "
                                 "health.via: host)"))
            return rows
    if inventory.health.via != "direct" and ports and getattr(transport, "target", None):
        rows.append(_forwarding_row(inventory, host, transport, ports[0][1]))
    return rows


def _forwarding_row(inventory: Inventory, host: HostSpec, transport: Transport, port: int
                    ) -> CheckRow:
    """Health checks go through SSH port forwarding: open a tunnel as they will."""
    from bluegreen.app import upstream_address

    try:
        with transport.tunnel(port, address=upstream_address(inventory, host)):
            pass
    except ConnectError as error:
        return CheckRow(host.name, "port forwarding", False, error.paragraph(), CONNECT)
    via = ("ssh" if inventory.health.via == "ssh"
           else "host, which has neither bash nor curl: its checks go through a forwarded "
                "port")
    return CheckRow(host.name, "port forwarding", True, f"allowed (health.via: {via})")


def _port_row(inventory: Inventory, host: HostSpec, transport: Transport, colour: Colour,
              port: int) -> CheckRow:
    check = f"{colour} port {port}"
    from bluegreen.app import upstream_address

    listening = transport.run(listeners(port, upstream_address(inventory, host)))
    if not listening.ok:
        return CheckRow(host.name, check, False,
                        f"cannot list sockets: {tail(listening.stderr, 2)}")
    if not listening.stdout.strip():
        return CheckRow(host.name, check, True, "free")
    owner = listener(listening.stdout)
    if inventory.app is not None:
        pointer = f"{inventory.app_root_for(host)}/{colour}"
        if transport.run(Command("test", "-L", pointer)).ok:
            return CheckRow(host.name, check, True, f"in use by {colour} ({owner})")
    return CheckRow(host.name, check, False,
                    f"in use by a process bluegreen did not start ({owner}); stop it or pick "
                    f"another port under colours.{colour}.port")


def _signal_row(inventory: Inventory, host: HostSpec, transport: Transport, colour: Colour
                ) -> CheckRow | None:
    """`reload` must be able to signal the running master: send it signal 0 through
    app.signal (a server run by another user answers EPERM to a plain kill)."""
    from bluegreen.app import AppStack, instance_specs
    assert inventory.app is not None and inventory.app.pid_file
    stack = AppStack(inventory, inventory.app)
    spec = next(s for s in instance_specs(inventory, colour) if s.host.name == host.name)
    release = stack.layout(host).current(transport, colour)
    pid = stack.read_pid(transport, spec, release)
    if pid is None:
        return None  # not running: nothing to signal yet
    sent = transport.run(stack.signal_command(spec, release, signal="0", pid=pid))
    return CheckRow(host.name, f"{colour} reload signal", sent.ok,
                    f"app.signal reaches the master {pid}" if sent.ok else
                    f"app.signal cannot signal the master {pid}: "
                    f"{sent.tail() or f'exit {sent.exit_status}'} (with another service user, "
                    "use e.g. `sudo -n -u USER kill -s {{ signal }} {{ pid }}`)")


def _balancer_checks(inventory: Inventory, host: HostSpec, transport: Transport
                     ) -> list[CheckRow]:
    rows: list[CheckRow] = []
    if inventory.balancer is not None:
        balancer = site_for(inventory, host).driver
        found = transport.run(Command.script(
            'command -v "$1" || exit; shift; "$@" 2>&1 | head -n 1',
            balancer.binary, balancer.binary, *balancer.version_args))
        path, _, version_line = found.stdout.strip().partition("\n")
        version = parse_version(version_line)
        rows.append(CheckRow(host.name, f"{balancer.kind} installed", found.ok,
                             (f"{path} ({balancer.kind} {version})" if version else path)
                             or f"{balancer.binary} not found on PATH", BALANCER,
                             version=version))
        if found.ok:
            valid = transport.run(balancer.validate_main_config())
            detail = "valid" if valid.ok else tail(valid.stderr or valid.stdout, 2)
            rows.append(CheckRow(host.name, f"{balancer.kind} config", valid.ok, detail, BALANCER))
        for advice in balancer.host_advice():
            fine, said = advice.judge(transport.run(advice.command))
            rows.append(CheckRow(host.name, advice.check, True, said, BALANCER,
                                 warning=not fine))
    state_dir = inventory.state_dir_for(host)
    result = transport.run(Command.script(
        'mkdir -p -m 700 -- "$1" && test -w "$1"', state_dir))
    rows.append(CheckRow(host.name, "state dir writable", result.ok,
                         state_dir if result.ok else tail(result.stderr, 2) or "not writable"))
    return rows


def _connect_detail(transport: Transport) -> str:
    target = getattr(transport, "target", None)
    if target is None:
        return "local"
    return f"{target.user}@{target.address}:{target.port}"
