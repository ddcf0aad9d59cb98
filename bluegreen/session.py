"""An operation's session: one connection per host, the state stores on every balancer, the lock
on the primary balancer, and the history record written however the operation ends."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from bluegreen import cancel
from bluegreen.balancer import BalancerSite, site_for
from bluegreen.balancer.base import (
    Balancer,
    BalancerTraffic,
    RuntimeFacts,
    RuntimeRead,
    file_loaded,
)
from bluegreen.connections import Connections
from bluegreen.drift import drift_between, ensure_consistent, runtime_drift
from bluegreen.early import EarlyResults
from bluegreen.errors import BluegreenError, DriftError
from bluegreen.fanout import fan_out
from bluegreen.hooks import HookRunner
from bluegreen.host_script import HostStep, chained, reported, run_chain, split
from bluegreen.inventory import HostSpec, Inventory
from bluegreen.lock import Lock, LockInfo, lock_from, reading_lock
from bluegreen.model import Colour
from bluegreen.output import Reporter
from bluegreen.plan import build_upstream
from bluegreen.state import ColourStatus, Operation, State, actor, now
from bluegreen.store import StateGuard, StateStore
from bluegreen.transport.base import CommandResult, FilesRead, Transport

T = TypeVar("T")


@dataclass
class StatusReads:
    """`Session.read_for_status`: by balancer."""

    states: dict[str, State] = field(default_factory=dict)
    managed: dict[str, str | None] = field(default_factory=dict)  # None: no file yet
    loaded: dict[str, bool | None] = field(default_factory=dict)  # where a reload flips
    # what the runtime serves, where the balancer has one to ask (and it answered)
    serving: dict[str, str] = field(default_factory=dict)
    lingering: dict[str, dict[str, object]] = field(default_factory=dict)
    lock: LockInfo | None = None  # on the primary balancer

    def merge(self, other: StatusReads) -> None:
        self.states.update(other.states)
        self.managed.update(other.managed)
        self.loaded.update(other.loaded)
        self.serving.update(other.serving)
        self.lingering.update(other.lingering)
        self.lock = other.lock or self.lock


class BalancerRead(NamedTuple):
    """What every operation reads first on a balancer, in one command: its state, its managed
    file and, where it has a runtime to ask, what that serves."""

    files: FilesRead
    runtime: RuntimeRead | None

    @property
    def steps(self) -> list[HostStep]:
        steps = [HostStep("read the state", self.files.command)]
        if self.runtime is not None:
            steps.append(HostStep("read what the balancer serves", self.runtime.command))
        return steps


class Session:
    def __init__(self, inventory: Inventory, reporter: Reporter, *, command: str,
                 lock: bool = True, lock_wait: float = 0.0, hosts: list[HostSpec] | None = None,
                 busy_app_hosts: bool = False):
        self.sites: dict[str, BalancerSite] = {
            h.name: site_for(inventory, h) for h in inventory.hosts.balancer}
        self.inventory = inventory
        self.reporter = reporter
        self.command = command
        self.want_lock = lock
        self.lock_wait = lock_wait
        self.connections = Connections(inventory, hosts, busy_app_hosts=busy_app_hosts)
        self.stores: dict[str, StateStore] = {}
        self.lock: Lock | None = None
        self.hooks = HookRunner(inventory, self.connections, reporter,
                                command=command.split()[0])
        self.revisions_read: dict[str, int] = {}  # what each balancer had: the write guard
        self.changing: Colour | None = None  # a colour written ahead as being changed
        self.state: State | None = None  # the state as last read or written by this session
        self.flipped: State | None = None  # the state written by this session's flip, if any
        self.held_out: tuple[str, ...] = ()  # hosts this session last recorded out of traffic
        # the primary's state, managed file and runtime as read by the command that took the lock
        self._read_ahead: tuple[BalancerRead, CommandResult] | None = None
        self.started = time.monotonic()
        self.started_at = now()

    @property
    def balancers(self) -> list[HostSpec]:
        return list(self.inventory.hosts.balancer)

    @property
    def primary(self) -> StateStore:
        return self.stores[self.inventory.primary_balancer.name]

    def _store(self, name: str, transport: Transport) -> StateStore:
        """The balancer's state store, made once its connection is open (early, by a read
        started on it then)."""
        store = self.stores.get(name)
        if store is None:
            store = self.stores[name] = StateStore(transport, self.sites[name].state_dir,
                                                   self.inventory.service)
        return store

    def __enter__(self) -> Session:
        self.reporter.phase(f"connect to {len(self.connections.hosts)} host(s)")
        self.connections.__enter__()
        try:
            connected = {h.name for h in self.connections.hosts}
            for balancer in self.balancers:
                if balancer.name in connected:
                    self._store(balancer.name, self.connections[balancer.name])
            if self.want_lock:
                self.lock = Lock(self.primary, command=self.command,
                                 stale_after=self.inventory.lock.stale_after)
                # the primary's state, managed file and runtime, read under the lock as it is
                # taken: what every locked operation reads first
                reading = self._balancer_read(self.inventory.primary_balancer.name)
                taken = self.lock.acquire(wait=self.lock_wait, on_wait=self._announce_wait,
                                          then=chained(reading.steps, keep_going=True))
                self._read_ahead = (reading, taken)
        except BaseException:
            self.connections.__exit__(None, None, None)
            raise
        return self

    def _announce_wait(self, info: LockInfo | None) -> None:
        holder = info.describe() if info else "another operation"
        self.reporter.step(self.inventory.primary_balancer.name,
                           f"waiting up to {self.lock_wait:g} s for the lock ({holder})")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self.lock is not None:
                with cancel.deferred_interrupts(then_raise=False):  # the work is done
                    try:
                        self.lock.release()
                    except BluegreenError as error:
                        self.reporter.warn(f"could not release the lock: {error.paragraph()}")
        finally:
            self.connections.__exit__(exc_type, exc, tb)

    def read_states(self) -> dict[str, State]:
        self._read_ahead = None  # read again: it would be older than this
        states = fan_out(self.balancers, lambda b: self.stores[b.name].read(), step="read state",
                         name=lambda b: b.name, parallelism=self.inventory.ssh.parallelism)
        by_host = {b.name: s for b, s in zip(self.balancers, states, strict=True)}
        self.revisions_read = {name: s.revision for name, s in by_host.items()}
        return by_host

    def _balancer_read(self, name: str) -> BalancerRead:
        site = self.sites[name]
        return BalancerRead(self.stores[name].reading_with(site.managed.path),
                            site.driver.runtime_read(self.inventory.upstream_name,
                                                     lingering=False))

    def read_balancers(self) -> tuple[dict[str, State], dict[str, str | None], dict[str, str]]:
        """Each balancer's state and managed file, and what its runtime serves where it has
        one to ask, read together (one round trip each; the first time, the primary's was read
        as the lock was taken)."""
        ahead, self._read_ahead = self._read_ahead, None
        primary = self.inventory.primary_balancer.name

        def read_one(balancer: HostSpec) -> tuple[State, str | None, str | None]:
            name = balancer.name
            if ahead is not None and name == primary:
                reading, results = ahead[0], split(ahead[1], ahead[0].steps)
            else:
                reading = self._balancer_read(name)
                results = run_chain(self.connections[name], reading.steps, keep_going=True)
            state, text = self.stores[name].read_from(
                reading.files, reported(results[0], reading.steps[0], where=name))
            serving = None
            if reading.runtime is not None and results[1] is not None:
                serving = reading.runtime.read(results[1]).serving
            return state, text, serving

        read = fan_out(self.balancers, read_one, step="read state", name=lambda b: b.name,
                       parallelism=self.inventory.ssh.parallelism)
        names = [b.name for b in self.balancers]
        states = {name: state for name, (state, _, _) in zip(names, read, strict=True)}
        self.revisions_read = {name: s.revision for name, s in states.items()}
        return (states, {name: text for name, (_, text, _) in zip(names, read, strict=True)},
                {name: serving for name, (_, _, serving) in zip(names, read, strict=True)
                 if serving is not None})

    def read_for_status(self, early: EarlyResults | None = None) -> StatusReads:
        """What `status` reads on each balancer, in one command each: its state and managed
        file, whether its workers loaded that file (where a reload flips), what its runtime
        serves and what earlier flips left running, and on the primary the lock. `early`: the
        reads `read_status_early` started as the connections opened, taken where there are."""
        self._read_ahead = None
        reads, early = StatusReads(), early or EarlyResults()

        def read_one(balancer: HostSpec) -> StatusReads:
            return early.take(_early_key(balancer), lambda: self._status_read(
                balancer, self.connections[balancer.name]))

        for part in fan_out(self.balancers, read_one, step="read state",
                            name=lambda b: b.name, parallelism=self.inventory.ssh.parallelism):
            reads.merge(part)
        self.revisions_read = {name: state.revision for name, state in reads.states.items()}
        return reads

    def read_status_early(self, early: EarlyResults) -> None:
        """Start each balancer's `read_for_status` read as soon as its connection opens, kept
        in `early` for `read_for_status(early)`. Call before entering the session."""
        balancers = {b.name: b for b in self.balancers}

        def read(host: HostSpec, transport: Transport) -> None:
            balancer = balancers.get(host.name)
            if balancer is not None:
                early.keep(_early_key(balancer), lambda: self._status_read(balancer, transport))

        self.connections.also_on_open(read)

    def _status_read(self, balancer: HostSpec, transport: Transport) -> StatusReads:
        """`read_for_status`'s read of one balancer (a StatusReads of it alone)."""
        name, site = balancer.name, self.sites[balancer.name]
        store = self._store(name, transport)
        primary = name == self.inventory.primary_balancer.name
        reads = StatusReads()
        reading = store.reading_with(site.managed.path)
        reloads = site.settings.flip == "reload"
        loaded = site.driver.loaded(site.managed.path) if reloads else None
        runtime = site.driver.runtime_read(self.inventory.upstream_name, lingering=True)
        steps = {"state": HostStep("read the state", reading.command)}
        if loaded is not None:
            steps["loaded"] = HostStep("read the balancer's workers", loaded)
        if runtime is not None:
            steps["runtime"] = HostStep("read what the balancer runs", runtime.command)
        if primary:
            steps["lock"] = HostStep("read the lock", reading_lock(store))
        results = dict(zip(steps, run_chain(transport, list(steps.values()), keep_going=True),
                           strict=True))

        def result(key: str) -> CommandResult:
            return reported(results[key], steps[key], where=name)

        reads.states[name], reads.managed[name] = store.read_from(reading, result("state"))
        if reloads:
            found = results.get("loaded")
            reads.loaded[name] = file_loaded(found.stdout) if found and found.ok else None
        facts = runtime.read(result("runtime")) if runtime is not None else RuntimeFacts()
        if facts.serving is not None:
            reads.serving[name] = facts.serving
        reads.lingering[name] = facts.lingering
        if primary:
            reads.lock = lock_from(result("lock"))
        return reads

    def traffic(self) -> dict[str, BalancerTraffic]:
        """Per balancer that keeps per-server counters (HAProxy with its admin socket, nginx
        with its access log), what it counted; balancers without them, or whose admin socket
        does not answer, are left out; an access log that cannot be read raises."""
        every_server = build_upstream(self.inventory, Colour.BLUE, 0)  # both colours'
        found = self._ask_drivers(lambda driver, transport, _:
                                  driver.traffic(transport, every_server),
                                  step="read balancer counters")
        return {host: value for host, value in found.items() if value is not None}

    def _ask_drivers(self, ask: Callable[[Balancer, Transport, str], T], *, step: str
                     ) -> dict[str, T]:
        """Ask every balancer's driver, in parallel, with its connection and the upstream's
        name; the answers by balancer."""
        def read(host: HostSpec) -> T:
            return ask(self.sites[host.name].driver, self.connections[host.name],
                       self.inventory.upstream_name)

        found = fan_out(self.balancers, read, step=step, name=lambda b: b.name,
                        parallelism=self.inventory.ssh.parallelism)
        return {b.name: value for b, value in zip(self.balancers, found, strict=True)}

    def agreed_state(self, *, allow_drift: bool = False) -> tuple[State, dict[str, str | None]]:
        """The state all balancers agree on and the live managed files; DriftError (exit 9) when
        balancers disagree with each other or with their own file, unless `allow_drift`."""
        states, current, serving = self.read_balancers()
        if allow_drift:
            self.state = max(states.values(), key=lambda s: (s.generation, s.revision))
            return self.state, current
        state = self.state = ensure_consistent(states)
        for name, text in current.items():
            problem = drift_between(state, text, host=name)
            if problem:
                raise DriftError(
                    f"the balancer config differs from the recorded state: {problem}.",
                    where=f"{name}:{self.sites[name].managed.path}",
                    hint="Someone changed it behind bluegreen's back, or an operation died "
                         "mid-way. `bluegreen status` shows it; `bluegreen switch --to COLOUR` "
                         "reconciles.",
                )
        for name, runs in serving.items():
            kind = self.sites[name].driver.kind
            problem = runtime_drift(state, runs, kind=kind)
            if problem:
                raise DriftError(
                    f"what {kind} runs differs from the recorded state: {problem}.",
                    where=name,
                    hint=f"Someone changed what {kind} runs through its runtime API. "
                         "`bluegreen status` shows it; `bluegreen switch --to COLOUR` "
                         "reconciles.",
                )
        return state, current

    def write_state(self, state: State) -> State:
        """Write `state` to every balancer under the next revision, each write guarded by the
        revision that balancer had when read (or last written by this session)."""
        self._read_ahead = None  # what the lock's command read is not the state any more
        written = replace(state, revision=max(self.revisions_read.values(), default=0) + 1)

        def write(balancer: HostSpec) -> None:
            self.stores[balancer.name].write(
                written, expected_revision=self.revisions_read[balancer.name])
            self.revisions_read[balancer.name] = written.revision  # what it holds now

        with cancel.deferred_interrupts():  # a write is finished, and known, or not started
            fan_out(self.balancers, write, step="write state", name=lambda b: b.name,
                    parallelism=self.inventory.ssh.parallelism)
            self.state = written
        return written

    def flip_guards(self) -> dict[str, StateGuard]:
        """Per balancer, the check a flip runs there right before staging (in the same
        command): the state is still what this session read or wrote, and the lock is still
        its own (on the primary balancer)."""
        primary = self.inventory.primary_balancer.name
        token = self.lock.token if self.lock is not None and self.lock.held else None
        return {b.name: self.stores[b.name].guard(token if b.name == primary else None)
                for b in self.balancers}

    def begin_change(self, state: State, colour: Colour, *, status: ColourStatus,
                     release: str | None, step: str, error: str | None = None) -> State:
        """Write ahead of changing `colour` (stopping it, pointing it at a release, starting it):
        from now until `finish_change`, the state says what is under way, so that whatever ends
        this process, `status` tells the truth and `rollback` refuses the colour."""
        before = state.colour(colour)
        changed = replace(
            state.with_colour(colour, status=status, release=release, since=now(),
                              replaced=before.release, error=error),
            operation=Operation(command=self.command, by=actor(), started=self.started_at,
                                step=step))
        with cancel.deferred_interrupts():
            try:
                written = self.write_state(changed)
            except BluegreenError:
                # Some balancers may hold the change although nothing was touched: put back
                # what they had, where they can still be written.
                with contextlib.suppress(BluegreenError):
                    self.write_state(state)
                raise
            self.changing = colour
        return written

    def finish_change(self, state: State) -> State:
        """Write the state that ends the change (its operation cleared)."""
        with cancel.deferred_interrupts():
            written = self.write_state(replace(state, operation=None))
            self.changing = None
        return written

    def fail_change(self, reason: str) -> None:
        """Record that the change of a colour failed, best effort: when even this write fails,
        the state written ahead (`starting`/`stopping` with the operation) still tells the
        truth. A colour that was being started is `failed` (it may run the new release); one
        that was being stopped stays `stopping` (its release did not change, and whether it
        still runs is for each host to say)."""
        colour, state = self.changing, self.state
        if colour is None or state is None:
            return
        self.changing = None
        current = state.colour(colour)
        failed = (current if current.status == "stopping"
                  else replace(current, status="failed", error=reason, since=now()))
        try:
            self.write_state(replace(state, colours={**state.colours, colour.value: failed},
                                     operation=None))
        except BluegreenError as error:
            self.reporter.warn(f"could not record that {colour} failed ({error.paragraph()}); "
                               f"the state still says {colour} is "
                               f"{state.colour(colour).status}, written ahead of the change.")

    def record(self, record: dict[str, Any], *, last: bool = False) -> None:
        """Append one history record on every balancer; a failure here is warned about, since
        the operation itself has already happened. `last`: nothing runs after it under the
        lock, which the primary balancer then releases in the same command."""
        full = {"id": uuid.uuid4().hex[:12], "who": actor(), "started": self.started_at,
                "finished": now(), "duration_s": round(time.monotonic() - self.started, 3),
                "service": self.inventory.service, **record}
        lock = self.lock if last and self.lock is not None and self.lock.held else None

        def append(balancer: HostSpec) -> None:
            store = self.stores[balancer.name]
            store.append_history(full, then_release=lock if lock is not None
                                 and lock.store is store else None)

        try:
            fan_out(self.balancers, append, step="append history", name=lambda b: b.name,
                    parallelism=self.inventory.ssh.parallelism)
        except BluegreenError as error:
            self.reporter.warn(f"history not fully written: {error.paragraph()}")


def _early_key(balancer: HostSpec) -> str:
    return f"balancer {balancer.name}"
