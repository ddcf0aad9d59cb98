"""Judging a canary (pure): from the balancer's own counters, the canary's servers against the
stable colour's, against the inventory's `canary:` thresholds — and from the Prometheus queries'
results, when `canary.prometheus` asks some. Requests and 5xx are counted
since the canary's step began (a baseline read right after its flip; a balancer reloaded since,
or a log rotated since, counts from then). Response times are each server's mean since the step
began where the balancer sums them (nginx's access log), else HAProxy's `rtime`, a rolling mean
over the server's last 1024 requests; averaged per colour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bluegreen.balancer.base import BalancerTraffic
from bluegreen.inventory import CanarySettings
from bluegreen.prometheus import MetricResult

# balancer host → {"epoch": who counted, "servers": {server name: [requests, 5xx(, total
# ms)]}} when the step began (plain JSON: it is kept in the state)
Baseline = dict[str, dict[str, Any]]


def baseline_of(counts: dict[str, BalancerTraffic]) -> Baseline:
    return {host: {"epoch": traffic.epoch,
                   "servers": {name: [t.requests, t.errors]
                               + ([t.total_ms] if t.total_ms is not None else [])
                               for name, t in traffic.servers.items()}}
            for host, traffic in counts.items()}


@dataclass(frozen=True)
class Verdict:
    # enough requests to judge (`canary.min_requests`), a baseline to judge from, a number from
    # every Prometheus query
    judged: bool
    requests: int  # answered by the canary since its step began
    errors: int  # of those, answered 5xx
    error_rate: float  # per cent
    latency_ratio: float | None  # the canary's mean response time / the stable colour's
    breach: str | None  # which threshold, with the value: "error rate 5.0% > 1%"
    unbased: tuple[str, ...] = ()  # balancers whose counters were not read when the step began
    metrics: tuple[MetricResult, ...] = ()  # the Prometheus queries' results
    counted: bool = True  # judged from the balancers' counters (else from metrics alone)

    @property
    def passed(self) -> bool:
        return self.judged and self.breach is None

    @property
    def lasting(self) -> str | None:
        """Why waiting for more traffic will not make it judgeable, if so."""
        if self.unbased:
            return (f"the counters of {', '.join(self.unbased)} were not read when the step "
                    "began")
        return next((m.describe() for m in self.metrics if m.lasting), None)

    def describe(self) -> str:
        parts = []
        if self.counted:
            parts.append(f"{self.errors} of {self.requests} request(s) answered 5xx "
                         f"({self.error_rate:.1f}%)"
                         + (f", response time {self.latency_ratio:.2f}× the stable colour's"
                            if self.latency_ratio is not None else ""))
        parts += [m.describe() for m in self.metrics if not m.breach or m.breach != self.breach]
        measured = "; ".join(parts)
        if self.breach:  # a metric's breach counts even where the counters cannot judge
            return f"{self.breach}: {measured}" if measured else self.breach
        if self.unbased:
            return f"not judged: {self.lasting}"
        return measured if self.judged else f"not judged yet: {measured}"

    def to_dict(self) -> dict[str, object]:
        return {"judged": self.judged, "passed": self.passed, "requests": self.requests,
                "errors": self.errors, "error_rate": round(self.error_rate, 2),
                "latency_ratio": (round(self.latency_ratio, 2)
                                  if self.latency_ratio is not None else None),
                "breach": self.breach, "unbased": list(self.unbased),
                "metrics": [m.to_dict() for m in self.metrics]}


def judge(settings: CanarySettings, baseline: Baseline, now: dict[str, BalancerTraffic], *,
          canary: str, stable: str, metrics: tuple[MetricResult, ...] = ()) -> Verdict:
    """The canary (`canary`: its colour) since `baseline`, on every balancer that counts, and
    by the Prometheus queries' `metrics`. A breach the metrics measured counts even before the
    counters have enough requests to judge."""
    metric_breach = next((m.breach for m in metrics if m.breach), None)
    metrics_judged = all(m.value is not None for m in metrics)
    if not settings.counted:
        return Verdict(metrics_judged, 0, 0, 0.0, None, metric_breach, metrics=metrics,
                       counted=False)
    requests = errors = 0
    latency: dict[str, list[float]] = {canary: [], stable: []}
    unbased = tuple(sorted(host for host in now if host not in baseline))
    for host, traffic in now.items():
        before = baseline.get(host, {})
        start_of: dict[str, list[int]] = before.get("servers", {})
        # its counters restarted from zero: a reload (a new epoch), or a log truncated in
        # place, which some server's count going backwards shows
        if before.get("epoch") != traffic.epoch or any(
                counted.requests < start_of.get(name, [0])[0]
                for name, counted in traffic.servers.items()):
            start_of = {}
        for name, counted in traffic.servers.items():
            colour = name.split("-", 1)[0]
            if colour not in latency:
                continue
            start = start_of.get(name, [0, 0])
            answered = counted.requests - start[0]
            if answered > 0:
                latency[colour].append(
                    counted.response_ms if counted.total_ms is None
                    else (counted.total_ms - (start[2] if len(start) > 2 else 0)) / answered)
            if colour == canary:
                requests += answered
                errors += counted.errors - start[1]
    rate = 100.0 * errors / requests if requests else 0.0
    ratio = None
    if latency[canary] and latency[stable]:
        stable_ms = sum(latency[stable]) / len(latency[stable])
        canary_ms = sum(latency[canary]) / len(latency[canary])
        ratio = canary_ms / max(stable_ms, 1.0)  # rtime is in whole ms: 0 means "under 1 ms"
    counters_judged = requests >= settings.min_requests and not unbased
    breach = None
    if (counters_judged and settings.max_error_rate is not None
            and rate > settings.max_error_rate):
        breach = f"error rate {rate:.1f}% > {settings.max_error_rate:g}%"
    elif (counters_judged and settings.max_latency_ratio is not None and ratio is not None
          and ratio > settings.max_latency_ratio):
        breach = (f"response time {ratio:.2f}× the stable colour's > "
                  f"{settings.max_latency_ratio:g}×")
    return Verdict(counters_judged and metrics_judged, requests, errors, rate, ratio,
                   breach or metric_breach, unbased, metrics)

