"""State, history and lock on a balancer host, under the service's state directory:

* ``state.json`` — live colour, weights, release and status per colour, and a generation number
  that must still match what was read when it is written (no lost update);
* ``history.jsonl`` — one JSON record per operation;
* ``lock/`` — created with an atomic ``mkdir``; ``owner.json`` inside says who, since when and what,
  ``heartbeat``'s mtime (on the host's own clock) says the holder is alive.

Every write is a temp file plus rename under the lock."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

from bluegreen.errors import BluegreenError, DriftError, LockHeld, RemoteCommandFailed, StateError
from bluegreen.model import Colour
from bluegreen.shell import Command, redact
from bluegreen.transport.base import Transport, get_file, get_files
from bluegreen.waiting import poll_until

ColourStatus = Literal["running", "stopped", "retired", "starting", "stopping", "failed"]


@dataclass(frozen=True)
class ColourState:
    """What one colour runs. `running` means it runs `release` and passed its checks; `starting`
    and `stopping` are written *ahead* of the change (a holder killed mid-way leaves them, and they
    say so); `failed` means an operation changed it to `release` and then failed. `replaced` is the
    release it ran before the current change, `error` why that change failed. `out` names the
    hosts whose instance of this colour the balancers hold out of traffic (a reload that failed
    there leaves it out)."""

    release: str | None = None
    status: ColourStatus = "stopped"
    since: str | None = None
    replaced: str | None = None
    error: str | None = None
    out: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """The operation changing the service right now, written ahead of its first change and
    cleared by its last write: after a `kill -9` it is still there, naming what was cut short."""

    command: str
    by: str
    started: str
    step: str = ""

    def describe(self) -> str:
        return f"`{self.command}` by {self.by} since {self.started}" + (
            f" (step: {self.step})" if self.step else "")


@dataclass(frozen=True)
class Canary:
    """A release taking part of the traffic: `colour` runs `release` and gets `weight` per cent,
    the live colour the rest, until `canary promote` or `canary abort`. `steps`: the weights
    planned (`deploy --canary 5,25,50`); each `canary promote` moves to the next, then to all.
    `pauses`: how long each step lasts before the next is taken by itself (seconds), None (or
    missing) for a step that waits for `canary promote`."""

    colour: str
    release: str | None
    weight: int
    since: str
    by: str
    steps: tuple[int, ...] = ()
    pauses: tuple[float | None, ...] = ()
    # the balancers' counters when this step began (`canary_analysis.Baseline`), what the
    # analysis compares with; empty when the canary is not analysed
    baseline: dict[str, dict[str, Any]] = field(default_factory=dict)
    # analyses of this step in a row that breached a threshold within `canary.failure_limit`
    breaches: int = 0
    # when the traffic its analysis judges began: its step's flip, or its last breach
    judged_since: str | None = None
    # `canary pause`: timed steps no longer follow by themselves until `canary resume`
    paused_at: str | None = None
    paused_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """For results and `status`: without the raw counters, with the next step's weight."""
        return {**{k: v for k, v in asdict(self).items() if k != "baseline"},
                "next_weight": self.next_weight, "pause": self.pause}

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))  # lists when read from JSON
        object.__setattr__(self, "pauses", tuple(self.pauses))

    @property
    def pause(self) -> float | None:
        """How long this step lasts before the next one is taken by itself; None: until
        `canary promote`."""
        if self.weight not in self.steps:
            return None
        index = self.steps.index(self.weight)
        return self.pauses[index] if index < len(self.pauses) else None

    @property
    def next_weight(self) -> int | None:
        """The next step's weight; None when the next promote gives the canary everything."""
        return next((step for step in self.steps if step > self.weight), None)

    @property
    def step(self) -> str:
        """"2/3" (the second of three steps), for people."""
        if self.weight not in self.steps:
            return "1/1"
        return f"{self.steps.index(self.weight) + 1}/{len(self.steps)}"

    def describe(self) -> str:
        return (f"{self.colour} runs release {self.release} with {self.weight}% of the traffic "
                f"since {self.since} (by {self.by})"
                + (f", step {self.step} of {'/'.join(map(str, self.steps))}%"
                   if len(self.steps) > 1 else "")
                + (f"; held after {self.breaches} breach(es) of its analysis in a row"
                   if self.breaches else "")
                + (f"; paused by {self.paused_by} since {self.paused_at}"
                   if self.paused_at else ""))


@dataclass(frozen=True)
class State:
    service: str
    generation: int = 0  # numbers flips; the managed file's header carries it
    revision: int = 0  # numbers every write; a write must find the revision it read
    live: Colour | None = None
    weights: dict[str, int] = field(default_factory=lambda: {"blue": 0, "green": 0})
    colours: dict[str, ColourState] = field(
        default_factory=lambda: {c.value: ColourState() for c in Colour})
    updated_at: str | None = None
    updated_by: str | None = None
    # balancer host → checksum of the managed file this state was flipped with
    managed_sha256: dict[str, str] = field(default_factory=dict)
    operation: Operation | None = None
    canary: Canary | None = None

    def colour(self, colour: Colour) -> ColourState:
        return self.colours.get(colour.value, ColourState())

    def with_colour(self, colour: Colour, **changes: object) -> State:
        colours = dict(self.colours)
        colours[colour.value] = replace(self.colour(colour), **changes)  # type: ignore[arg-type]
        return replace(self, colours=colours)

    def to_json(self) -> str:
        data = asdict(self)
        data["live"] = self.live.value if self.live else None
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, *, service: str) -> State:
        data = json.loads(text)
        return cls(
            service=data.get("service", service),
            generation=int(data.get("generation", 0)),
            revision=int(data.get("revision", 0)),
            live=Colour(data["live"]) if data.get("live") else None,
            weights={k: int(v) for k, v in data.get("weights", {}).items()},
            colours={k: ColourState(**{**v, "out": tuple(v.get("out") or ())})
                     for k, v in data.get("colours", {}).items()},
            updated_at=data.get("updated_at"),
            updated_by=data.get("updated_by"),
            managed_sha256=dict(data.get("managed_sha256") or {}),
            operation=Operation(**data["operation"]) if data.get("operation") else None,
            canary=Canary(**data["canary"]) if data.get("canary") else None,
        )

    def after_flip(self, target: Colour, *, release: str | None, actor: str,
                   managed: dict[str, str], out: tuple[str, ...] = ()) -> State:
        """The state once `target` (running `release`, `out` held out of traffic) is live; the
        other colour is unchanged."""
        colours = dict(self.colours)
        previous = self.colour(target)
        since = previous.since if release == previous.release and previous.since else now()
        colours[target.value] = ColourState(release=release, status="running", since=since,
                                            out=out)
        return replace(self, generation=self.generation + 1, live=target,
                       weights={target.value: 100, target.other.value: 0}, colours=colours,
                       updated_at=now(), updated_by=actor, operation=None, canary=None,
                       managed_sha256={h: sha256_text(t) for h, t in managed.items()})


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def actor() -> str:
    """Who runs this operation: user@host, plus the CI job when CI variables say so."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or _uid_name()
    who = f"{user}@{socket.gethostname()}"
    job = ci_job_url()
    return f"{who} ({job})" if job else who


def ci_job_url() -> str | None:
    env = os.environ
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    for name in ("CI_JOB_URL", "BUILD_URL", "BUILDKITE_BUILD_URL", "CIRCLE_BUILD_URL"):
        if env.get(name):
            return env[name]
    return None


def _uid_name() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


class StateStore:
    """State, history and lock for one service on one balancer host."""

    def __init__(self, transport: Transport, state_dir: str, service: str):
        self.transport = transport
        self.dir = state_dir.rstrip("/")
        self.service = service
        # the revision and checksum of the state file as this store last read or wrote it:
        # a write that expects that revision replaces exactly those bytes, in one round trip
        self._seen: tuple[int, str] | None = None

    @property
    def state_path(self) -> str:
        return f"{self.dir}/state.json"

    @property
    def history_path(self) -> str:
        return f"{self.dir}/history.jsonl"

    @property
    def lock_dir(self) -> str:
        return f"{self.dir}/lock"

    def read(self) -> State:
        with _state_errors("read the state"):
            text = get_file(self.transport, self.state_path)
        return self.parse(text)

    def read_with(self, path: str) -> tuple[State, str | None]:
        """The state and the text of another file on this host (None if it does not exist),
        in one round trip."""
        with _state_errors("read the state"):
            state_text, text = get_files(self.transport, self.state_path, path)
        return self.parse(state_text), text

    def parse(self, text: str | None) -> State:
        """The state from the text of its file (None: no file yet), remembered as what this
        store last saw."""
        if text is None:
            self._seen = (0, _ABSENT)
            return State(service=self.service)
        try:
            state = State.from_json(text, service=self.service)
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"state file {self.state_path} is not valid: {exc}.",
                where=self.transport.host,
                hint="Restore it from history, or fix it by hand; bluegreen will not guess.",
            ) from None
        self._seen = (state.revision, sha256_text(text))
        return state

    def write(self, state: State, *, expected_revision: int) -> None:
        """Replace the state, provided the file still holds `expected_revision`: one round
        trip when it is exactly what this store last saw (the host compares checksums);
        otherwise the file is read and its revision compared first."""
        text = state.to_json()
        seen = self._seen
        if seen is None or seen[0] != expected_revision or not self._replace(text, seen[1]):
            current = self.read()
            if current.revision != expected_revision:
                raise DriftError(
                    f"state changed under us: revision {current.revision} on disk, "
                    f"{expected_revision} expected.",
                    where=self.transport.host,
                    hint="Another operation wrote the state without the lock; run "
                         "`bluegreen status`.",
                )
            assert self._seen is not None
            if not self._replace(text, self._seen[1]):
                raise DriftError("state changed under us while it was being written.",
                                 where=self.transport.host,
                                 hint="Another operation writes the state without the lock; "
                                      "run `bluegreen status`.")
        self._seen = (state.revision, sha256_text(text))

    def guard(self, lock_token: str | None = None) -> StateGuard:
        """What a flip checks on this host right before it stages: the state file still has
        the bytes this store last read or wrote, and (with `lock_token`) the lock is still that
        token's."""
        assert self._seen is not None, "the state is read before it is guarded"
        return StateGuard(
            Command.script(_UNCHANGED, self.state_path, self._seen[1], lock_token or "",
                           self.lock_dir),
            host=self.transport.host, state_path=self.state_path, lock_dir=self.lock_dir)

    def _replace(self, text: str, checksum: str) -> bool:
        """Write `text` as the state file if the file's checksum is still `checksum`."""
        with _state_errors("write the state"):
            result = self.transport.run(
                Command.script(_WRITE_IF_UNCHANGED, self.state_path, checksum),
                stdin=text.encode())
            if result.exit_status == _CHANGED:
                return False
            result.check("write the state")
        return True

    def append_history(self, record: dict[str, Any]) -> None:
        line = redact(json.dumps(record, sort_keys=True, default=str)) + "\n"
        with _state_errors("append history"):
            self.transport.run(Command.script(_APPEND, self.history_path),
                               stdin=line.encode()).check("append history")

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        text = get_file(self.transport, self.history_path) or ""
        records = []
        for line in text.splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        return records[-limit:] if limit else records


_ABSENT = "absent"  # the checksum of a state file that does not exist
_CHANGED = 73
# Whether the state file still has the checksum it had when read ($2) and, with a lock token
# ($3), whether the lock ($4) is still that token's; says which is not.
_UNCHANGED = (
    'if [ -e "$1" ]; then seen=$(sha256sum < "$1"); seen=${seen%% *}; else seen=absent; fi; '
    '[ "$seen" = "$2" ] || { echo "state changed"; exit 73; }; '
    '[ -z "$3" ] || grep -qF -- "$3" "$4/owner.json" 2>/dev/null || { echo "lock lost"; exit 74; }'
)


@dataclass(frozen=True)
class StateGuard:
    """A check run on a balancer right before a flip stages there (in the same command)."""

    command: Command
    host: str
    state_path: str
    lock_dir: str

    def refusal(self, output: str) -> DriftError:
        """The error when the guard refused, from what it said."""
        if "lock lost" in output:
            return DriftError(
                "this operation no longer holds the lock (it was released or taken over from "
                "elsewhere), so it stopped before moving traffic: nothing was flipped.",
                where=f"{self.host}:{self.lock_dir}",
                hint="`bluegreen lock status` shows who holds it; `bluegreen status` shows "
                     "what runs where.")
        return DriftError(
            "the state changed after this operation read it, so it stopped before moving "
            "traffic: nothing was flipped.",
            where=f"{self.host}:{self.state_path}",
            hint="Another operation wrote it without the lock; `bluegreen status` shows what "
                 "runs where now.")
# The state file replaced atomically (temp file, mode, rename) only if its checksum is still $2
# (or it is still absent); exit 73 otherwise. The state directory is created if needed.
_WRITE_IF_UNCHANGED = (
    'set -e; mkdir -p -m 700 -- "$(dirname -- "$1")"; '
    'if [ -e "$1" ]; then seen=$(sha256sum < "$1"); seen=${seen%% *}; else seen=absent; fi; '
    '[ "$seen" = "$2" ] || exit 73; '
    'tmp=$(mktemp -- "$1.XXXXXX"); trap \'rm -f -- "$tmp"\' EXIT; '
    'cat > "$tmp"; chmod 600 "$tmp"; mv -f -- "$tmp" "$1"; trap - EXIT'
)
# A line appended to the history by rewriting it atomically (readers never see half a line).
_APPEND = (
    'set -e; mkdir -p -m 700 -- "$(dirname -- "$1")"; '
    'tmp=$(mktemp -- "$1.XXXXXX"); trap \'rm -f -- "$tmp"\' EXIT; '
    'if [ -f "$1" ]; then cat -- "$1" > "$tmp"; fi; cat >> "$tmp"; chmod 600 "$tmp"; '
    'mv -f -- "$tmp" "$1"; trap - EXIT'
)


@contextlib.contextmanager
def _state_errors(step: str) -> Iterator[None]:
    """A remote command that fails on the state directory (disk full, permissions) is a state
    error (exit 11), not a bug."""
    try:
        yield
    except RemoteCommandFailed as error:
        raise StateError(f"could not {step}: {error.detail}.", where=error.where,
                         hint="Free space or fix permissions in the state directory "
                              "(balancer.state_dir), then run `bluegreen status`.") from None


@dataclass(frozen=True)
class LockInfo:
    owner: str
    pid: int
    host: str
    command: str
    started: str
    token: str
    heartbeat_age: float | None = None

    def describe(self) -> str:
        age = f", last heartbeat {self.heartbeat_age:.0f} s ago" if self.heartbeat_age is not None \
            else ""
        return (f"held by {self.owner} (pid {self.pid} on {self.host}) running "
                f"`{self.command}` since {self.started}{age}")


# A lock whose owner file could not be written (disk full) is removed at once: an empty owner
# would block every later operation as "held by unknown".
_ACQUIRE = (
    'mkdir -m 700 -p -- "$1" || exit 74; '
    'err=$(mkdir -m 700 -- "$2" 2>&1) || { [ -d "$2" ] && exit 75; echo "$err" >&2; exit 74; }; '
    'if cat > "$2/owner.json" && touch -- "$2/heartbeat"; then exit 0; fi; '
    'rm -rf -- "$2"; exit 74'
)
_READ_LOCK = (
    'if [ -d "$1" ]; then cat -- "$1/owner.json" 2>/dev/null; echo; '
    'if [ -f "$1/heartbeat" ]; then echo $(( $(date +%s) - $(stat -c %Y -- "$1/heartbeat") )); '
    'else echo; fi; else exit 44; fi'
)
_RELEASE_OWN = 'if grep -qF -- "$2" "$1/owner.json" 2>/dev/null; then rm -rf -- "$1"; fi'
_LOCK_BUSY = 75


class Lock:
    """The operation lock. Acquire with `acquire()`, keep alive with the heartbeat thread, release
    on every exit path (the caller's ``finally``)."""

    def __init__(self, store: StateStore, *, command: str, stale_after: float):
        self.store = store
        self.command = command
        self.stale_after = stale_after
        self.token = uuid.uuid4().hex
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, *, wait: float = 0.0, on_wait: Any = None) -> None:
        """Take the lock, waiting up to `wait` seconds for its holder to release it (not for a
        holder that is gone: a stale lock fails at once, with how to clear it)."""
        owner = {"owner": actor(), "pid": os.getpid(), "host": socket.gethostname(),
                 "command": self.command, "started": now(), "token": self.token}
        announced = False

        def attempt() -> LockInfo | bool | None:
            """True: taken; else who holds it."""
            nonlocal announced
            result = self.store.transport.run(
                Command.script(_ACQUIRE, self.store.dir, self.store.lock_dir),
                stdin=json.dumps(owner).encode())
            if result.ok:
                return True
            if result.exit_status != _LOCK_BUSY:
                with _state_errors("take the lock"):
                    result.check("take the lock")
            info = read_lock(self.store)
            if on_wait and wait > 0 and not announced and not self._stale(info):
                on_wait(info)
                announced = True
            return info

        # waiting for a holder that is gone would only run out the clock
        outcome = poll_until(attempt, lambda got: got is True or self._stale(got),
                             timeout=wait, interval=1.0)
        if outcome is True:
            self.held = True
            self._start_heartbeat()
            return
        info = outcome if isinstance(outcome, LockInfo) else None
        raise LockHeld(
            f"another operation holds the lock: {info.describe() if info else 'unknown'}.",
            where=f"{self.store.transport.host}:{self.store.lock_dir}",
            hint=_lock_hint(info, self.stale_after),
        )

    def _stale(self, info: LockInfo | bool | None) -> bool:
        # no heartbeat yet: a holder between its mkdir and its first heartbeat
        return (isinstance(info, LockInfo) and info.heartbeat_age is not None
                and is_stale(info, self.stale_after))

    def _start_heartbeat(self) -> None:
        interval = max(min(self.stale_after / 4, 30.0), 0.5)

        def beat() -> None:
            while not self._stop.wait(interval):
                # a dead connection is noticed by the operation itself
                with contextlib.suppress(BluegreenError):
                    self.store.transport.run(
                        Command("touch", "--", f"{self.store.lock_dir}/heartbeat"), timeout=10)

        self._thread = threading.Thread(target=beat, daemon=True, name="lock-heartbeat")
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.held:
            self.store.transport.run(
                Command.script(_RELEASE_OWN, self.store.lock_dir, self.token), timeout=15)
            self.held = False


def read_lock(store: StateStore) -> LockInfo | None:
    result = store.transport.run(Command.script(_READ_LOCK, store.lock_dir))
    if result.exit_status == 44:
        return None
    with _state_errors("read the lock"):
        result.check("read the lock")
    return parse_lock(result.stdout)


def parse_lock(output: str) -> LockInfo:
    """`_READ_LOCK`'s output — the owner file's JSON, then the heartbeat's age in seconds —
    as a LockInfo; an owner file left empty or half-written reads as "unknown"."""
    lines = output.splitlines()
    try:
        data = json.loads(lines[0]) if lines and lines[0].strip() else {}
    except ValueError:
        data = {}
    age = float(lines[1]) if len(lines) > 1 and lines[1].strip().lstrip("-").isdigit() else None
    return LockInfo(
        owner=str(data.get("owner", "unknown")), pid=int(data.get("pid", 0) or 0),
        host=str(data.get("host", "unknown")), command=str(data.get("command", "unknown")),
        started=str(data.get("started", "unknown")), token=str(data.get("token", "")),
        heartbeat_age=age,
    )


def is_stale(info: LockInfo, stale_after: float) -> bool:
    if info.heartbeat_age is None or info.heartbeat_age > stale_after:
        return True
    if info.host == socket.gethostname() and info.pid:
        try:
            os.kill(info.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


def force_release(store: StateStore) -> None:
    store.transport.run(Command("rm", "-rf", "--", store.lock_dir)).check("release the lock")


def _lock_hint(info: LockInfo | None, stale_after: float) -> str:
    if info is not None and is_stale(info, stale_after):
        return ("The holder looks dead (stale heartbeat or process gone): "
                "`bluegreen lock release` removes the lock.")
    return ("Wait for it to finish, or pass --lock-wait SECONDS to queue behind it; "
            "`bluegreen lock status` shows it.")


def ensure_consistent(states: dict[str, State]) -> State:
    """The one state every balancer agrees on, or DriftError naming what differs."""
    distinct = {(s.generation, s.live, s.revision) for s in states.values()}
    first = next(iter(states.values()))
    if len(distinct) > 1:  # a different revision: a write that reached only some of them
        detail = "; ".join(f"{name}: live={s.live or 'none'} generation={s.generation} "
                           f"revision={s.revision}" for name, s in states.items())
        raise DriftError(
            f"balancers disagree about the state ({detail}).",
            hint="Run `bluegreen status` to see it, then `bluegreen switch --to COLOUR` to "
                 "reconcile every balancer.",
        )
    return first

