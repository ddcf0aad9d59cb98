"""What the operations share: their options, the progress their steps keep, the checks that refuse
them, and the artifact a deploy or reload sends."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bluegreen.app import InstanceSpec
from bluegreen.errors import (
    BluegreenError,
    CanaryInProgress,
    InventoryError,
    NoCanary,
    RemoteCommandFailed,
    StartFailed,
    UsageError,
)
from bluegreen.inventory import Inventory
from bluegreen.model import Colour
from bluegreen.plan import FlipPlan
from bluegreen.release import Artifact, package, validate_release_id
from bluegreen.render import render_text
from bluegreen.results import DryRun, Moved
from bluegreen.retire import Retired
from bluegreen.session import Session
from bluegreen.state import Canary, State


@dataclass(frozen=True)
class Options:
    dry_run: bool = False
    lock_wait: float = 0.0
    retire_after: float | None = None  # deploy: retire the old colour after this drain timeout
    drain: bool = True  # deploy: drain the idle colour's connections before stopping it
    # deploy: give the new release this share of traffic, then (promote) each next one
    canary: tuple[int, ...] | None = None
    full: bool = False  # canary promote: all traffic now, skipping the remaining steps
    skip_analysis: bool = False  # canary promote: without judging the canary first
    # canary promote: only the canary with this (colour, release, since), else NoCanary
    expect_canary: tuple[str, str | None, str] | None = None
    # canary promote, stepping: only from this weight (another process may have moved it)
    expect_weight: int | None = None
    step_pause: float | None = None  # deploy: every canary step lasts this long (--step-pause)
    no_canary: bool = False  # deploy: straight to all the traffic despite canary.steps
    canary_pauses: tuple[float | None, ...] = ()  # each step's pause (None: manual)
    canary_from_inventory: bool = False  # canary.steps: a first deploy goes straight live


@dataclass
class Progress:
    """What an operation's steps learned and changed so far, for the steps after them."""

    state: State  # as last read or written
    release: str | None = None  # the release the flip serves
    flip: FlipPlan | None = None  # the flip as it runs (the plan's, or one that leaves some out)
    unhealthy: tuple[str, ...] = ()  # hosts kept out of traffic (deploy.max_unhealthy)
    cut: dict[str, int] = field(default_factory=dict)  # connections each stop cut
    canary: Canary | None = None  # the canary a canary flip records
    retire_ran: bool = False  # deploy --retire-after: the idle colour's retire was tried
    retired: Retired | None = None  # what it stopped (None: nothing was running)


@contextmanager
def start_failures(spec: InstanceSpec) -> Iterator[None]:
    """A remote step of standing up an instance that fails (upload, stop, pointer, start) fails
    the deploy like an unhealthy target (exit 5), naming the host and the step."""
    try:
        yield
    except BluegreenError as error:
        if error.exit_code != RemoteCommandFailed.exit_code:  # already a specific failure
            raise
        raise StartFailed(error.message, where=error.where or spec.host.name,
                          hint=error.hint or "Live traffic was not touched.") from None


def require_weights(session: Session, state: State, *, where: str) -> None:
    if state.live is None:
        raise UsageError("a canary needs a live colour to share the traffic with.",
                         where=where, hint="Deploy without --canary first.")
    unweighted = [name for name, site in session.sites.items() if not site.driver.weighted]
    if unweighted:
        raise UsageError(f"{', '.join(unweighted)} cannot split traffic by weight.",
                         where=where, hint="Canaries need nginx or HAProxy"
                         + ("; `deploy --no-canary` deploys straight." if where != "--canary"
                            else "."))


def require_canary(state: State) -> Canary:
    if state.canary is None:
        raise NoCanary("no canary is in progress.",
                         hint="Start one with `bluegreen deploy --canary PERCENT`.")
    return state.canary


def refuse_during_canary(state: State, operation: str) -> None:
    if state.canary is not None:
        raise CanaryInProgress(
            f"a canary is in progress: {state.canary.describe()}; {operation} waits for it.",
            hint="`bluegreen canary promote` gives it all the traffic, `bluegreen canary "
                 "abort` none; `bluegreen canary status` shows it.")


def artifact_from(inventory: Inventory, *, source: str | None, release: str | None,
                  sha256: str | None = None) -> Artifact:
    if source is None and inventory.release.url is not None:
        return _fetched_artifact(inventory, inventory.release.url, release=release,
                                 sha256=sha256)
    if sha256 is not None:
        raise UsageError("--sha256 names the checksum of a release the hosts fetch from "
                         "release.url; a release from --source is checksummed here.",
                         where="--sha256")
    chosen = source or inventory.release.source
    if chosen is None:
        raise UsageError("no release source given.", where="--source",
                         hint="Pass --source DIR|FILE.tar.gz or set release.source in the "
                              "inventory.")
    path = Path(chosen).expanduser()
    if not path.is_absolute() and source is None:
        path = inventory.path.parent / path  # inventory paths are relative to the inventory
    if not path.exists():
        raise UsageError(f"release source {path} does not exist.",
                         where="--source" if source else "release.source")
    return package(path, release=validate_release_id(release) if release is not None else None)


def _fetched_artifact(inventory: Inventory, url: str, *, release: str | None,
                      sha256: str | None) -> Artifact:
    """A release each host fetches from `release.url` itself (not through this machine's
    uplink), checked against the checksum the build reported."""
    if release is None or sha256 is None:
        raise UsageError("a release fetched from release.url needs its id and checksum.",
                         where="--release" if release is None else "--sha256",
                         hint="Pass --release ID --sha256 HEX (the sha256 of the .tar.gz, as "
                              "your build computed it), or --source to upload one from here.")
    if not re.fullmatch(r"[0-9a-f]{64}", sha256.lower()):
        raise UsageError(f"{sha256!r} is not a sha256 checksum (64 hex digits).",
                         where="--sha256")
    release = validate_release_id(release)
    rendered = render_text(url, {"release": release, "service": inventory.service},
                           where="release.url")
    return Artifact(release, None, sha256.lower(), url=rendered)


def require_app(inventory: Inventory) -> Any:
    if inventory.app is None:
        raise InventoryError("deploy needs an `app:` section (root, start, stop).",
                             where=f"{inventory.path}: app", hint="See inventories/example.yml.")
    return inventory.app


def summary_of(state: State, plan: FlipPlan | None, *, release: str | None) -> Moved:
    return Moved.of(state, previous=name_of(plan.previous) if plan else None, release=release)


def dry_run_of(lines: list[str]) -> DryRun:
    return DryRun(plan=lines)


def name_of(colour: Colour | None) -> str | None:
    return colour.value if colour else None
