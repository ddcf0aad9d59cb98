"""What every balancer driver provides, and the managed-file operations they share: stage a new
file (keeping a byte-exact backup in the state directory), restore it, read its header."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from bluegreen.errors import BalancerError
from bluegreen.inventory import BalancerSettings
from bluegreen.model import Colour
from bluegreen.render import render_config, shipped_template
from bluegreen.shell import Command
from bluegreen.transport.base import CommandResult, Input, Transport
from bluegreen.transport.tunnel import Tunnel

if TYPE_CHECKING:
    from bluegreen.balancer.activation import Activation


@dataclass(frozen=True)
class Server:
    host: str
    address: str
    port: int
    colour: Colour
    weight: int


@dataclass(frozen=True)
class Sticky:
    """Testers' requests — those carrying `header` (or `cookie`) with `value` — go to
    `colour`'s servers whatever the weights: the canary's, or the live colour's when there is
    no canary."""

    header: str | None
    cookie: str | None
    value: str
    colour: Colour
    # the servers testers reached before this flip (as the recorded state renders them; None:
    # no flip before): HAProxy's runtime API cannot change its use-server rules, so a flip
    # that changes them reloads there
    previous: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Upstream:
    service: str
    name: str
    colour: Colour
    generation: int
    weights: dict[str, int]
    servers: tuple[Server, ...]
    sticky: Sticky | None = None

    @property
    def testers_moved(self) -> bool:
        """Whether this flip changes the servers testers reach (canary.sticky)."""
        return self.sticky is not None and self.sticky.previous != self.tester_names

    @property
    def tester_names(self) -> tuple[str, ...]:
        return tuple(server_name(s) for s in self.testers_servers)

    @property
    def testers_servers(self) -> tuple[Server, ...]:
        """The servers testers reach (those of the sticky colour in traffic)."""
        if self.sticky is None:
            return ()
        chosen = tuple(s for s in self.servers
                       if s.colour is self.sticky.colour and s.weight > 0)
        return chosen or tuple(s for s in self.servers if s.weight > 0)


@dataclass(frozen=True)
class Header:
    """What the managed file says it serves (first line), for drift detection."""

    service: str
    colour: Colour
    generation: int
    weights: dict[str, int]


HEADER = re.compile(
    r"^# bluegreen service=(?P<service>\S+) colour=(?P<colour>blue|green) "
    r"generation=(?P<generation>\d+) weights=blue:(?P<blue>\d+),green:(?P<green>\d+)"
)


def parse_header(text: str | None) -> Header | None:
    if not text:
        return None
    match = HEADER.match(text)
    if not match:
        return None
    return Header(match["service"], Colour(match["colour"]), int(match["generation"]),
                  {"blue": int(match["blue"]), "green": int(match["green"])})


def parse_version(output: str) -> str | None:
    """The first version number in what `nginx -v`, `haproxy -v` or `caddy version` print
    ("nginx version: nginx/1.22.1", "HAProxy version 2.6.12-1+deb12u1 …", "v2.6.2 h1:…")."""
    match = re.search(r"(?<![\d.])(\d+\.\d+(?:\.\d+)?)", output)
    return match[1] if match else None


@dataclass(frozen=True)
class ServerTraffic:
    """What a balancer counted for one server since it started counting: requests answered,
    those answered 5xx, and the mean response time of the recent ones (ms) — or, where it
    keeps one (nginx's access log), the sum of all their response times (`total_ms`)."""

    requests: int
    errors: int
    response_ms: float
    total_ms: float | None = None


@dataclass(frozen=True)
class BalancerTraffic:
    """A balancer's per-server counters, by `server_name`. `epoch` names the process counting
    (HAProxy's worker pid): when it changes, a reload restarted every counter from zero."""

    epoch: str
    servers: dict[str, ServerTraffic]


@dataclass(frozen=True)
class HostAdvice:
    """A setting of a balancer's host that its flips depend on, for `bluegreen check`: read by
    `command`; `judge` says from its result whether it is as it should be, and what it is."""

    check: str
    command: Command
    judge: Callable[[CommandResult], tuple[bool, str]]


class Balancer(Protocol):
    """What the orchestrator asks of a balancer driver — nothing else: how a driver reloads,
    or which processes it runs, stays inside the driver and its `Activation`."""

    kind: str
    binary: str
    settings: BalancerSettings
    weighted: bool  # can split traffic between the colours by weight (a canary)
    version_args: tuple[str, ...]  # what makes the binary print its version

    def render(self, upstream: Upstream) -> str: ...
    def validate(self) -> Command: ...
    def validate_main_config(self) -> Command: ...
    def loaded(self, managed_path: str) -> Command | None: ...
    def activation(self) -> Activation: ...
    def runtime_read(self, upstream_name: str, *, lingering: bool) -> RuntimeRead | None: ...
    def traffic(self, transport: Transport, upstream: Upstream) -> BalancerTraffic | None: ...
    def host_advice(self) -> tuple[HostAdvice, ...]: ...


class MasterWorkerBalancer:
    """What nginx and HAProxy share: a master process named by a pid file whose children are the
    workers, and an optional user reload command."""

    kind: str
    default_pid_file: str
    # what an old worker's command line shows once a reload made it stop accepting (None: it
    # shows nothing, the new worker is the sign)
    retired_worker_marker: str | None = None
    weighted = True
    version_args: tuple[str, ...] = ("-v",)

    def __init__(self, settings: BalancerSettings):
        self.settings = settings
        self.binary = settings.binary or self.kind
        self.pid_file = settings.pid_file or self.default_pid_file

    def validate(self) -> Command:
        raise NotImplementedError

    def reload(self) -> Command:
        raise NotImplementedError

    def reload_took(self, before: dict[int, str], after: dict[int, str]) -> bool:
        raise NotImplementedError

    def validate_main_config(self) -> Command:
        return self.validate()

    def host_advice(self) -> tuple[HostAdvice, ...]:
        return ()  # a reload hands the listening sockets over: nothing of the host's matters

    def user_reload(self) -> Command | None:
        """`balancer.reload` (e.g. `systemctl reload nginx`), rendered, if the inventory sets it."""
        if not self.settings.reload:
            return None
        from bluegreen.render import render_command

        return render_command(self.settings.reload, {"pid_file": self.pid_file},
                              where="balancer.reload")

    def workers(self) -> Command:
        """The master's children, one "PID ARGS" line each; exit 3 if no master runs."""
        return Command.script(
            'pid=$(cat -- "$1") && kill -0 "$pid" && ps -o pid=,args= --ppid "$pid" || exit 3',
            self.pid_file)


    def activation(self) -> Activation:
        """How this balancer moves traffic: a reload confirmed by its workers."""
        from bluegreen.balancer.activation import ReloadActivation

        return ReloadActivation(self)

    def traffic(self, transport: Transport, upstream: Upstream) -> BalancerTraffic | None:
        """What the balancer counted per server of `upstream` (both colours); None when it
        keeps no such counters."""
        return None

    def runtime_read(self, upstream_name: str, *, lingering: bool) -> RuntimeRead | None:
        """What the running balancer serves and what earlier flips left running, as one
        command for the caller to run with others; None when there is nothing to read.
        Here no runtime tells what it serves; with `lingering`, the workers still shutting
        down are counted (they keep their connections — long requests, WebSockets — on the
        colour they were started with)."""
        if not lingering:
            return None
        return RuntimeRead(self.workers(), lambda result: RuntimeFacts(
            lingering=old_workers(result.stdout if result.ok else None)))

    def loaded(self, managed_path: str) -> Command:
        """What `file_loaded` reads: the managed file's mtime, the host's clock, and the age in
        seconds of each of the master's workers; exit 3 if no master runs."""
        return Command.script(
            'pid=$(cat -- "$1") && kill -0 "$pid" || exit 3; stat -c %Y -- "$2" || exit 4; '
            'date +%s; ps -o etimes= --ppid "$pid"', self.pid_file, managed_path)


@dataclass(frozen=True)
class RuntimeFacts:
    """What a balancer runs beside its files."""

    # the colours its runtime serves ("blue", "green", "blue+green", "none"); None when it has
    # no runtime to ask, or that did not answer
    serving: str | None = None
    lingering: dict[str, object] = field(default_factory=dict)  # what earlier flips left


class RuntimeRead(NamedTuple):
    """`RuntimeFacts` as one command, and the reading of its result."""

    command: Command
    read: Callable[[CommandResult], RuntimeFacts]


def old_workers(workers: str | None) -> dict[str, object]:
    """The old workers (shutting down) in `workers`' output; None when it could not be read."""
    if workers is None:
        return {"old_workers": None}
    return {"old_workers": sum("shutting down" in line for line in workers.splitlines())}


def file_loaded(output: str) -> bool | None:
    """Whether the running balancer loaded the managed file — its newest worker started no
    earlier than the file was written — from `loaded()`'s output; None when it cannot tell."""
    numbers = [int(word) for word in output.split() if word.isdigit()]
    if len(numbers) < 3:
        return None
    mtime, clock, *ages = numbers
    return clock - min(ages) >= mtime


def dial(address: str, port: int) -> str:
    """`address:port`, an IPv6 address in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def server_name(server: Server) -> str:
    """A balancer-safe server name: colour and host."""
    return f"{server.colour}-{re.sub(r'[^A-Za-z0-9_.:-]', '_', server.host)}"


def render_upstream(settings: BalancerSettings, upstream: Upstream, default_template: str) -> str:
    if settings.template:
        source = Path(settings.template).expanduser()
        try:
            template = source.read_text()
        except OSError as exc:
            from bluegreen.errors import TemplateError

            raise TemplateError(f"cannot read template: {exc.strerror}.",
                                where=f"balancer.template ({source})") from None
        where = f"balancer.template ({source})"
    else:
        template, where = shipped_template(default_template), f"templates/{default_template}"
    values = {
        "service": upstream.service,
        "upstream_name": upstream.name,
        "colour": upstream.colour.value,
        "generation": upstream.generation,
        "weights": upstream.weights,
        "servers": [_server_values(s) for s in upstream.servers],
        "sticky": _sticky_values(upstream),
    }
    return render_config(template, values, where=where)


def _server_values(server: Server) -> dict[str, object]:
    return {"host": server.host, "name": server_name(server), "address": server.address,
            "port": server.port, "dial": dial(server.address, server.port),
            "colour": server.colour.value, "weight": server.weight}


def _sticky_values(upstream: Upstream) -> dict[str, object] | None:
    """What the templates need to send testers to the sticky colour: nginx's variable for
    the header or cookie and the one its `proxy_pass` names (`$bluegreen_<upstream>`), HAProxy's
    sample fetch."""
    sticky = upstream.sticky
    if sticky is None:
        return None
    return {
        "colour": sticky.colour.value, "header": sticky.header, "cookie": sticky.cookie,
        "value": sticky.value,
        "nginx_variable": (f"$http_{sticky.header.lower().replace('-', '_')}" if sticky.header
                           else f"$cookie_{sticky.cookie}"),
        "haproxy_fetch": (f"req.hdr({sticky.header})" if sticky.header
                          else f"req.cook({sticky.cookie})"),
        "route_variable": sticky_route_variable(upstream.name),
        "upstream_name": f"{upstream.name}_testers",
        "servers": [_server_values(s) for s in upstream.testers_servers],
    }


def sticky_route_variable(upstream_name: str) -> str:
    """The nginx variable (without `$`) naming the upstream each request goes to, for a
    `proxy_pass http://$bluegreen_shop;` with `canary.sticky`."""
    return "bluegreen_" + re.sub(r"\W", "_", upstream_name)


# Puts the backup back over the managed file atomically (or removes the file if there was none).
_RESTORE = (
    'f=$1; prev=$2; dir=$(dirname -- "$f"); '
    'if [ -e "$prev.absent" ]; then rm -f -- "$f"; exit 0; fi; '
    '[ -e "$prev" ] || { echo "no backup at $prev" >&2; exit 66; }; '
    'tmp=$(mktemp -- "$dir/.bluegreen-tmp.XXXXXX") || exit 1; '
    'cp -p -- "$prev" "$tmp" && mv -f -- "$tmp" "$f" || { rm -f -- "$tmp"; exit 1; }'
)
# The restore a flip runs: the watchdog disarmed, then — unless the file is not the text this
# flip staged ($3, its sha256, when given) — the backup put back.
_NOT_STAGED = "not staged by this flip"
_RESTORE_STAGED = (
    'rm -f -- "$2".pending.*; '
    'if [ -n "$3" ]; then sum=$(sha256sum < "$1" 2>/dev/null) || sum=none; '
    f'[ "${{sum%% *}}" = "$3" ] || {{ echo "{_NOT_STAGED}"; exit 0; }}; fi; ' + _RESTORE
)
WITHDRAWN = 70  # the exit status of `take` when the staged file was already withdrawn
_WITHDRAWN_SAID = "bluegreen: the staged file was withdrawn"  # said only then, on stderr
# $1 the take, $2 what to say when it fails, then the command to run once it took the file
_TAKE_THEN = (f'eval "$1" </dev/null || {{ printf "%s\\n" "$2" >&2; exit {WITHDRAWN}; }}; '
              'shift 2; exec "$@"')
INVALID = 65  # the exit status of `stage_and_validate` when the staged file failed validation

# $1 the staging command (reading the new text on stdin), $2 the validation command: stage,
# print the marker `take` must claim, then validate (its output on stderr).
_STAGE_AND_VALIDATE = 'marker=$(sh -c "$1") || exit; printf "%s\\n" "$marker"; ' \
    'sh -c "$2" >&2 || exit 65'
GUARD_REFUSED = 64  # the exit status of a guarded `stage_and_validate` whose guard refused
GUARD_REFUSAL = "bluegreen: the guard refused; nothing was staged"  # said only then, on stderr
# $1 a guard (its output on stderr; stdin is the staged text, not for it), then as above:
# nothing is staged unless the guard passes
_GUARDED_STAGE_AND_VALIDATE = (
    f'sh -c "$1" </dev/null >&2 || {{ echo "{GUARD_REFUSAL}" >&2; exit 64; }}; shift; '
    + _STAGE_AND_VALIDATE)

# Backs up the managed file, puts the new text (stdin) in its place and arms the watchdog.
_STAGE = (
    'set -e; f=$1; prev=$2; dir=$(dirname -- "$f"); '
    'mkdir -p -m 700 -- "$(dirname -- "$prev")"; '
    'rm -f -- "$prev.absent" "$prev".pending.*; '  # older watchdogs now do nothing
    'if [ -e "$f" ]; then cp -p -- "$f" "$prev"; mode=$(stat -c %a -- "$f"); '
    'else rm -f -- "$prev"; : > "$prev.absent"; mode=644; fi; '
    'tmp=$(mktemp -- "$dir/.bluegreen-tmp.XXXXXX"); trap \'rm -f -- "$tmp"\' EXIT; '
    'cat > "$tmp"; chmod "$mode" "$tmp"; marker="$prev.pending.$(basename -- "$tmp")"; '
    ': > "$marker"; mv -f -- "$tmp" "$f"; trap - EXIT; '
    # the watchdog restores unless the flip took the marker first (one rename wins)
    'setsid sh -c \'sleep "$1"; mv -- "$2" "$2.expired" 2>/dev/null || exit 0; '
    'rm -f -- "$2.expired"; sh -c "$3" bluegreen "$4" "$5"\' '
    'bluegreen "$3" "$marker" "$4" "$f" "$prev" </dev/null >/dev/null 2>&1 & '
    'printf %s "$marker"'
)


def guard_refused(result: CommandResult) -> bool:
    """Whether a guarded `stage_and_validate` stopped at its guard (nothing staged)."""
    return result.exit_status == GUARD_REFUSED and GUARD_REFUSAL in result.stderr


class ManagedFile:
    """The one balancer file bluegreen owns, and its backup under the state directory.

    A staged file is live on disk before it is activated (validation needs it in place), so a
    balancer reload by anyone else would serve it. It therefore withdraws itself: staging starts
    a watchdog on the host that restores the backup after `lifetime` seconds unless the flip
    *took* the staged file first (`take`, an atomic rename of a marker that the watchdog also
    races for). A flip cut off from the host — a lost connection, a killed bluegreen — so never
    leaves a staged file behind for long."""

    def __init__(self, path: str, state_dir: str, *, lifetime: float = 60.0):
        self.path = path
        self.backup = f"{state_dir.rstrip('/')}/managed-file.prev"
        self.lifetime = lifetime
        self._staged: dict[str, str] = {}  # host → the marker of the file staged there

    def stage_and_validate(self, transport: Transport, text: str, validate: Command,
                           guard: Command | None = None) -> CommandResult:
        """Back up the live file byte for byte (or note that there was none), put the new text
        in its place atomically with the old file's mode, and arm the watchdog; then run
        `validate`, in the same round trip: the validation's result (its output on stderr). A
        failure to stage raises. With `guard`, that command runs first, in the same round trip:
        when it fails, nothing is staged and the result's exit status is GUARD_REFUSED."""
        result = transport.run(self.stage_and_validate_command(validate, guard),
                               stdin=text.encode())
        if guard is not None and guard_refused(result):
            return result
        if not result.ok and result.exit_status != INVALID:
            replace(result, command=str(self.stage_command())).check(f"stage {self.path}")
        self._staged[transport.host] = result.stdout.partition("\n")[0]
        return result

    def take(self, transport: Transport, marker: str | None = None) -> None:
        """Claim the staged file for activation, so the watchdog leaves it; BalancerError when
        the watchdog already withdrew it (the flip took longer than the file's lifetime).
        `marker`: the one staging printed, when the caller holds it (`taking`)."""
        if marker is None:
            marker = self._staged.pop(transport.host, "")
        result = transport.run(self.take_command(marker))
        if result.exit_status == WITHDRAWN:
            raise self.withdrawn(transport.host)
        result.check(f"take {self.path}")

    def taking(self, transport: Transport) -> TakingTransport:
        """`transport` for the activation: the first command it runs takes the staged file
        first, in the same round trip (`take`'s BalancerError when it was withdrawn)."""
        return TakingTransport(transport, self, self._staged.pop(transport.host, ""))

    def withdrawn(self, host: str) -> BalancerError:
        """The error of a flip whose staged file its watchdog withdrew before the take."""
        return BalancerError(
            f"the staged {self.path} was withdrawn (restored) by its watchdog after "
            f"{self.lifetime:g} s, before it could be activated.",
            where=host,
            hint="The flip took too long between validation and activation; nothing was "
                 "activated. Retry; check the balancer host's load.")

    def restore(self, transport: Transport, staged: str | None = None) -> bool:
        """Put the backed-up file back, byte-identical (or remove the file if there was none),
        and disarm the watchdog. With `staged` (the text this flip staged), only if the file is
        that text: on a host where the staging never ran, the backup is an older flip's and the
        file is left as it is (False)."""
        self._staged.pop(transport.host, None)
        result = transport.run(self.restore_command(
            hashlib.sha256(staged.encode()).hexdigest() if staged is not None else None))
        result.check(f"restore {self.path}")
        return _NOT_STAGED not in result.stdout

    # its commands, each built in one place

    def stage_command(self) -> Command:
        """Reads the new text on stdin; prints the marker `take` must claim."""
        return Command.script(_STAGE, self.path, self.backup, f"{self.lifetime:g}", _RESTORE)

    def stage_and_validate_command(self, validate: Command, guard: Command | None = None
                                   ) -> Command:
        if guard is not None:
            return Command.script(_GUARDED_STAGE_AND_VALIDATE, guard.render(),
                                  self.stage_command().render(), validate.render())
        return Command.script(_STAGE_AND_VALIDATE, self.stage_command().render(),
                              validate.render())

    def take_command(self, marker: str) -> Command:
        return Command.script('[ -n "$1" ] && mv -- "$1" "$2.taken" 2>/dev/null || exit 70',
                              marker, self.backup)

    def take_then_command(self, marker: str, command: Command) -> Command:
        """`take`, then `command` (with its environment and stdin) once the file is taken."""
        both = Command.script(_TAKE_THEN, self.take_command(marker).render(), _WITHDRAWN_SAID,
                              *command.argv, env=dict(command.env))
        return both.with_sudo() if command.sudo else both

    def restore_command(self, staged_sha256: str | None = None) -> Command:
        return Command.script(_RESTORE_STAGED, self.path, self.backup, staged_sha256 or "")


class TakingTransport:
    """A balancer's transport during an activation (`ManagedFile.taking`): the first command
    run through it takes the staged file first, in the same round trip; `finish` takes it
    if the activation ran no command."""

    def __init__(self, transport: Transport, managed: ManagedFile, marker: str):
        self.inner = transport
        self.host = transport.host
        self._managed = managed
        self._marker: str | None = marker

    def run(self, command: Command, *, timeout: float | None = None,
            stdin: Input | None = None, sent: Callable[[int], None] | None = None
            ) -> CommandResult:
        if self._marker is None:
            return self.inner.run(command, timeout=timeout, stdin=stdin, sent=sent)
        marker, self._marker = self._marker, None
        result = self.inner.run(self._managed.take_then_command(marker, command),
                                timeout=timeout, stdin=stdin, sent=sent)
        if result.exit_status == WITHDRAWN and _WITHDRAWN_SAID in result.stderr:
            raise self._managed.withdrawn(self.host)
        return replace(result, command=str(command))

    def finish(self) -> None:
        if self._marker is not None:
            marker, self._marker = self._marker, None
            self._managed.take(self.inner, marker)

    def tunnel(self, port: int, *, address: str = "127.0.0.1"
               ) -> AbstractContextManager[Tunnel]:
        return self.inner.tunnel(port, address=address)

    def close(self) -> None:
        self.inner.close()
