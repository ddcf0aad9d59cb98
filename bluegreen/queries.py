"""Read-only commands: status (what each balancer really serves, every instance, the lock),
history, and the lock's status and release."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bluegreen import cancel
from bluegreen.app import AppStack, InstanceFacts, InstanceSpec, instance_specs
from bluegreen.balancer.base import parse_header
from bluegreen.canary_analysis import judge
from bluegreen.drift import drift_between, ensure_consistent, runtime_drift
from bluegreen.early import EarlyResults
from bluegreen.errors import BluegreenError, LockHeld
from bluegreen.fanout import fan_out
from bluegreen.health import HealthChecker
from bluegreen.instances import host_check, host_check_outcome, probe_instance
from bluegreen.inventory import HostSpec, Inventory
from bluegreen.lock import LockInfo, force_release, is_stale, read_lock
from bluegreen.model import Colour
from bluegreen.output import Reporter
from bluegreen.prometheus import canary_metrics
from bluegreen.render import uses_variable
from bluegreen.results import (
    CanaryStatus,
    CanaryView,
    ColourStatus,
    InstanceStatus,
    LockReleased,
    LockState,
    LockStatus,
    OperationStatus,
    Status,
    amended,
    balancer_status,
)
from bluegreen.session import Session
from bluegreen.state import State
from bluegreen.transport.base import Transport


def status(inventory: Inventory, reporter: Reporter) -> Status:
    session, early = _status_session(inventory, reporter)
    with session:
        return status_in(session, early)


def watch_status(inventory: Inventory, reporter: Reporter, *,
                 show: Callable[[Status], None], interval: float = 1.0) -> None:
    """`status` again every `interval` seconds over the same connections, until Ctrl-C."""
    session, early = _status_session(inventory, reporter)
    with session:
        while True:
            started = time.monotonic()
            show(status_in(session, early))  # the first round takes what `early` read
            cancel.sleep(max(0.0, interval - (time.monotonic() - started)))


def _status_session(inventory: Inventory, reporter: Reporter
                    ) -> tuple[Session, EarlyResults]:
    """A session for `status` whose reads start on each host as soon as its connection opens
    (none of them needs another host's answer): the balancers' state and the app hosts'
    facts. The answers wait in the EarlyResults for the steps that take them."""
    session = Session(inventory, reporter, command="status", lock=False)
    early = EarlyResults()
    session.read_status_early(early)
    reader = _InstanceReader(inventory)

    def read_facts(host: HostSpec, transport: Transport) -> None:
        specs = reader.by_host.get(host.name)
        if specs:
            early.keep(_facts_key(host.name), lambda: reader.facts(transport, specs))

    session.connections.also_on_open(read_facts)
    return session, early


def canary_status(inventory: Inventory, reporter: Reporter) -> CanaryStatus:
    with Session(inventory, reporter, command="canary status", lock=False) as session:
        state = ensure_consistent(session.read_states())
        analysis = None
        if state.canary is not None and state.live is not None and inventory.canary.analysed:
            try:
                counted = session.traffic() if inventory.canary.counted else {}
                metrics = canary_metrics(inventory, state.canary, stable=state.live)
            except BluegreenError as error:  # the canary is still shown, unjudged
                analysis = {"judged": False, "passed": False, "error": error.message,
                            "described": f"not judged: {error.message}"}
            else:
                verdict = judge(inventory.canary, state.canary.baseline, counted,
                                canary=state.canary.colour, stable=state.live.value,
                                metrics=metrics)
                analysis = {**verdict.to_dict(), "described": verdict.describe()}
    return CanaryStatus(live=state.live.value if state.live else None, weights=state.weights,
                        canary=CanaryView.of(state.canary) if state.canary else None,
                        analysis=analysis)


def status_in(session: Session, early: EarlyResults | None = None) -> Status:
    """What each balancer serves, every instance, the colours, the operation and the lock.
    `early`: what the session read as its connections opened, taken where it is there."""
    inventory = session.inventory
    reads = session.read_for_status(early)
    states, managed, loaded, lock = reads.states, reads.managed, reads.loaded, reads.lock
    runtime, lingering = reads.serving, reads.lingering
    balancers = []
    for host in session.balancers:
        state, text = states[host.name], managed[host.name]
        header = parse_header(text)
        file_loaded = loaded.get(host.name)
        balancers.append(balancer_status({
            "host": host.name,
            "kind": session.sites[host.name].driver.kind,
            "state_live": state.live.value if state.live else None,
            "state_generation": state.generation,
            "file_colour": header.colour.value if header else None,
            "file_loaded": file_loaded,
            # what it serves: the file's colour once its workers loaded it; HAProxy's
            # runtime where it has one
            "serving": runtime.get(host.name) or (
                header.colour.value if header and file_loaded is not False else None),
            "serving_generation": header.generation if header else None,
            "runtime_serving": runtime.get(host.name),
            "drift": drift_between(state, text, host=host.name)
            or runtime_drift(state, runtime.get(host.name),
                             kind=session.sites[host.name].driver.kind)
            or _not_loaded(file_loaded, header is not None),
            **lingering[host.name],
        }))
    try:
        agreed = ensure_consistent(states)
        disagreement = None
    except BluegreenError as error:
        agreed = max(states.values(), key=lambda s: s.generation)
        disagreement = error.message
    instances = _instances(inventory, session, agreed.live,
                           agreed.colour(agreed.live).out if agreed.live else (), early)
    drift = disagreement or next((b.drift for b in balancers if b.drift), None)
    operation = _operation(agreed, lock, inventory)
    if operation is not None and operation.in_progress and drift:
        # a flip under way makes balancers and state differ for a moment: not drift
        operation = amended(operation, transient=drift)
        drift = None
    return Status(
        service=inventory.service,
        live=agreed.live.value if agreed.live else None,
        generation=agreed.generation,
        drift=drift,
        balancers=balancers,
        instances=instances,
        colours={name: ColourStatus(release=c.release, status=c.status, since=c.since,
                                    replaced=c.replaced, error=c.error,
                                    out_of_traffic=list(c.out),
                                    connections=sum(i.connections for i in instances
                                                    if i.colour == name))
                 for name, c in agreed.colours.items()},
        operation=operation,
        weights=agreed.weights,
        canary=CanaryView.of(agreed.canary) if agreed.canary else None,
        lock=None if lock is None else _lock_data(lock, inventory),
    )


def _not_loaded(file_loaded: bool | None, managed: bool) -> str | None:
    if managed and file_loaded is False:
        return ("the managed file was written after the balancer's workers started: it is "
                "staged but not loaded, and the balancer's next reload will serve it")
    return None


def _operation(state: State, lock: LockInfo | None, inventory: Inventory
               ) -> OperationStatus | None:
    """The operation under way (a live lock holder), or the one the state says was cut short
    (written ahead, never finished, and no live holder)."""
    alive = lock is not None and not is_stale(lock, inventory.lock.stale_after)
    if state.operation is None and not alive:
        return None
    if alive:
        assert lock is not None
        return OperationStatus(in_progress=True, command=lock.command, by=lock.owner,
                               started=lock.started,
                               step=state.operation.step if state.operation else None)
    assert state.operation is not None
    return OperationStatus(in_progress=False, command=state.operation.command,
                           by=state.operation.by, started=state.operation.started,
                           step=state.operation.step)


class _InstanceReader:
    """What `status` asks each app host about its instances: one command a host, with the
    health checks in it (`AppStack.facts_of`)."""

    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        self.stack = AppStack(inventory, inventory.app) if inventory.app is not None else None
        self.specs = [spec for colour in Colour for spec in instance_specs(inventory, colour)]
        self.by_host: dict[str, list[InstanceSpec]] = {}
        for spec in self.specs:
            self.by_host.setdefault(spec.host.name, []).append(spec)
        # checked on the host in the facts' own round trip, unless the body it must show names
        # the release, which those facts read
        self.with_facts = not uses_variable(inventory.health.expect_body or "", "release")

    def facts(self, transport: Transport, specs: list[InstanceSpec]
              ) -> list[tuple[InstanceFacts, bool]]:
        """Each instance's facts, and whether its health was checked with them."""
        assert self.stack is not None
        checks = [host_check(self.inventory, spec, release=None, retries=1)
                  if self.with_facts else None for spec in specs]
        found = self.stack.facts_of(
            transport, specs, then=[check.command if check else None for check in checks],
            once=[check.once if check else None for check in checks],
            timeout=self.inventory.ssh.command_timeout + sum(c.seconds for c in checks if c))
        return [(facts, check is not None) for facts, check in zip(found, checks, strict=True)]


def _facts_key(host: str) -> str:
    return f"facts {host}"


def _instances(inventory: Inventory, session: Session, live: Colour | None,
               out: tuple[str, ...] = (), early: EarlyResults | None = None
               ) -> list[InstanceStatus]:
    if inventory.app is None:
        return []
    reader, early = _InstanceReader(inventory), early or EarlyResults()
    checker = HealthChecker(sleep=cancel.sleep)

    def inspect(host_specs: list[InstanceSpec]) -> list[InstanceStatus]:
        name = host_specs[0].host.name
        found = early.take(_facts_key(name), lambda: reader.facts(session.connections[name],
                                                                   host_specs))
        return [status_of(spec, facts, checked=checked)
                for spec, (facts, checked) in zip(host_specs, found, strict=True)]

    def status_of(spec: InstanceSpec, facts: InstanceFacts, *, checked: bool) -> InstanceStatus:
        release, running = facts.pointer, facts.running
        healthy = None
        if running:
            outcome = (host_check_outcome(inventory, spec, facts.then, release=release,
                                          retries=1) if checked else None) or probe_instance(
                inventory, session.connections, spec, checker=checker, retries=1,
                release=release)
            healthy = outcome.healthy
        return InstanceStatus(host=spec.host.name, colour=spec.colour.value, port=spec.port,
                              live=spec.colour is live, running=running, healthy=healthy,
                              release=release, connections=facts.connections,
                              in_traffic=spec.colour is live and spec.host.name not in out)

    try:
        per_host = fan_out(list(reader.by_host.values()), inspect, step="status",
                           name=lambda host_specs: host_specs[0].host.name,
                           parallelism=inventory.ssh.parallelism)
    finally:
        checker.close()
    found = {(s.host, s.colour): s for statuses in per_host for s in statuses}
    return [found[(spec.host.name, spec.colour.value)] for spec in reader.specs]


def history(inventory: Inventory, reporter: Reporter, *, limit: int) -> list[dict[str, Any]]:
    hosts = [inventory.primary_balancer]
    with Session(inventory, reporter, command="history", lock=False, hosts=hosts) as session:
        return session.primary.history(limit)


def lock_status(inventory: Inventory, reporter: Reporter) -> LockState:
    hosts = [inventory.primary_balancer]
    with Session(inventory, reporter, command="lock status", lock=False, hosts=hosts) as session:
        info = read_lock(session.primary)
        return LockState(lock=None if info is None else _lock_data(info, inventory))


def _lock_data(info: LockInfo, inventory: Inventory) -> LockStatus:
    return LockStatus(owner=info.owner, pid=info.pid, host=info.host, command=info.command,
                      started=info.started, heartbeat_age_s=info.heartbeat_age,
                      stale=is_stale(info, inventory.lock.stale_after))


def lock_release(inventory: Inventory, reporter: Reporter, *, force: bool) -> LockReleased:
    hosts = [inventory.primary_balancer]
    with Session(inventory, reporter, command="lock release", lock=False,
                 hosts=hosts) as session:
        info = read_lock(session.primary)
        if info is None:
            return LockReleased(released=False, reason="no lock is held")
        if not force and not is_stale(info, inventory.lock.stale_after):
            raise LockHeld(
                f"the lock is {info.describe()} and looks alive.",
                where=f"{inventory.primary_balancer.name}:{session.primary.lock_dir}",
                hint="Breaking a live lock lets two operations run at once. If you are sure "
                     "its holder is gone, pass --force.",
            )
        force_release(session.primary)
        return LockReleased(released=True, previous_holder=info.describe())
