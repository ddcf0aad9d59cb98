"""Health checks run on the app host itself (`health.via: host`): one command runs curl until the
instance passes (`successes` in a row) or the attempts are spent, and prints one line per probe.
The whole wait is one round trip, where a check through a forwarded port costs one per probe
(and a channel, a local listener and an HTTP client on this side). A host without curl says so,
and its checks go through a forwarded port instead."""

from __future__ import annotations

from bluegreen.health import HealthOutcome, Probe, judged
from bluegreen.inventory import HealthSettings
from bluegreen.shell import Command
from bluegreen.transport.base import Transport

NO_CURL = "bluegreen: no curl"

# $1 URL, $2 seconds per request, $3 expected status, $4 text the body must hold ("" for any),
# $5 attempts, $6 successes in a row, $7 seconds between attempts. A line per probe: whether it
# passed (1/0), the status (000: no answer), the seconds it took, the body (or curl's error)
# on one line. curl prints its error before the -w line, so the last line is always the figures.
PROBE_SCRIPT = r"""command -v curl >/dev/null 2>&1 || { echo "bluegreen: no curl"; exit 0; }
n=0 streak=0
while [ "$n" -lt "$5" ]; do
  n=$((n + 1))
  out=$(curl -gsS --noproxy '*' -m "$2" -w '\n%{http_code} %{time_total}' -- "$1" 2>&1)
  figures=${out##*"
"}
  body=${out%"
"*}
  ok=0
  if [ "${figures%% *}" = "$3" ]; then case $body in *"$4"*) ok=1;; esac; fi
  printf '%s %s %s\n' "$ok" "$figures" "$(printf '%s' "$body" | tr -s '\r\n\t' '   ' | cut -c1-200)"
  if [ "$ok" = 1 ]; then streak=$((streak + 1)); else streak=0; fi
  [ "$streak" -ge "$6" ] && exit 0
  [ "$n" -lt "$5" ] && sleep "$7"
done
exit 1
"""


def probe_command(url: str, spec: HealthSettings, *, attempts: int, successes: int,
                  expect_body: str | None) -> Command:
    return Command.script(PROBE_SCRIPT, url, f"{spec.timeout:g}", str(spec.expect_status),
                          expect_body or "", str(attempts), str(successes),
                          f"{spec.interval:g}")


def parse_probes(output: str, spec: HealthSettings, *, expect_body: str | None
                 ) -> HealthOutcome | None:
    """The probes the script reported; None when the host has no curl."""
    if output.startswith(NO_CURL):
        return None
    outcome = HealthOutcome(healthy=False, attempts=0)
    for line in output.splitlines():
        passed, status, seconds, body = ([*line.split(" ", 3), "", "", ""])[:4]
        if not status.isdigit():
            continue
        outcome.attempts += 1
        if status == "000":  # no HTTP answer: the body is curl's error
            outcome.probes.append(Probe(False, body.removeprefix("curl: ") or "no answer",
                                        answered=False))
            continue
        probe = judged(int(status), _milliseconds(seconds), body, spec, expect_body=expect_body,
                       body_matches=passed == "1")
        outcome.probes.append(probe)
    return outcome


def wait_healthy(transport: Transport, url: str, spec: HealthSettings, *,
                 retries: int | None = None, successes: int | None = None,
                 expect_body: str | None = None) -> HealthOutcome | None:
    """HealthChecker.wait_healthy, run on the host; None when the host has no curl."""
    attempts = retries if retries is not None else spec.retries
    needed = successes if successes is not None else spec.successes
    command = probe_command(url, spec, attempts=attempts, successes=needed,
                            expect_body=expect_body)
    result = transport.run(command, timeout=attempts * (spec.timeout + spec.interval) + 10)
    outcome = parse_probes(result.stdout, spec, expect_body=expect_body)
    if outcome is None:
        return None
    streak = 0
    for probe in outcome.probes:
        streak = streak + 1 if probe.ok else 0
    outcome.healthy = result.ok and streak >= needed
    if not outcome.probes:  # the command itself failed: say how
        outcome.probes.append(Probe(False, result.tail() or f"exit status {result.exit_status}",
                                    answered=False))
    return outcome


def _milliseconds(seconds: str) -> float:
    try:
        return float(seconds) * 1000
    except ValueError:
        return 0.0
