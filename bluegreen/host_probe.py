"""Health checks run on the app host itself (`health.via: host`): one command probes the
instance until it passes (`successes` in a row) or the attempts are spent, and prints a record
per probe. The whole wait is one round trip, where a check through a forwarded port costs one
per probe (and a channel, a local listener and an HTTP client on this side).

A probe is one HTTP/1.0 request sent by bash itself (its /dev/tcp), in a subshell the probe
waits for no longer than `health.timeout`: no process is started for it, where curl costs the
host ~7 ms of CPU a probe. A host without bash runs curl; a host with neither says so, and its
checks go through a forwarded port instead."""

from __future__ import annotations

import secrets

from bluegreen.health import HealthOutcome, Probe, judged, needed_successes
from bluegreen.inventory import HealthSettings
from bluegreen.shell import Command
from bluegreen.transport.base import Transport

NO_PROBE_TOOL = "bluegreen: no curl or bash"
# ends each probe's record: random, so no body can fake one
_MARK = f"bluegreen-probe-{secrets.token_hex(6)}"
_LONGEST_BODY = 200  # characters of a body kept for the messages

# Each `fetch` sets $out to what `curl -w '\n%{http_code} %{time_total}'` prints: the body (or
# the error), then a line of the status (000: no answer) and the seconds it took. $1 URL,
# $2 seconds per request.
#
# bash's: the request's subshell connects, sends and reads to the end (the request asks the
# server to close); the probe reads what the subshell prints for at most $2 seconds, then stops
# it — a connect that hangs (a full accept queue) is bounded too. Every step is a builtin. The
# script takes bash's network device ($tcp, /dev/tcp) as its first argument. A bash built
# without network redirections opens /dev/tcp/… as a file, which is not there (the subshell
# says so in English, whatever the host's locale): curl's fetch then makes the requests, or
# the host, with no curl either, says it has neither.
_BASH_FETCH = r"""tcp=$1; shift
fetch() {
  local rest=${1#http://} started=${EPOCHREALTIME//[!0-9]/} answer= status=000 body head
  local authority=${rest%%/*} path=/
  [[ $rest == */* ]] && path=/${rest#*/}
  local host=${authority%:*} port=${authority##*:}
  host=${host#[}; host=${host%]}
  exec 4< <(LC_ALL=C; { exec 3<>"$tcp/$host/$port"; } 2>&1 || exit 0
            printf 'GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: bluegreen\r\n%s' "$path" \
              "$authority" $'Connection: close\r\n\r\n' >&3
            IFS= read -r -d '' answer <&3; printf '%s' "$answer")
  IFS= read -r -d '' -t "$2" answer <&4
  if [ $? -gt 128 ]; then
    kill "$!" 2>/dev/null; body="timed out: no answer within $2 s"
  elif [[ $answer =~ ^HTTP/[0-9.]+\ ([0-9][0-9][0-9]) ]]; then
    status=${BASH_REMATCH[1]} head=${answer%%$'\r\n\r\n'*}
    if [ "$head" != "$answer" ]; then body=${answer#*$'\r\n\r\n'}
    else head=${answer%%$'\n\n'*}; body=${answer#"$head"}; body=${body#$'\n\n'}; fi
  elif [ -n "$answer" ]; then
    body=${answer%$'\n'}; body=${body##*$'\n'}; body=${body##*: }
    if [ "$body" = "No such file or directory" ]; then
      exec 4<&-
      command -v curl >/dev/null 2>&1 || { echo "bluegreen: no curl or bash"; exit 2; }
      fetch() { curl_fetch "$@"; }
      curl_fetch "$1" "$2"; return
    fi
    body="connect to $authority: $body"
  else body="the connection closed without an answer"
  fi
  exec 4<&-
  local took=$(( ${EPOCHREALTIME//[!0-9]/} - started ))
  printf -v out '%s\n%s %d.%06d' "$body" "$status" $((took / 1000000)) $((took % 1000000))
}
"""
_CURL_FETCH = r"""curl_fetch() {
  out=$(curl -gsS --noproxy '*' -m "$2" -w '\n%{http_code} %{time_total}' -- "$1" 2>&1)
}
"""
# $1 URL, $2 seconds per request, $3 expected status, $4 text the body must hold ("" for any),
# $5 attempts, $6 successes in a row, $7 seconds between attempts, $8 the mark, $9 the most of a
# body to print. A record per probe: the body (or the error), then a line of the mark, whether
# it passed (1/0), the status and the seconds it took. A short body is printed as it is,
# without a process to trim it.
_PROBES = r"""n=0 streak=0
while [ "$n" -lt "$5" ]; do
  n=$((n + 1))
  fetch "$1" "$2"
  figures=${out##*"
"}
  body=${out%"
"*}
  ok=0
  if [ "${figures%% *}" = "$3" ]; then case $body in *"$4"*) ok=1;; esac; fi
  [ "${#body}" -le "$9" ] || body=$(printf '%s' "$body" | head -c "$9")
  printf '%s\n%s %s %s\n' "$body" "$8" "$ok" "$figures"
  if [ "$ok" = 1 ]; then streak=$((streak + 1)); else streak=0; fi
  [ "$streak" -ge "$6" ] && exit 0
  [ "$n" -lt "$5" ] && sleep "$7"
done
exit 1
"""
# $1 bash's fetch, $2 curl's, $3 the probes, $4 bash's network device, then the probes'. The
# probes run in this sh when curl makes the requests, in bash when bash does.
PROBE_SCRIPT = r"""probes=$3
if command -v bash >/dev/null 2>&1; then
  fetch=$1$2; shift 3; exec bash -c "$fetch$probes" bluegreen "$@"
fi
command -v curl >/dev/null 2>&1 || { echo "bluegreen: no curl or bash"; exit 2; }
eval "$2"; fetch() { curl_fetch "$@"; }; shift 4; eval "$probes"
"""
NET_DEVICE = "/dev/tcp"  # where bash opens a TCP connection; a test plays a bash without it


def probe_command(url: str, spec: HealthSettings, *, attempts: int, successes: int,
                  expect_body: str | None) -> Command:
    return Command.script(PROBE_SCRIPT, _BASH_FETCH, _CURL_FETCH, _PROBES, NET_DEVICE, url,
                          f"{spec.timeout:g}", str(spec.expect_status), expect_body or "",
                          str(attempts), str(successes), f"{spec.interval:g}", _MARK,
                          str(_LONGEST_BODY))


def read_outcome(output: str, spec: HealthSettings, *, successes: int,
                 expect_body: str | None, target: str) -> HealthOutcome | None:
    """The probes the script reported, healthy when the last `successes` passed; None when the
    host has neither bash nor curl. `target` names the instance ("10.0.0.5:9501 on app1")."""
    if output.startswith(NO_PROBE_TOOL):
        return None
    outcome = HealthOutcome(healthy=False, attempts=0)
    body: list[str] = []
    for line in output.splitlines():
        if not line.startswith(_MARK + " "):
            body.append(line)
            continue
        passed, status, seconds = ([*line.split(" ")[1:], "", "", ""])[:3]
        text, body = " ".join(" ".join(body).split()), []
        if passed not in ("0", "1") or not status.isdigit():
            continue
        outcome.attempts += 1
        if status == "000":  # no HTTP answer: the body is the error
            outcome.probes.append(Probe(False, _no_answer(text, target), answered=False))
            continue
        outcome.probes.append(judged(int(status), _milliseconds(seconds), text, spec,
                                     expect_body=expect_body, body_matches=passed == "1"))
    last = outcome.probes[-successes:]
    outcome.healthy = len(last) == successes and all(probe.ok for probe in last)
    return outcome


def wait_healthy(transport: Transport, url: str, spec: HealthSettings, *,
                 retries: int | None = None, successes: int | None = None,
                 expect_body: str | None = None, target: str = "the instance"
                 ) -> HealthOutcome | None:
    """HealthChecker.wait_healthy, run on the host; None when it has neither bash nor curl."""
    attempts = retries if retries is not None else spec.retries
    needed = needed_successes(spec, attempts, successes)
    command = probe_command(url, spec, attempts=attempts, successes=needed,
                            expect_body=expect_body)
    result = transport.run(command, timeout=time_limit(spec, attempts))
    outcome = read_outcome(result.stdout, spec, successes=needed, expect_body=expect_body,
                           target=target)
    if outcome is not None and not outcome.probes:  # the command itself failed: say how
        outcome.probes.append(Probe(False, result.tail() or f"exit status {result.exit_status}",
                                    answered=False))
    return outcome


def time_limit(spec: HealthSettings, attempts: int) -> float:
    """How long a host may take to run `attempts` probes, with room for the command itself."""
    return attempts * (spec.timeout + spec.interval) + 10


_COULD_NOT_CONNECT = "(7) "  # curl's exit status 7
_REFUSED = ": Connection refused"  # bash's


def _no_answer(error: str, target: str) -> str:
    error = error.strip().removeprefix("curl: ")
    if error.startswith(_COULD_NOT_CONNECT) or error.endswith(_REFUSED):
        return f"connection refused: nothing accepts connections on {target}"
    return error or "no answer"


def _milliseconds(seconds: str) -> float:
    try:
        return float(seconds) * 1000
    except ValueError:
        return 0.0
