"""Pure plans: what an operation will do, built from the inventory and the facts read before it
(state, the live balancer files) without any I/O. `--dry-run` prints a plan; the executor runs it,
re-checking its assumptions (guards) right before each change."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace

from bluegreen.app import AppStack, InstanceSpec, instance_specs
from bluegreen.balancer import site_for
from bluegreen.balancer.base import Server, Sticky, Upstream
from bluegreen.errors import TemplateError
from bluegreen.inventory import Inventory
from bluegreen.model import Colour
from bluegreen.prometheus import rendered_queries
from bluegreen.render import render_text
from bluegreen.shell import Command
from bluegreen.state import State


@dataclass(frozen=True)
class FlipPlan:
    target: Colour
    previous: Colour | None
    generation: int
    configs: dict[str, str]  # balancer host → rendered managed file
    current: dict[str, str | None]  # balancer host → the file as it is now
    paths: dict[str, str]  # balancer host → the managed file's path
    upstream: Upstream  # what the flip sends traffic to
    previous_upstream: Upstream | None  # what a flip back restores (runtime flips)
    out: tuple[str, ...] = ()  # the target's hosts held out of traffic

    def diffs(self) -> list[str]:
        lines: list[str] = []
        for host, text in self.configs.items():
            path = self.paths[host]
            before = (self.current.get(host) or "").splitlines(keepends=True)
            after = text.splitlines(keepends=True)
            diff = difflib.unified_diff(before, after, f"{host}:{path} (live)",
                                        f"{host}:{path} (planned)")
            lines += [line.rstrip("\n") for line in diff] or [f"{host}: no change to {path}"]
        return lines


@dataclass(frozen=True)
class InstanceSteps:
    spec: InstanceSpec
    stop: Command
    start: Command


@dataclass(frozen=True)
class DeployPlan:
    release: str
    target: Colour
    live: Colour | None
    instances: tuple[InstanceSteps, ...]
    flip: FlipPlan
    max_unhealthy: int = 0  # instances that may fail their health check (kept out of traffic)
    batch_size: int = 0  # instances started at a time (deploy.batch); 0: all at once

    @property
    def batches(self) -> list[tuple[InstanceSteps, ...]]:
        size = self.batch_size or len(self.instances) or 1
        return [self.instances[start:start + size]
                for start in range(0, len(self.instances), size)]


def build_upstream(inventory: Inventory, target: Colour, generation: int,
                   out: tuple[str, ...] = (), weights: dict[str, int] | None = None,
                   other_out: tuple[str, ...] = ()) -> Upstream:
    """Traffic to `target`'s instances, except those on the hosts in `out` (weight 0) — or,
    with `weights` (a canary), to both colours in those proportions (`other_out`: the other
    colour's hosts held out)."""
    weights = weights or {target.value: 100, target.other.value: 0}
    held_out = {target: out, target.other: other_out}
    servers = tuple(
        Server(spec.host.name, spec.address, spec.port, colour,
               0 if spec.host.name in held_out[colour] else weights[colour.value])
        for colour in (target, target.other)
        for spec in instance_specs(inventory, colour)
    )
    sticky = inventory.canary.sticky
    return Upstream(inventory.service, inventory.upstream_name, target, generation, weights,
                    servers, sticky=Sticky(
                        sticky.header, sticky.cookie, sticky.value,
                        # testers reach the canary; with none, the live colour
                        target.other if weights[target.other.value] > 0 else target)
                    if sticky else None)


def build_flip_plan(inventory: Inventory, *, state: State, target: Colour,
                    current: dict[str, str | None], out: tuple[str, ...] | None = None,
                    weights: dict[str, int] | None = None, other_out: tuple[str, ...] = ()
                    ) -> FlipPlan:
    """A flip to `target`, keeping out of traffic the hosts the state holds out (or `out`);
    with `weights`, a split between the colours (`target` stays the one named live)."""
    generation = state.generation + 1
    held_out = state.colour(target).out if out is None else out
    upstream = build_upstream(inventory, target, generation, held_out, weights, other_out)
    sites = [site_for(inventory, h) for h in inventory.hosts.balancer]
    previous = (build_upstream(inventory, state.live, state.generation,
                               state.colour(state.live).out,
                               state.weights if state.canary else None,
                               state.colour(state.live.other).out if state.canary else ())
                if state.live else None)
    if upstream.sticky is not None and previous is not None:
        upstream = replace(upstream, sticky=replace(upstream.sticky,
                                                    previous=previous.tester_names))
    return FlipPlan(target=target, previous=state.live, generation=generation,
                    configs={s.host.name: s.driver.render(upstream) for s in sites},
                    current=current, paths={s.host.name: s.managed.path for s in sites},
                    upstream=upstream, previous_upstream=previous, out=held_out)


def check_templates(inventory: Inventory) -> None:
    """Render every balancer template and (with `app`) every command template for a sample
    instance, so a template error exits 2 before any network call."""
    upstream = build_upstream(inventory, Colour.BLUE, 1)
    for host in inventory.hosts.balancer:
        site_for(inventory, host).driver.render(upstream)
    values = {"release": "release", "colour": "blue", "service": inventory.service}
    for name, text in (("verify.expect_body", inventory.verify.expect_body),
                       ("verify.expect_header", inventory.verify.expect_header),
                       ("health.expect_body", inventory.health.expect_body),
                       ("release.url", inventory.release.url)):
        if text:
            render_text(text, values, where=name)
    if inventory.canary.prometheus is not None:
        rendered_queries(inventory.canary.prometheus, {
            "canary": "green", "stable": "blue", "release": "release", "weight": 1,
            "service": inventory.service, "window": "1s"})
    if inventory.app is not None:
        stack = AppStack(inventory, inventory.app)
        for spec in instance_specs(inventory, Colour.BLUE)[:1]:
            stack.start_command(spec, "release")
            stack.stop_command(spec, "release")
            stack.status_command(spec, "release")
            stack.log_command(spec, "release")
            if inventory.app.pid_file:
                stack.signal_command(spec, "release", signal="0", pid=1)
            if inventory.app.drain:
                if stack.drain_needs_pid() and not inventory.app.pid_file:
                    raise TemplateError(
                        "app.drain uses {{ pid }}, the master's pid read from app.pid_file, "
                        "but app.pid_file is not set.", where="app.drain",
                        hint="Set app.pid_file, or name the process another way.")
                stack.drain_command(spec, "release",
                                    pid=1 if inventory.app.pid_file else None)


def build_deploy_plan(inventory: Inventory, *, state: State, release: str, target: Colour,
                      current: dict[str, str | None]) -> DeployPlan:
    assert inventory.app is not None
    stack = AppStack(inventory, inventory.app)
    previous_release = state.colour(target).release
    instances = tuple(
        InstanceSteps(spec, stack.stop_command(spec, previous_release),
                      stack.start_command(spec, release))
        for spec in instance_specs(inventory, target)
    )
    return DeployPlan(release=release, target=target, live=state.live, instances=instances,
                      flip=build_flip_plan(inventory, state=state, target=target,
                                           current=current, out=()),
                      max_unhealthy=min(inventory.deploy.allowed_unhealthy(len(instances)),
                                        len(instances) - 1),
                      batch_size=inventory.deploy.batch_size(len(instances)))
