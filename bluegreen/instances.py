"""Checking instances and the public URL: health checks of a colour's instances (through the SSH
connection by default), and verification of a flip through the balancer's public URL(s)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import NamedTuple

from bluegreen import cancel, host_probe
from bluegreen.app import AppStack, InstanceSpec
from bluegreen.balancer.base import sticky_route_variable
from bluegreen.connections import Connections
from bluegreen.errors import HealthCheckFailed, VerifyFailed
from bluegreen.fanout import fan_out
from bluegreen.health import HealthChecker, HealthOutcome, needed_successes
from bluegreen.inventory import CanarySticky, HealthSettings, Inventory
from bluegreen.output import Reporter
from bluegreen.render import render_text
from bluegreen.shell import Command

QUICK_RETRIES = 3


def quick_retries(inventory: Inventory) -> int:
    """Attempts of the quick check before a flip that starts nothing (switch, rollback)."""
    return min(QUICK_RETRIES, inventory.health.retries)


# app hosts that answered `health.via: host` with "no curl or bash", so are checked through a
# tunnel
_WITHOUT_CURL: set[str] = set()


def check_instances(inventory: Inventory, connections: Connections, specs: list[InstanceSpec],
                    *, reporter: Reporter, release_of: dict[str, str | None],
                    quick: bool = False,
                    probed: Mapping[str, HealthOutcome] | None = None) -> None:
    """Every instance must pass (N consecutive successes); failures of all instances are
    reported together, each with its last responses and the tail of its log. `probed`: the
    outcomes of checks already run on some hosts (with the facts of an earlier step), by host."""
    health = inventory.health
    stack = AppStack(inventory, inventory.app) if inventory.app else None
    checker = HealthChecker(sleep=cancel.sleep)

    def check(spec: InstanceSpec) -> None:
        transport = connections[spec.host.name]
        outcome = (probed or {}).get(spec.host.name) or probe_instance(
            inventory, connections, spec, checker=checker,
            retries=quick_retries(inventory) if quick else None,
            release=release_of.get(spec.host.name))
        if outcome.healthy:
            reporter.step(spec.host.name, f"{spec.colour}:{spec.port} healthy "
                          f"({outcome.probes[-1].detail})", ok=True)
            return
        reporter.step(spec.host.name, f"{spec.colour}:{spec.port} unhealthy", ok=False)
        log = stack.log_tail(transport, spec, release_of.get(spec.host.name)) if stack else ""
        detail = "; ".join(outcome.last())
        message = (f"{spec.colour} on port {spec.port} failed its health check "
                   f"({health.path}, {outcome.attempts} attempt(s)); last: {detail}.")
        if log:
            message += "\n    log tail:\n" + "\n".join(f"      {line}" for line in
                                                      log.splitlines()[-15:])
        raise HealthCheckFailed(message, where=spec.host.name)

    try:
        fan_out(specs, check, step="health check", name=lambda s: s.host.name,
                parallelism=inventory.ssh.parallelism)
    finally:
        checker.close()


def probe_instance(inventory: Inventory, connections: Connections, spec: InstanceSpec, *,
                   checker: HealthChecker, retries: int | None = None,
                   release: str | None = None) -> HealthOutcome:
    """Health-check one instance; `health.expect_body` may name `{{ release }}` (the release it
    must run), `{{ colour }}` and `{{ service }}`."""
    health = inventory.health
    body = _expected_body(inventory, spec, release)
    if health.via == "direct":
        return checker.wait_healthy(_url(spec, health), health, retries=retries,
                                    expect_body=body)
    if health.via == "host" and spec.host.name not in _WITHOUT_CURL:
        outcome = host_probe.wait_healthy(connections[spec.host.name], _url(spec, health),
                                          health, retries=retries, expect_body=body,
                                          target=_target(spec))
        if outcome is not None:
            return outcome
        _WITHOUT_CURL.add(spec.host.name)  # asked once: its checks go through a tunnel
    with connections[spec.host.name].tunnel(spec.port, address=spec.address) as tunnel:
        outcome = checker.wait_healthy(f"http://{tunnel.host}:{tunnel.port}{health.path}",
                                       health, retries=retries, expect_body=body)
        failure = tunnel.failure
    if failure:  # say "connection refused", not the client's "connection reset"
        outcome.probes = [p if p.answered else replace(p, detail=failure)
                          for p in outcome.probes]
    return outcome


class HostCheck(NamedTuple):
    command: Command
    seconds: float  # what running it and `once` may take, besides the command they follow
    # one probe whose pass is the whole check's (None when a pass takes more than one): a host
    # whose listening check would only repeat what that pass shows runs it first
    once: Command | None


def host_check(inventory: Inventory, spec: InstanceSpec, *, release: str | None,
               retries: int) -> HostCheck | None:
    """The command that health-checks `spec` on its host (`health.via: host`), for a caller
    that runs it in the same round trip as the other facts it needs; None when this host's
    checks are not run there."""
    health = inventory.health
    if health.via != "host" or spec.host.name in _WITHOUT_CURL:
        return None
    url, body = _url(spec, health), _expected_body(inventory, spec, release)
    command = host_probe.probe_command(url, health, attempts=retries,
                                       successes=needed_successes(health, retries),
                                       expect_body=body)
    if retries == 1:
        return HostCheck(command, host_probe.time_limit(health, 1), command)
    once = (host_probe.probe_command(url, health, attempts=1, successes=1, expect_body=body)
            if needed_successes(health, retries) == 1 else None)
    return HostCheck(command, host_probe.time_limit(health, retries)
                     + (host_probe.time_limit(health, 1) if once else 0), once)


def host_check_outcome(inventory: Inventory, spec: InstanceSpec, output: str, *,
                       release: str | None, retries: int) -> HealthOutcome | None:
    """What the output of `host_check`'s command (for `release` and `retries`) says; None when
    the host has neither curl nor bash (its checks then go through a tunnel) or reported no
    probe."""
    outcome = host_probe.read_outcome(output, inventory.health,
                                      successes=needed_successes(inventory.health, retries),
                                      expect_body=_expected_body(inventory, spec, release),
                                      target=_target(spec))
    if outcome is None:
        _WITHOUT_CURL.add(spec.host.name)
    return outcome if outcome is not None and outcome.probes else None


def _expected_body(inventory: Inventory, spec: InstanceSpec, release: str | None
                   ) -> str | None:
    expect = inventory.health.expect_body
    if not expect:
        return None
    return render_text(expect, {"release": release or "", "colour": spec.colour.value,
                                "service": inventory.service}, where="health.expect_body")


def _target(spec: InstanceSpec) -> str:
    return f"{_host(spec.address)}:{spec.port} on {spec.host.name}"


def _url(spec: InstanceSpec, health: HealthSettings) -> str:
    return f"http://{_host(spec.address)}:{spec.port}{health.path}"


# a tester's requests after the first that must all reach the canary: at a 10 % first step, a
# sticky rule that does not work passes by chance once in 10^10
_TESTER_PROBES = 10


def verify(inventory: Inventory, *, release: str | None, colour: str, reporter: Reporter,
           tester: CanarySticky | None = None) -> None:
    """Fetch every public URL until it shows the new release; VerifyFailed (exit 7) otherwise.
    With `tester`, as a tester marked by canary.sticky: the canary's release, whatever its
    weight."""
    settings = inventory.verify
    if not settings.urls:
        return
    headers, as_who = None, ""
    if tester is not None:
        headers = ({tester.header: tester.value} if tester.header
                   else {"Cookie": f"{tester.cookie}={tester.value}"})
        marker = f"header {tester.header}" if tester.header else f"cookie {tester.cookie}"
        as_who = f" as a tester ({marker}: {tester.value})"
    reporter.phase(f"verify through {len(settings.urls)} public URL(s){as_who}")
    values = {"release": release or "", "colour": colour, "service": inventory.service}
    body = render_text(settings.expect_body, values, where="verify.expect_body") \
        if settings.expect_body else None
    header = None
    if settings.expect_header:
        name, _, value = render_text(settings.expect_header, values,
                                     where="verify.expect_header").partition(":")
        header = (name.strip(), value.strip())
    spec = HealthSettings(path="/", expect_status=200, timeout=settings.timeout, interval=0.2,
                          retries=settings.attempts, successes=1)
    checker = HealthChecker(sleep=cancel.sleep,
                            verify_tls=any(u.startswith("https:") for u in settings.urls))
    try:
        for url in settings.urls:
            outcome = (checker.wait_healthy(url, spec, expect_body=body, expect_header=header)
                       if tester is None else
                       checker.wait_then_hold(url, spec, hold=_TESTER_PROBES, expect_body=body,
                                              expect_header=header, headers=headers))
            if not outcome.healthy:
                reporter.step(url, "does not serve the new release" + as_who, ok=False)
                raise VerifyFailed(
                    f"{url} did not show release {release} of {colour}{as_who} after "
                    f"{outcome.attempts} attempt(s); last: {'; '.join(outcome.last())}.",
                    where="verify",
                    hint=("Traffic was flipped back to the previous colour. Check verify.urls "
                          "and verify.expect_body/expect_header against what the app serves."
                          if tester is None else
                          "The canary's step was undone. With canary.sticky, nginx's "
                          "proxy_pass must name the upstream through "
                          f"${sticky_route_variable(inventory.upstream_name)}; a balancer.template "
                          "of your own must render the `sticky` part as the shipped one does."),
                )
            reporter.step(url, f"serves {colour}{as_who} ({outcome.probes[-1].detail})",
                          ok=True)
    finally:
        checker.close()


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
