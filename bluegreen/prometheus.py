"""A canary's metrics from a Prometheus server: each query of `canary.prometheus`, rendered for
the canary, is sent to the HTTP API's instant-query endpoint from the machine running
bluegreen, and the one number it gives is judged against the query's bounds. Reading an answer
is pure (`read_answer`); the client is injected so unit tests use httpx.MockTransport."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from bluegreen.inventory import Inventory, PrometheusQuery, PrometheusSettings
from bluegreen.model import Colour
from bluegreen.render import render_text
from bluegreen.state import Canary

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class Reading:
    """What one answer gave: a number, or why not. `lasting`: waiting will not help (the query
    itself is wrong, or gives more than one number)."""

    value: float | None
    problem: str | None = None
    lasting: bool = False


@dataclass(frozen=True)
class MetricResult:
    name: str
    value: float | None  # None: no number (see `problem`)
    breach: str | None = None  # "error ratio 0.05 > 0.01"
    problem: str | None = None  # why there is no number
    lasting: bool = False

    def describe(self) -> str:
        if self.breach:
            return self.breach
        if self.value is None:
            return f"{self.name}: {self.problem}"
        return f"{self.name} {self.value:.4g}"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "value": self.value, "breach": self.breach,
                "problem": self.problem}


def read_answer(status_code: int, body: Any) -> Reading:
    """One number from an instant query's answer (`body`: its decoded JSON, or None when it was
    not JSON): a scalar, or a vector of exactly one sample. An empty vector or NaN (a ratio of
    no requests) is "no data yet"."""
    if not isinstance(body, dict):
        return Reading(None, f"HTTP {status_code}, not a Prometheus API answer",
                       lasting=status_code in (401, 403, 404))
    if body.get("status") != "success":
        kind, error = body.get("errorType", "error"), body.get("error", "no reason given")
        return Reading(None, f"Prometheus refused the query ({kind}: {error})",
                       lasting=kind == "bad_data")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    sample: Any
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        sample = result
    elif kind == "vector" and isinstance(result, list):
        if not result:
            return Reading(None, "no data yet (the query matched no series)")
        if len(result) > 1:
            return Reading(None, f"the query gave {len(result)} series, not one number",
                           lasting=True)
        sample = result[0].get("value") if isinstance(result[0], dict) else None
    else:
        return Reading(None, f"the query gave a {kind}, not one number", lasting=True)
    try:
        value = float(sample[1])
    except (TypeError, ValueError, IndexError):
        return Reading(None, f"unreadable sample {sample!r}", lasting=True)
    if math.isnan(value):
        return Reading(None, "no data yet (NaN: e.g. no requests to divide by)")
    return Reading(value)


def judge_reading(query: PrometheusQuery, reading: Reading) -> MetricResult:
    value = reading.value
    breach = None
    if value is not None and query.max is not None and value > query.max:
        breach = f"{query.name} {value:.4g} > {query.max:g}"
    elif value is not None and query.min is not None and value < query.min:
        breach = f"{query.name} {value:.4g} < {query.min:g}"
    return MetricResult(query.name, value, breach, reading.problem, reading.lasting)


def rendered_queries(settings: PrometheusSettings, values: dict[str, object]
                     ) -> list[tuple[PrometheusQuery, str]]:
    """Each query with its text for `values` (canary, stable, release, weight, service,
    window); a template error exits 2, naming the query."""
    return [(query, render_text(query.query, values,
                                where=f"canary.prometheus.queries[{index}].query"))
            for index, query in enumerate(settings.queries)]


class PrometheusClient:
    def __init__(self, settings: PrometheusSettings, client: httpx.Client | None = None):
        if client is None:
            import httpx

            client = httpx.Client(trust_env=False, follow_redirects=False,
                                  timeout=settings.timeout)
        self.settings = settings
        self.client = client

    def measure(self, values: dict[str, object]) -> list[MetricResult]:
        """Every query, judged; a query that could not be asked has no value and says why."""
        return [judge_reading(query, self.ask(text))
                for query, text in rendered_queries(self.settings, values)]

    def ask(self, query: str) -> Reading:
        import httpx

        url = self.settings.url.rstrip("/") + "/api/v1/query"
        try:
            response = self.client.post(url, data={"query": query})
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            shown = _without_credentials(self.settings.url)
            detail = str(error) or "no response"
            userinfo = self.settings.url.partition("://")[2].rpartition("@")[0]
            if userinfo:  # an error naming the URL, or a part of it, never shows them
                detail = detail.replace(self.settings.url, shown)
                for secret in {userinfo, *userinfo.split(":")} - {""}:
                    detail = detail.replace(secret, "***")
            return Reading(None, f"{shown} did not answer ({type(error).__name__}: {detail})")
        try:
            body = response.json()
        except ValueError:
            body = None
        return read_answer(response.status_code, body)

    def close(self) -> None:
        self.client.close()


def _without_credentials(url: str) -> str:
    """The URL as it may be shown: a user name and password in it are left out."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def measure(settings: PrometheusSettings, values: dict[str, object]) -> list[MetricResult]:
    client = PrometheusClient(settings)
    try:
        return client.measure(values)
    finally:
        client.close()


def canary_metrics(inventory: Inventory, canary: Canary, *, stable: Colour
                   ) -> tuple[MetricResult, ...]:
    """The Prometheus queries' results for `canary` now (none without `canary.prometheus`)."""
    if inventory.canary.prometheus is None:
        return ()
    values = metric_values(service=inventory.service, canary=canary.colour,
                           stable=stable.value, release=canary.release, weight=canary.weight,
                           # a canary recorded before judged_since existed: since it began
                           judged_since=canary.judged_since or canary.since,
                           at=datetime.now(timezone.utc))
    return tuple(measure(inventory.canary.prometheus, values))


def metric_values(*, service: str, canary: str, stable: str, release: str | None, weight: int,
                  judged_since: str | None, at: datetime) -> dict[str, object]:
    """What a query's template may use. `window`: the time since the traffic being judged
    began, as a PromQL duration ("93s"; at least 1s), for `increase(…[{{ window }}])`. Rounded
    up: a window shorter than that would leave out the first samples of the judged traffic."""
    began = datetime.fromisoformat(judged_since) if judged_since else at
    seconds = max(1, math.ceil((at - began).total_seconds()))
    return {"service": service, "canary": canary, "stable": stable, "release": release,
            "weight": weight, "window": f"{seconds}s"}
