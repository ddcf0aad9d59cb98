"""A canary's Prometheus queries: answers read from the HTTP API (real answers of Prometheus
2.42 as fixtures), bounds judged, the client against httpx.MockTransport, and the verdict."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import yaml

from bluegreen.balancer.base import BalancerTraffic, ServerTraffic
from bluegreen.canary_analysis import baseline_of, judge
from bluegreen.errors import InventoryError, TemplateError
from bluegreen.inventory import (
    CanarySettings,
    Inventory,
    PrometheusQuery,
    PrometheusSettings,
    validate_inventory,
)
from bluegreen.prometheus import (
    MetricResult,
    PrometheusClient,
    judge_reading,
    metric_values,
    read_answer,
)

ANSWERS: list[tuple[str, int, str, float | None, str | None, bool]] = [
    ("vector of one sample", 200,
     '{"status":"success","data":{"resultType":"vector","result":[{"metric":{},'
     '"value":[1795970606.449,"0.05"]}]}}', 0.05, None, False),
    ("scalar", 200,
     '{"status":"success","data":{"resultType":"scalar","result":[1795970606.466,"0.25"]}}',
     0.25, None, False),
    ("empty vector", 200, '{"status":"success","data":{"resultType":"vector","result":[]}}',
     None, "no data yet", False),
    ("NaN", 200,
     '{"status":"success","data":{"resultType":"scalar","result":[1795970606.521,"NaN"]}}',
     None, "NaN", False),
    ("many series", 200,
     '{"status":"success","data":{"resultType":"vector","result":[{"metric":{"code":"200"},'
     '"value":[1795970610.768,"7"]},{"metric":{"code":"400"},"value":[1795970610.768,"2"]}]}}',
     None, "2 series", True),
    ("matrix", 200,
     '{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"self"},'
     '"values":[[1795970608.337,"1"],[1795970609.337,"1"]]}]}}', None, "matrix", True),
    ("parse error", 400,
     '{"status":"error","errorType":"bad_data","error":"invalid parameter \\"query\\": 1:12: '
     'parse error: missing unit character in duration"}', None, "bad_data", True),
    ("timeout", 503,
     '{"status":"error","errorType":"timeout","error":"query timed out"}', None, "timeout",
     False),
    ("not Prometheus", 404, "404 page not found", None, "HTTP 404", True),
]


@pytest.mark.parametrize(("status", "body", "value", "problem", "lasting"),
                         [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS])
def test_an_answer_gives_one_number_or_says_why_not(
        status: int, body: str, value: float | None, problem: str | None,
        lasting: bool) -> None:
    try:
        decoded: Any = json.loads(body)
    except ValueError:
        decoded = None
    reading = read_answer(status, decoded)
    assert reading.value == value
    assert (problem is None) == (reading.problem is None)
    assert problem is None or problem in str(reading.problem)
    assert reading.lasting is lasting


def query(**bounds: float) -> PrometheusQuery:
    return PrometheusQuery(name="error ratio", query="q", **bounds)


def test_bounds_make_a_breach_naming_the_metric_value_and_bound() -> None:
    from bluegreen.prometheus import Reading

    assert judge_reading(query(max=0.01), Reading(0.05)).breach == "error ratio 0.05 > 0.01"
    assert judge_reading(query(max=0.01), Reading(0.01)).breach is None
    assert judge_reading(query(min=100), Reading(12.5)).breach == "error ratio 12.5 < 100"
    no_data = judge_reading(query(max=0.01), Reading(None, "no data yet"))
    assert (no_data.breach, no_data.describe()) == (None, "error ratio: no data yet")


def settings(*queries: PrometheusQuery, url: str = "http://prom.test:9090") -> PrometheusSettings:
    return PrometheusSettings(url=url, queries=queries)


def test_the_client_posts_each_rendered_query_and_judges_its_answer() -> None:
    asked: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        text = dict(httpx.QueryParams(request.content.decode()))["query"]
        asked.append((str(request.url), text))
        value = "0.2" if "green" in text else "3"
        return httpx.Response(200, json={"status": "success", "data": {
            "resultType": "scalar", "result": [1795970606.4, value]}})

    client = PrometheusClient(
        settings(PrometheusQuery(name="error ratio", query='errors{colour="{{ canary }}"}'
                                 '[{{ window }}]', max=0.05),
                 PrometheusQuery(name="rps", query='rps{colour="{{ stable }}"}', min=1)),
        client=httpx.Client(transport=httpx.MockTransport(answer)))
    results = client.measure({"canary": "green", "stable": "blue", "window": "30s"})
    assert asked == [("http://prom.test:9090/api/v1/query", 'errors{colour="green"}[30s]'),
                     ("http://prom.test:9090/api/v1/query", 'rps{colour="blue"}')]
    assert [(r.name, r.value, r.breach) for r in results] == [
        ("error ratio", 0.2, "error ratio 0.2 > 0.05"), ("rps", 3.0, None)]


def test_an_unreachable_server_is_no_data_and_its_credentials_are_never_shown() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = PrometheusClient(settings(query(max=1), url="https://ci:s3cret@prom.test/base/"),
                              client=httpx.Client(transport=httpx.MockTransport(refuse)))
    result = client.measure({})[0]
    assert result.value is None and not result.lasting
    assert "https://prom.test/base/ did not answer (ConnectError" in str(result.problem)
    assert "s3cret" not in result.describe()


def test_window_is_the_time_since_the_judged_traffic_began() -> None:
    at = datetime(2026, 11, 29, 12, 1, 33, tzinfo=timezone.utc)
    values = metric_values(service="shop", canary="green", stable="blue", release="v2",
                           weight=25, judged_since="2026-11-29T12:00:00+00:00", at=at)
    assert values == {"service": "shop", "canary": "green", "stable": "blue", "release": "v2",
                      "weight": 25, "window": "93s"}
    assert metric_values(service="shop", canary="green", stable="blue", release="v2",
                         weight=25, judged_since=None, at=at)["window"] == "1s"
    later = at.replace(microsecond=200_000)  # part of a second more: still all of it
    assert metric_values(service="shop", canary="green", stable="blue", release="v2", weight=25,
                         judged_since="2026-11-29T12:00:00+00:00", at=later)["window"] == "94s"


def test_metrics_alone_judge_a_canary_and_a_missing_number_keeps_it_unjudged() -> None:
    alone = CanarySettings(prometheus=settings(query(max=0.01)))
    assert alone.analysed and not alone.counted
    good = judge(alone, {}, {}, canary="green", stable="blue",
                 metrics=(MetricResult("error ratio", 0.001),))
    assert good.passed and good.describe() == "error ratio 0.001"
    bad = judge(alone, {}, {}, canary="green", stable="blue",
                metrics=(MetricResult("error ratio", 0.05, "error ratio 0.05 > 0.01"),))
    assert bad.breach == "error ratio 0.05 > 0.01" and not bad.passed
    waiting = judge(alone, {}, {}, canary="green", stable="blue",
                    metrics=(MetricResult("error ratio", None, problem="no data yet"),))
    assert not waiting.judged and waiting.lasting is None
    assert waiting.describe() == "not judged yet: error ratio: no data yet"
    wrong = judge(alone, {}, {}, canary="green", stable="blue",
                  metrics=(MetricResult("error ratio", None, problem="2 series", lasting=True),))
    assert wrong.lasting == "error ratio: 2 series"
    assert wrong.to_dict()["metrics"] == [
        {"name": "error ratio", "value": None, "breach": None, "problem": "2 series"}]


def test_a_metric_breach_counts_beside_counters_that_cannot_judge_yet() -> None:
    both = CanarySettings(max_error_rate=1, min_requests=100,
                          prometheus=settings(query(max=0.01)))
    before = {"lb1": BalancerTraffic("1", {"green-app1": ServerTraffic(0, 0, 0.0)})}
    now = {"lb1": BalancerTraffic("1", {"green-app1": ServerTraffic(10, 0, 5.0)})}
    verdict = judge(both, baseline_of(before), now, canary="green", stable="blue",
                    metrics=(MetricResult("error ratio", 0.05, "error ratio 0.05 > 0.01"),))
    assert not verdict.judged and verdict.breach == "error ratio 0.05 > 0.01"
    assert verdict.describe() == ("error ratio 0.05 > 0.01: 0 of 10 request(s) answered 5xx "
                                  "(0.0%)")


def load_text(text: str) -> Inventory:
    return validate_inventory(yaml.safe_load(text), path=Path("inventory.yml"), environ={})


PROMETHEUS_INVENTORY = """
service: shop
hosts: {app: [app1], balancer: [lb1]}
balancer: {kind: nginx, managed_file: /etc/nginx/conf.d/shop.conf}
canary:
  prometheus:
    url: %s
    queries: %s
"""


@pytest.mark.parametrize(("url", "queries", "where", "says"), [
    ("prom:9090", '[{name: e, query: "x", max: 1}]', "canary.prometheus.url", "http://"),
    ("http://prom:9090", '[{name: e, query: "x"}]', "canary.prometheus.queries[0]",
     "neither max nor min"),
    ("http://prom:9090", '[{name: e, query: "x", max: 1}, {name: e, query: "y", min: 0}]',
     "canary.prometheus.queries[1].name", "names two queries"),
    ("http://prom:9090", "[]", "canary.prometheus.queries", ""),
    ("http://prom:9090", '[{name: e, query: "x", max: 1, min: 2}]',
     "canary.prometheus.queries[0]", "min 2 above max 1"),
    # never echoed, since a URL may hold a password; a bad port or a '/' in a password is
    # refused here rather than failing mid-canary
    ("ftp://ci:s3cret@prom:9090", '[{name: e, query: "x", max: 1}]', "canary.prometheus.url",
     "is not an http"),
    ("http://ci:s3cret@prom:notaport", '[{name: e, query: "x", max: 1}]',
     "canary.prometheus.url", "numeric port"),
    ("http://ci:s3/cret@prom", '[{name: e, query: "x", max: 1}]', "canary.prometheus.url",
     "percent-encode"),
])
def test_a_wrong_prometheus_section_names_its_key(url: str, queries: str, where: str,
                                                  says: str) -> None:
    with pytest.raises(InventoryError) as caught:
        load_text(PROMETHEUS_INVENTORY % (url, queries))
    assert caught.value.where is not None and caught.value.where.endswith(where)
    assert says in f"{caught.value.message} {caught.value.hint}"
    assert "s3" not in f"{caught.value.message} {caught.value.hint}"


def test_a_query_template_error_is_found_before_any_network_call() -> None:
    from bluegreen.plan import check_templates

    inventory = load_text(PROMETHEUS_INVENTORY % (
        "http://prom:9090", '[{name: e, query: "x{c=\\"{{ canry }}\\"}", max: 1}]'))
    with pytest.raises(TemplateError) as caught:
        check_templates(inventory)
    assert caught.value.where == "canary.prometheus.queries[0].query"
    assert msgspec.to_builtins(inventory.canary.prometheus)["queries"][0]["max"] == 1
