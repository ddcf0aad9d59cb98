"""Drift: where the balancers disagree with each other, or with the state they hold — the
managed file's header and checksum, or what a balancer serves at runtime."""

from __future__ import annotations

from bluegreen.balancer.base import parse_header
from bluegreen.errors import DriftError
from bluegreen.state import State, sha256_text


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

def _weights(weights: dict[str, int]) -> str:
    return ",".join(f"{colour}:{weight}" for colour, weight in sorted(weights.items()))


def runtime_drift(state: State, serving: str | None, *, kind: str) -> str | None:
    if state.live is None or serving is None:
        return None
    expected = ("+".join(sorted(c for c, w in state.weights.items() if w > 0)) if state.canary
                else state.live.value)
    if serving != expected:
        return f"{kind} serves {serving} at runtime, state says {expected}"
    return None


def drift_between(state: State, managed_text: str | None, *, host: str) -> str | None:
    header = parse_header(managed_text)
    if state.live is None and state.generation == 0:
        if managed_text is not None and header is not None:
            return (f"the file serves {header.colour} (generation {header.generation}) but no "
                    "state was recorded")
        return None
    if header is None:
        return ("the managed file is missing or has no bluegreen header" if managed_text is None
                or not managed_text.strip() else "the managed file's bluegreen header is gone "
                "(edited by hand?)")
    if header.colour != state.live or header.generation != state.generation:
        return (f"file serves {header.colour} (generation {header.generation}), state says "
                f"{state.live} (generation {state.generation})")
    if any(state.weights.values()) and header.weights != state.weights:
        return (f"file weights {_weights(header.weights)}, state says "
                f"{_weights(state.weights)}")
    recorded = state.managed_sha256.get(host)
    if recorded and sha256_text(managed_text or "") != recorded:
        return "the file was edited after bluegreen wrote it (its checksum differs)"
    return None
