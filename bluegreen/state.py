"""The state as a value: the live colour, the weights, each colour's release and status, the
operation in progress and the canary, with the generation that numbers flips. Stored on every
balancer by `store.StateStore`, guarded by `lock.Lock`, compared by `drift`."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

from bluegreen.model import Colour

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
