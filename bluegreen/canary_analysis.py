"""Judging a canary from the balancer's own counters (pure): the canary's servers against the
stable colour's, counted since the canary's step began (a baseline taken right after its flip),
against the inventory's `canary:` thresholds."""

from __future__ import annotations

from dataclasses import dataclass

from bluegreen.balancer.base import ServerTraffic
from bluegreen.inventory import CanarySettings

# balancer host → server name → [requests, errors] when the step began
Baseline = dict[str, dict[str, list[int]]]
Counts = dict[str, dict[str, ServerTraffic]]  # balancer host → server name → counters now


def baseline_of(counts: Counts) -> Baseline:
    return {host: {name: [t.requests, t.errors] for name, t in servers.items()}
            for host, servers in counts.items()}


@dataclass(frozen=True)
class Verdict:
    judged: bool  # enough requests to judge (`canary.min_requests`)
    requests: int  # answered by the canary since its step began
    errors: int  # of those, answered 5xx
    error_rate: float  # per cent
    latency_ratio: float | None  # the canary's mean response time / the stable colour's
    breach: str | None  # which threshold, with the value: "error rate 5.0% > 1%"

    @property
    def passed(self) -> bool:
        return self.judged and self.breach is None

    def describe(self) -> str:
        measured = (f"{self.errors} of {self.requests} request(s) answered 5xx "
                    f"({self.error_rate:.1f}%)"
                    + (f", response time {self.latency_ratio:.2f}× the stable colour's"
                       if self.latency_ratio is not None else ""))
        if self.breach:
            return f"{self.breach}: {measured}"
        return measured if self.judged else f"not judged yet: {measured}"

    def to_dict(self) -> dict[str, object]:
        return {"judged": self.judged, "passed": self.passed, "requests": self.requests,
                "errors": self.errors, "error_rate": round(self.error_rate, 2),
                "latency_ratio": (round(self.latency_ratio, 2)
                                  if self.latency_ratio is not None else None),
                "breach": self.breach}


def judge(settings: CanarySettings, baseline: Baseline, now: Counts, *, canary: str,
          stable: str) -> Verdict:
    """The canary (`canary`: its colour) since `baseline`, on every balancer that counts. A
    counter lower than its baseline was reset (a reload): it counts from zero."""
    requests = errors = 0
    latency: dict[str, list[int]] = {canary: [], stable: []}
    for host, servers in now.items():
        before = baseline.get(host, {})
        for name, traffic in servers.items():
            colour = name.split("-", 1)[0]
            if colour not in latency:
                continue
            start = before.get(name, [0, 0])
            if traffic.requests < start[0] or traffic.errors < start[1]:
                start = [0, 0]
            answered = traffic.requests - start[0]
            if answered and traffic.response_ms:
                latency[colour].append(traffic.response_ms)
            if colour == canary:
                requests += answered
                errors += traffic.errors - start[1]
    rate = 100.0 * errors / requests if requests else 0.0
    ratio = None
    if latency[canary] and latency[stable]:
        stable_ms = sum(latency[stable]) / len(latency[stable])
        canary_ms = sum(latency[canary]) / len(latency[canary])
        ratio = canary_ms / max(stable_ms, 1.0)
    judged = requests >= settings.min_requests
    breach = None
    if judged and settings.max_error_rate is not None and rate > settings.max_error_rate:
        breach = f"error rate {rate:.1f}% > {settings.max_error_rate:g}%"
    elif (judged and settings.max_latency_ratio is not None and ratio is not None
          and ratio > settings.max_latency_ratio):
        breach = f"response time {ratio:.2f}× the stable colour's > {settings.max_latency_ratio:g}×"
    return Verdict(judged, requests, errors, rate, ratio, breach)
