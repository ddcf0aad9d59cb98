"""A colour's server stack on one app host: start, stop, is it running, and its log — the
inventory's command templates rendered with the instance's values, every value quoted."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import NamedTuple

from bluegreen.errors import CommandTimeout, HealthCheckFailed
from bluegreen.host_script import HostStep, reported, run_chain
from bluegreen.inventory import AppSettings, HostSpec, Inventory
from bluegreen.model import Colour, Instance
from bluegreen.release import ReleaseLayout, pruned
from bluegreen.render import render_command, render_command_text, render_text, uses_variable
from bluegreen.shell import Command, Secret
from bluegreen.transport.base import CommandResult, Transport, tail


@dataclass(frozen=True)
class InstanceSpec:
    """Everything needed to run one (host, colour): the values templates see."""

    host: HostSpec
    colour: Colour
    port: int
    address: str

    @property
    def instance(self) -> Instance:
        return Instance(self.host.name, self.colour, self.port)


def instance_specs(inventory: Inventory, colour: Colour) -> list[InstanceSpec]:
    port = inventory.colours.spec(colour).port
    return [InstanceSpec(host, colour, port, upstream_address(inventory, host))
            for host in inventory.colour_hosts(colour)]


def upstream_address(inventory: Inventory, host: HostSpec) -> str:
    override = inventory.balancer.upstream_address if inventory.balancer else None
    return override or host.address or host.name


class AppStack:
    def __init__(self, inventory: Inventory, settings: AppSettings):
        self.inventory = inventory
        self.settings = settings

    def layout(self, host: HostSpec) -> ReleaseLayout:
        return ReleaseLayout(self.inventory.app_root_for(host))

    def values(self, spec: InstanceSpec, release: str | None) -> dict[str, object]:
        layout = self.layout(spec.host)
        return {
            "service": self.inventory.service,
            "colour": spec.colour.value,
            "port": spec.port,
            "address": spec.address,
            "host": spec.host.name,
            "release": release or "",
            "release_dir": layout.release_dir(release) if release else "",
            "current_dir": layout.pointer(spec.colour),
            "app_root": layout.root,
        }

    def environment(self, spec: InstanceSpec, release: str | None) -> dict[str, str | Secret]:
        layout = self.layout(spec.host)
        env: dict[str, str | Secret] = dict(self.settings.env)
        env.update(self.inventory.resolved_secrets)
        env.update({
            "BLUEGREEN_SERVICE": self.inventory.service,
            "BLUEGREEN_COLOUR": spec.colour.value,
            "BLUEGREEN_PORT": str(spec.port),
            "BLUEGREEN_RELEASE": release or "",
            # the colour's pointer: code loaded through it follows `reload --source`
            "BLUEGREEN_CURRENT": layout.pointer(spec.colour),
        })
        return env

    def start_command(self, spec: InstanceSpec, release: str) -> Command:
        """The start template, run from the release directory with stdio sent to a start log
        (a daemon that kept our stdout open would hold the SSH channel open forever)."""
        text = render_command_text(self.settings.start, self.values(spec, release),
                                   where="app.start")
        layout = self.layout(spec.host)
        log = f"{layout.root}/.bluegreen-start-{spec.colour}.log"
        script = ('cd -- "$1" || exit; sh -c "$2" </dev/null >"$3" 2>&1; status=$?; '
                  '[ ! -s "$3" ] || cat -- "$3"; exit $status')
        return Command.script(script, layout.release_dir(release), text, log,
                              env=self.environment(spec, release))

    def stop_command(self, spec: InstanceSpec, release: str | None) -> Command:
        return render_command(self.settings.stop, self.values(spec, release), where="app.stop")

    def status_command(self, spec: InstanceSpec, release: str | None) -> Command:
        if self.settings.status:
            return render_command(self.settings.status, self.values(spec, release),
                                  where="app.status")
        return _listening(spec.port, spec.address)

    def signal_command(self, spec: InstanceSpec, release: str | None, *, signal: str,
                       pid: int | str) -> Command:
        """`app.signal`: send `signal` (a name without SIG, or 0 to test the right to) to the
        master `pid`."""
        return render_command(self.settings.signal,
                              {**self.values(spec, release), "signal": signal, "pid": pid},
                              where="app.signal")

    def drain_command(self, spec: InstanceSpec, release: str | None, *,
                      pid: int | None = None) -> Command:
        """`app.drain`: ask the instance to let its long-lived connections go (`pid`: the
        master's, from app.pid_file, for templates that use `{{ pid }}`)."""
        assert self.settings.drain is not None
        values = self.values(spec, release)
        if pid is not None:
            values["pid"] = pid
        return render_command(self.settings.drain, values, where="app.drain")

    def drain_needs_pid(self) -> bool:
        return bool(self.settings.drain) and uses_variable(self.settings.drain or "", "pid")

    def pid_file(self, spec: InstanceSpec, release: str | None) -> str:
        assert self.settings.pid_file is not None
        return render_text(self.settings.pid_file, self.values(spec, release),
                           where="app.pid_file")

    def read_pid(self, transport: Transport, spec: InstanceSpec, release: str | None
                 ) -> int | None:
        """The master's pid from app.pid_file; None when the file is missing or holds no pid."""
        result = transport.run(Command.script('cat -- "$1" 2>/dev/null',
                                              self.pid_file(spec, release)))
        text = result.stdout.strip()
        return int(text) if result.ok and text.isdigit() else None

    def log_command(self, spec: InstanceSpec, release: str | None) -> Command | None:
        if not self.settings.log:
            return None
        return render_command(self.settings.log, self.values(spec, release), where="app.log")

    def is_running(self, transport: Transport, spec: InstanceSpec, release: str | None) -> bool:
        return transport.run(self.status_command(spec, release)).ok  # ssh.command_timeout

    def running_release(self, transport: Transport, spec: InstanceSpec, release: str | None, *,
                        then: Command | None = None, once: Command | None = None,
                        timeout: float | None = None) -> tuple[bool, str | None, str]:
        """In one round trip: whether the colour runs, the release its pointer names, and the
        output of `then`, run only when the colour runs (a health check; `timeout` must leave
        it room). `once`, a probe whose pass stands for `then`'s, runs first when it also shows
        what the default status check would (something listens): a healthy colour then costs
        the host no `ss`."""
        first = self._first(once)
        result = transport.run(Command.script(
            _RUNNING_RELEASE, self.layout(spec.host).pointer(spec.colour),
            self.status_command(spec, release).render(), then.render() if then else "",
            first.render() if first else ""), timeout=timeout)
        pointer, _, output = result.stdout.partition("\n")
        return result.ok, pointer or None, output

    def facts_of(self, transport: Transport, specs: list[InstanceSpec], *,
                 then: list[Command | None] | None = None,
                 once: list[Command | None] | None = None, timeout: float | None = None
                 ) -> list[InstanceFacts]:
        """`facts` of several instances of one host, in one round trip — unless `app.status`
        names the release or its directory (each is then checked with the release its pointer
        names, read first). `then[i]` runs after the facts of `specs[i]` when it runs (a
        health check; `timeout` must leave them room); its output is kept. `once[i]`: as for
        `running_release`."""
        commands = then or [None] * len(specs)
        firsts = [self._first(command) for command in once or [None] * len(specs)]
        if self.settings.status and any(uses_variable(self.settings.status, name)
                                        for name in ("release", "release_dir")):
            return [self._facts_apart(transport, spec, command, timeout)
                    for spec, command in zip(specs, commands, strict=True)]
        arguments: list[str] = []
        for spec, command, first in zip(specs, commands, firsts, strict=True):
            arguments += [str(self.layout(spec.host).pointer(spec.colour)),
                          self.status_command(spec, None).render(),
                          connection_filter(spec.address, spec.port),
                          command.render() if command else "",
                          first.render() if first else ""]
        result = transport.run(Command.script(_FACTS, *arguments), timeout=timeout)
        sections = result.stdout.split(_END_OF_FACTS + "\n")
        read = []
        for index in range(len(specs)):
            section = sections[index] if index < len(sections) else ""
            named, state, output = ([*section.split("\n", 2), "", ""])[:3]
            read.append((named or None, state == "running", output))
        running = [(spec.address, spec.port)
                   for spec, (_, runs, _) in zip(specs, read, strict=True) if runs]
        counts = iter(connections_of(local_ends(sections[-1] if len(sections) > len(specs)
                                                else ""), running))
        return [InstanceFacts(named, runs, next(counts) if runs else 0, output if runs else "")
                for named, runs, output in read]

    def _first(self, once: Command | None) -> Command | None:
        """`once` when its pass shows what the status check would: the default one asks
        whether something listens on the instance's port, which an answer to the probe shows.
        An `app.status` of the user's may ask more."""
        return once if self.settings.status is None else None

    def _facts_apart(self, transport: Transport, spec: InstanceSpec, then: Command | None,
                     timeout: float | None) -> InstanceFacts:
        pointer = self.layout(spec.host).current(transport, spec.colour)
        if not self.is_running(transport, spec, pointer):
            return InstanceFacts(pointer, False, 0)
        output = transport.run(then, timeout=timeout).stdout if then else ""
        return InstanceFacts(pointer, True, established(transport, spec.address, spec.port),
                             output)

    def log_tail(self, transport: Transport, spec: InstanceSpec, release: str | None) -> str:
        command = self.log_command(spec, release)
        if command is None:
            return ""
        result = transport.run(command, timeout=15)
        return (result.stdout + result.stderr).strip()

    def stop(self, transport: Transport, spec: InstanceSpec, release: str | None, *,
             command: Command | None = None, running: bool | None = None) -> None:
        """Stop the colour if it runs (`command`: the stop command a plan rendered; `running`:
        whether it runs, when just read)."""
        if not (self.is_running(transport, spec, release) if running is None else running):
            return
        stop = command or self.stop_command(spec, release)
        step = self._stop_step(spec, release, stop, running=True)
        self._judge_stop(transport.run(step.command, timeout=step.limit), spec, stop)

    def replace_and_start(self, transport: Transport, spec: InstanceSpec, release: str, *,
                          replaced: str | None, stop: Command, start: Command,
                          running: bool | None, count: bool = False,
                          hold_if_open: bool = False, prune: int | None = None) -> Replaced:
        """In one command: stop the colour's instance if it runs (`running`: whether it does,
        when just read; `replaced`: the release it ran), point the colour at `release`, check
        that nothing else holds its port, and start it. Each step's failure is reported as its
        own command's would be. With `count`, the instance's established connections are
        counted first (what the stop cuts); with `hold_if_open` too, a count above 0 ends the
        command there, before anything changed (`Replaced.held`: drain them, then call again).
        With `prune`, once started, the host's releases beyond the `prune` newest that no colour
        points at are removed — those the flip leaves unused — in the same command; a prune
        that fails does not fail the start (`Replaced.prune_error`)."""
        steps = [HostStep(f"count the connections to {spec.colour}", Command.script(
            _COUNT_THEN_HOLD, connection_filter(spec.address, spec.port),
            "1" if hold_if_open else ""))] if count else []
        if running is not False:
            steps.append(self._stop_step(spec, replaced, stop, running=running))
        point = self.layout(spec.host).point_command(spec.colour, release)
        steps += [
            HostStep(f"point {spec.colour} at {release}", point),
            HostStep(f"check that nothing holds port {spec.port}", Command.script(
                'out=$(eval "$1") || :; [ -z "$out" ] || { printf "%s\\n" "$out"; exit 1; }',
                listeners(spec.port, spec.address).render())),
            HostStep(f"start {spec.colour}", start, limit=self.settings.start_timeout)]
        if prune is not None:
            steps.append(HostStep("prune old releases", self.layout(spec.host).prune_command(
                prune), limit=self.inventory.ssh.command_timeout))
        results = run_chain(transport, steps,
                            timeout=sum(step.limit or 0 for step in steps)
                            + self.inventory.ssh.command_timeout)
        connections = None
        if count:
            counted = _ran(results.pop(0), steps.pop(0), spec.host.name)
            connections = parse_count(counted.stdout)
            if counted.exit_status == _HELD:
                return Replaced(connections, held=True)
            counted.check(f"count the connections to {spec.colour}")
        if running is not False:
            self._judge_stop(_ran(results.pop(0), steps.pop(0), spec.host.name), spec, stop,
                             release=replaced)

        def ran(index: int) -> CommandResult:  # judged in order: a failed step ends the chain
            return _ran(results[index], steps[index], spec.host.name)

        replace(ran(0), command=str(point)).check(f"point {spec.colour} at {release}")
        if not (port := ran(1)).ok:
            self._require_port_free(port.stdout, spec)
        self._judge_start(ran(2), spec, start)
        if prune is None:
            return Replaced(connections)
        pruning = results[3]
        if pruning is None or not pruning.ok:
            return Replaced(connections, prune_error="it did not report back" if pruning is None
                            else pruning.tail() or f"exit status {pruning.exit_status}")
        return Replaced(connections, pruned=tuple(pruned(pruning.stdout)))

    def _stop_step(self, spec: InstanceSpec, release: str | None, stop: Command, *,
                   running: bool | None) -> HostStep:
        """The stop, then the host waits for the instance to go away (its port free and, when
        it has its own status command, that saying stopped): one round trip, not one per poll.
        `running` None: the host checks first, and stops nothing that does not run."""
        # its own status command first: usually cheaper than `ss`, which then runs once
        still_runs = Command.script(
            '{ [ -n "$2" ] && eval "$2" >/dev/null 2>&1; } || eval "$1"',
            _listening(spec.port, spec.address).render(),
            self.status_command(spec, release).render() if self.settings.status else "")
        limit, asked = self.settings.stop_timeout, self.inventory.ssh.command_timeout
        # running None: the status command first, bounded as any command is (ssh.command_timeout)
        script = _STOP_AND_WAIT if running else _CHECK_THEN_STOP_AND_WAIT
        return HostStep(f"stop {spec.colour}", Command.script(
            script, stop.render(), still_runs.render(), f"{limit:g}",
            self.status_command(spec, release).render(), f"{asked:g}"),
            limit=2 * limit + 10 + (0 if running else asked))

    def _judge_stop(self, result: CommandResult, spec: InstanceSpec, stop: Command, *,
                    release: str | None = None) -> None:
        limit = self.settings.stop_timeout
        where = f"{spec.host.name} ({spec.colour})"
        if result.stdout.rstrip("\n").endswith(_STATUS_TIMED_OUT):
            raise _killed(self.status_command(spec, release),
                          self.inventory.ssh.command_timeout, "ssh.command_timeout", where=where,
                          hint="Fix app.status: it must say quickly whether the colour runs.")
        if result.exit_status == _TIMED_OUT:
            raise _killed(stop, limit, "app.stop_timeout", where=where,
                          hint="Fix app.stop, or raise app.stop_timeout if stopping "
                               "legitimately takes longer.")
        replace(result, command=str(stop)).check(f"stop {spec.colour}")
        if result.stdout.rstrip("\n").endswith(_STILL_RUNNING):
            raise HealthCheckFailed(
                f"{spec.colour} still running {limit:g} s after its stop command",
                where=where, hint="Check app.stop and app.status in the inventory.")

    def start(self, transport: Transport, spec: InstanceSpec, release: str, *,
              command: Command | None = None) -> None:
        """Start the colour (`command`: the start command a plan rendered), on a port nothing
        else holds: a stale server still listening there would answer the health check in the
        new release's place."""
        self.require_port_free(transport, spec)
        start = command or self.start_command(spec, release)
        self._judge_start(transport.run(start, timeout=self.settings.start_timeout), spec,
                          start)

    def _judge_start(self, result: CommandResult, spec: InstanceSpec, start: Command) -> None:
        where = f"{spec.host.name} ({spec.colour}:{spec.port})"
        if result.exit_status == _TIMED_OUT:
            raise _killed(start, self.settings.start_timeout, "app.start_timeout", where=where,
                          hint="A start command must return once the app is started (run it "
                               "in the background, or through systemd); raise "
                               "app.start_timeout if starting legitimately takes longer.")
        if not result.ok:
            raise HealthCheckFailed(
                f"start command for {spec.colour} exited {result.exit_status}: "
                f"{tail(result.stdout + result.stderr, 5) or 'no output'}",
                where=where,
                hint="Fix app.start in the inventory or the release; live traffic was not "
                     "touched.",
            )

    def require_port_free(self, transport: Transport, spec: InstanceSpec) -> None:
        listening = transport.run(listeners(spec.port, spec.address))
        self._require_port_free(listening.stdout if listening.ok else "", spec)

    def _require_port_free(self, listening: str, spec: InstanceSpec) -> None:
        """HealthCheckFailed when `listening` (`listeners` output) shows a listener."""
        if listening.strip():
            raise HealthCheckFailed(
                f"port {spec.port} is still in use by {listener(listening)} although "
                f"{spec.colour} is stopped, so a health check would reach that process instead "
                "of the new release.",
                where=f"{spec.host.name} ({spec.colour}:{spec.port})",
                hint="A stale server whose pid file is gone, or another program: stop it (or "
                     f"move colours.{spec.colour}.port), then deploy again. Live traffic was "
                     "not touched.",
            )


def _killed(command: Command, limit: float, setting: str, *, where: str, hint: str
            ) -> CommandTimeout:
    return CommandTimeout(f"`{command}` did not finish within {limit:g} s ({setting}); it was "
                          "killed on the host.", where=where, hint=hint)


def _ran(result: CommandResult | None, step: HostStep, where: str) -> CommandResult:
    """A chained step's result; it ran, since every step before it succeeded."""
    return reported(result, step, where=where,
                    hint="Run `bluegreen status` to see what the host runs.")


def listeners(port: int, address: str | None = None) -> Command:
    """Who listens on `address:port` on the host (or on a wildcard address, which also takes
    that port), one `ss` line each, with the process. `ss -p` reads every process's open files
    (~4× the time of a plain `ss`): it runs only when something listens, to name it."""
    return Command.script('out=$(ss -Hltn "$1") || exit; [ -z "$out" ] || ss -Hltnp "$1"',
                          listen_filter(port, address))


def listener(ss_output: str) -> str:
    """Who listens, from `ss -Hltnp` output: "gunicorn (pid 123)", or "an unknown process"."""
    match = re.search(r'users:\(\("([^"]+)",pid=(\d+)', ss_output)
    return f"{match[1]} (pid {match[2]})" if match else "an unknown process"


def listen_filter(port: int, address: str | None) -> str:
    """An `ss` filter for listeners that hold `address:port`: that address or a wildcard one.
    A listener on another address of the host is someone else's; an address that is a name,
    not an IP, can only be matched by port."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return f"sport = :{port}"
    if ip.version == 6:
        return f"( src [{ip}]:{port} or src [::]:{port} )"
    return f"( src {ip}:{port} or src 0.0.0.0:{port} or src [::]:{port} )"


def connection_filter(address: str, port: int) -> str:
    """An `ss` filter for established connections to the instance: those whose local end is
    `address:port` when the address is an IP (several instances may share a port on one
    machine), else any local address on `port`."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"sport = :{port}"
    return f"src [{ip}]:{port}" if ip.version == 6 else f"src {ip}:{port}"


COUNT_ESTABLISHED = 'ss -Htn state established "( $1 )" | grep -c . || true'
_HELD = 75
# $1 the `ss` filter of the instance's connections, $2 non-empty: exit _HELD when there are any
_COUNT_THEN_HOLD = (f'n=$({COUNT_ESTABLISHED}); echo "$n"; '
                    f'[ -z "$2" ] || [ "${{n:-0}}" = 0 ] || exit {_HELD}')


class Replaced(NamedTuple):
    connections: int | None  # established to the instance just before its stop, when counted
    held: bool = False  # stopped before anything changed: connections are open
    pruned: tuple[str, ...] = ()  # the old releases removed (`prune`), newest first
    prune_error: str | None = None  # what the prune said when it failed


# The release the colour's pointer ($1) names, on a line (empty when there is none). A symlink
# is followed with `cd -P`, a builtin, then back to $here: readlink, a process, reads only one
# whose release cannot be entered (gone).
_POINTER = ('if [ -L "$1" ]; then if cd -P -- "$1" 2>/dev/null; then '
            'printf "%s\\n" "${PWD##*/}"; cd -- "$here" 2>/dev/null || cd /; '
            'else p=$(readlink -- "$1"); printf "%s\\n" "${p##*/}"; fi; else echo; fi; ')
# $1 the colour's pointer, $2 what exits 0 while it runs, $3 a command to run when it runs ("" for
# none), $4 a command whose success shows it runs and stands for $3's output ("" for none): the
# release the pointer names, then (when it runs) what $3 printed; exits 1 when it does not run.
# The commands are rendered `Command`s, each one program with quoted arguments: `eval` runs them
# as `sh -c` would, without starting a shell for it.
_RUNNING_RELEASE = (
    'here=$PWD; ' + _POINTER +
    '[ -n "$4" ] && out=$(eval "$4") && { printf "%s\\n" "$out"; exit 0; }; '
    'eval "$2" >/dev/null 2>&1 || exit; '
    'if [ -n "$4" ] && [ "$3" = "$4" ]; then printf "%s\\n" "$out"; '
    'elif [ -n "$3" ]; then eval "$3"; fi; exit 0')

_END_OF_FACTS = "bluegreen: end of facts"
# five arguments per instance: its colour's pointer, what exits 0 while it runs, the `ss` filter
# of its connections, a command to run after them when it runs ("" for none), and one whose
# success shows it runs and stands for that command's output ("" for none); a section of lines
# per instance (the release, running/stopped, what the command printed), then the established
# connections of all the running ones, counted per local end (the column before the peer's) by
# one `ss` (`local_ends`). As above, the rendered commands run by `eval`.
_FACTS = (
    'here=$PWD; filters=; while [ "$#" -ge 5 ]; do out=; ' + _POINTER +
    'if [ -n "$5" ] && out=$(eval "$5"); then state=running; '
    'elif eval "$2" >/dev/null 2>&1; then state=running; '
    '[ "$4" = "$5" ] || out=$([ -z "$4" ] || eval "$4"); '
    'else state=stopped; fi; echo "$state"; '
    'if [ "$state" = running ]; then filters="${filters:+$filters or }( $3 )"; '
    '[ -z "$out" ] || printf "%s\\n" "$out"; fi; '
    f'echo "{_END_OF_FACTS}"; shift 5; done; '
    '[ -z "$filters" ] || ss -Htn state established "$filters" | '
    "awk '{ n[$(NF - 1)]++ } END { for (end in n) print n[end], end }'")


LocalEnd = tuple[int, ipaddress.IPv4Address | ipaddress.IPv6Address | None, int]


def local_ends(text: str) -> list[LocalEnd]:
    """`ss`'s local ends as `_FACTS` counts them ("3 10.0.0.5:9501", "1 [::ffff:10.0.0.5]:9501",
    "2 10.0.0.5%eth0:9501"): how many connections, the address (an IPv4-mapped one as IPv4;
    None when unreadable) and the port."""
    ends: list[LocalEnd] = []
    for line in text.splitlines():
        count, _, end = line.strip().partition(" ")
        address, _, port = end.rpartition(":")
        if not (count.isdigit() and port.isdigit()):
            continue
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
        try:
            ip = ipaddress.ip_address(address.split("%")[0].strip("[]"))
        except ValueError:
            ip = None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        ends.append((int(count), ip, int(port)))
    return ends


def connections_of(ends: list[LocalEnd], running: list[tuple[str, int]]) -> list[int]:
    """The connections of `ends` to each of the `running` instances (address, port) whose
    filters `ss` was given: those on its address and port, or on its port when its address is
    a name (as `connection_filter`). An end whose address no instance's matches (a form of
    `ss` not read here) counts for the one instance on its port, when only one is."""
    def serves(instance: tuple[str, int], ip: object, port: int) -> bool:
        address, instance_port = instance
        if port != instance_port:
            return False
        try:
            return ipaddress.ip_address(address) == ip
        except ValueError:
            return True

    counts = [0] * len(running)
    for count, ip, port in ends:
        matched = [i for i, instance in enumerate(running) if serves(instance, ip, port)]
        if not matched:
            matched = [i for i, (_, instance_port) in enumerate(running) if instance_port == port]
            if len(matched) != 1:
                continue
        for i in matched:
            counts[i] += count
    return counts


def established(transport: Transport, address: str, port: int) -> int:
    """Established TCP connections to the instance (clients, balancers' old workers)."""
    result = transport.run(Command.script(COUNT_ESTABLISHED, connection_filter(address, port)))
    return parse_count(result.stdout)


@dataclass(frozen=True)
class InstanceFacts:
    """An instance as `status` reports it and a deploy finds it before stopping it: the
    release its colour's pointer names, whether it runs, and its established connections."""

    pointer: str | None
    running: bool
    connections: int
    then: str = ""  # the output of the command run after them, when the instance runs


def parse_count(text: str) -> int:
    text = text.strip()
    return int(text) if text.isdigit() else 0


# $1 the stop command, $2 what exits 0 while the instance still runs, $3 seconds for each: the
# stop, then the instance going away. The rendered commands run by `eval`, without a shell of
# their own in between.
_STOP_AND_WAIT = (
    'eval "timeout -k 5 $3 $1" || exit; '
    # asked every 50 ms for the first 0.2 s, then every 0.1 s: a slow stop costs the host fewer
    # checks (`ss` walks the kernel's socket tables)
    'timeout "$3" sh -c \'n=0; while eval "$1"; do n=$((n + 1)); '
    'if [ "$n" -le 4 ]; then sleep 0.05; else sleep 0.1; fi; done\' bluegreen "$2" '
    '|| echo "bluegreen: still running"')
# the same, after the status command ($4, within $5 seconds) said the instance runs; a status
# command that does not answer in time ends the step (killed by timeout: 124, or 137 after -k)
_CHECK_THEN_STOP_AND_WAIT = (
    'eval "timeout -k 5 $5 $4" >/dev/null 2>&1; runs=$?; '
    'if [ "$runs" -eq 124 ] || [ "$runs" -eq 137 ]; then '
    'echo "bluegreen: status timed out"; exit 124; fi; '
    '[ "$runs" -eq 0 ] || exit 0; ' + _STOP_AND_WAIT)
_STATUS_TIMED_OUT = "bluegreen: status timed out"
_TIMED_OUT = 124  # GNU timeout's status for a command it had to stop
_STILL_RUNNING = "bluegreen: still running"


def _listening(port: int, address: str | None) -> Command:
    """Exits 0 when something listens on `address:port` on the host."""
    return Command.script('ss -Hltn "$1" | grep -q .', listen_filter(port, address))
