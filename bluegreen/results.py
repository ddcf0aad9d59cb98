"""What the commands return: typed values that `cli/render.py` shows to people and `--json`
prints as they are (`msgspec.to_builtins`; a field left UNSET is not printed, so each command's
document has only the keys that mean something for it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

if TYPE_CHECKING:
    from bluegreen.retire import Retired
    from bluegreen.state import Canary, State


class ColourView(msgspec.Struct):
    release: str | None
    status: str | None


class CanaryView(msgspec.Struct, kw_only=True):
    """A canary as results and `status` show it: its state without the raw counters its
    analysis compares with, plus the next step's weight and this step's pause."""

    colour: str
    release: str | None
    weight: int
    since: str
    by: str
    steps: tuple[int, ...]
    pauses: tuple[float | None, ...]
    breaches: int
    judged_since: str | None
    paused_at: str | None
    paused_by: str | None
    next_weight: int | None
    pause: float | None

    @classmethod
    def of(cls, canary: Canary) -> CanaryView:
        return cls(colour=canary.colour, release=canary.release, weight=canary.weight,
                   since=canary.since, by=canary.by, steps=canary.steps, pauses=canary.pauses,
                   breaches=canary.breaches, judged_since=canary.judged_since,
                   paused_at=canary.paused_at, paused_by=canary.paused_by,
                   next_weight=canary.next_weight, pause=canary.pause)


class RetiredView(msgspec.Struct):
    """What a retire stopped, and how many connections its stop cut (0: all drained)."""

    colour: str
    release: str | None
    connections_cut: int
    drained: bool
    cut_by_host: dict[str, int]

    @classmethod
    def of(cls, retired: Retired) -> RetiredView:
        cut = sum(retired.cut.values())
        return cls(colour=retired.colour.value, release=retired.release, connections_cut=cut,
                   drained=cut == 0, cut_by_host=dict(retired.cut))


class Moved(msgspec.Struct, kw_only=True):
    """Where traffic goes after deploy, switch, rollback or a canary command."""

    live: str | None
    previous: str | None
    release: str | None
    generation: int
    colours: dict[str, ColourView]
    out_of_traffic: list[str] | UnsetType = UNSET  # deploy: left out (deploy.max_unhealthy)
    idle_connections_cut: int | UnsetType = UNSET  # deploy: cut by stopping the idle colour
    retired: RetiredView | UnsetType | None = UNSET  # deploy --retire-after
    canary: CanaryView | UnsetType | None = UNSET  # a canary command, or deploy --canary
    changed: bool | UnsetType = UNSET  # canary pause/resume: False when already so
    paused: bool | UnsetType = UNSET  # a stepping canary stopped: paused elsewhere

    @classmethod
    def of(cls, state: State, *, previous: str | None, release: str | None) -> Moved:
        return cls(live=state.live.value if state.live else None, previous=previous,
                   release=release, generation=state.generation, colours=colours_of(state))


class EndedElsewhere(msgspec.Struct, kw_only=True):
    """A stepping canary that another operation ended (promoted or aborted) meanwhile."""

    ended_elsewhere: bool = True
    release: str | None
    canary: None = None


class DryRun(msgspec.Struct, kw_only=True):
    """The plan a command would run, as `--dry-run` prints it."""

    dry_run: bool = True
    plan: list[str]


class RetireResult(msgspec.Struct, kw_only=True):
    live: str | None
    generation: int
    retired: str | None  # the colour retired (the idle one)
    connections_cut: int
    drained: bool
    colours: dict[str, ColourView]
    # when something was running: what stopped
    colour: str | UnsetType = UNSET
    release: str | UnsetType | None = UNSET
    cut_by_host: dict[str, int] | UnsetType = UNSET


class ReloadedHost(msgspec.Struct, kw_only=True):
    host: str
    master: int
    replaced: int  # worker processes replaced
    old_workers: list[int]
    new_workers: list[int]
    forced_exits: int  # workers killed at Swoole's max_wait_time
    seconds: float


class Reloaded(msgspec.Struct, kw_only=True):
    colour: str
    signal: str
    release: str | None  # what the workers now run
    replaced: str | None  # the release before, when the reload moved to a new one
    hosts: list[ReloadedHost]
    generation: int
    out: list[str]  # hosts left out of traffic
    seconds: float


class BalancerStatus(msgspec.Struct, kw_only=True):
    """What a balancer's state says, what its managed file says, and what it serves."""

    host: str
    kind: str
    state_live: str | None
    state_generation: int
    file_colour: str | None
    file_loaded: bool | None  # None: unknown (the driver cannot tell)
    serving: str | None
    serving_generation: int | None
    runtime_serving: str | None  # what HAProxy's runtime API serves, where it has one
    drift: str | None
    # what earlier flips left running, where the driver can tell
    old_workers: int | UnsetType | None = UNSET
    sessions: dict[str, int] | UnsetType = UNSET


class InstanceStatus(msgspec.Struct, kw_only=True):
    host: str
    colour: str
    port: int
    live: bool
    running: bool
    healthy: bool | None  # None: not probed (not running)
    release: str | None
    connections: int
    in_traffic: bool


class ColourStatus(msgspec.Struct, kw_only=True):
    release: str | None
    status: str | None
    since: str | None
    replaced: str | None
    error: str | None
    out_of_traffic: list[str]
    connections: int


class OperationStatus(msgspec.Struct, kw_only=True):
    """The operation under way (a live lock holder), or one the state says was cut short."""

    in_progress: bool
    command: str
    by: str
    started: str
    step: str | None
    transient: str | UnsetType = UNSET  # drift a flip under way explains


class LockStatus(msgspec.Struct, kw_only=True):
    owner: str
    pid: int
    host: str
    command: str
    started: str
    heartbeat_age_s: float | None
    stale: bool


class Status(msgspec.Struct, kw_only=True):
    service: str
    live: str | None
    generation: int
    drift: str | None
    balancers: list[BalancerStatus]
    instances: list[InstanceStatus]
    colours: dict[str, ColourStatus]
    operation: OperationStatus | None
    weights: dict[str, int]
    canary: CanaryView | None
    lock: LockStatus | None


def balancer_status(fields: dict[str, Any]) -> BalancerStatus:
    """A balancer's row, from what was read and what its driver says lingers (checked: a
    driver reporting something else fails here, not in the renderer)."""
    return msgspec.convert(fields, BalancerStatus)


class CanaryStatus(msgspec.Struct, kw_only=True):
    """The canary in progress and, when it is analysed, how it is judged now."""

    live: str | None
    weights: dict[str, int]
    canary: CanaryView | None
    # the verdict's fields and `described`, its one-line account (`canary_analysis.Verdict`)
    analysis: dict[str, Any] | None


class LockState(msgspec.Struct):
    lock: LockStatus | None  # None: free


class LockReleased(msgspec.Struct, kw_only=True):
    released: bool
    reason: str | UnsetType = UNSET  # why nothing was released
    previous_holder: str | UnsetType = UNSET


Result = TypeVar("Result", bound=msgspec.Struct)


def amended(result: Result, **changes: Any) -> Result:
    """`result` with `changes` to its fields."""
    return msgspec.structs.replace(result, **changes)


def fields_of(result: msgspec.Struct) -> dict[str, Any]:
    """A result's fields as JSON values (for a history record)."""
    converted: dict[str, Any] = msgspec.to_builtins(result)
    return converted


def plain(value: object) -> object:
    """A result as the JSON values `--json` prints; None for what is not a result."""
    return msgspec.to_builtins(value) if isinstance(value, msgspec.Struct) else None


def colours_of(state: State) -> dict[str, ColourView]:
    return {name: ColourView(c.release, c.status) for name, c in state.colours.items()}
