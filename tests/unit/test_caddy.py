"""The Caddy driver's pure parts: the rendered snippet and what the admin API's config says."""

from __future__ import annotations

import json
from pathlib import Path

from bluegreen.balancer import balancer_for
from bluegreen.balancer.base import parse_header
from bluegreen.balancer.caddy import proxied_dials, snippet_dials
from bluegreen.inventory import validate_inventory
from bluegreen.model import Colour
from bluegreen.plan import build_upstream

FIXTURE = Path(__file__).parent / "fixtures" / "caddy-config.json"


def inventory() -> object:
    return validate_inventory({
        "service": "shop",
        "hosts": {"app": [{"name": "app1", "address": "10.0.0.1"},
                          {"name": "app2", "address": "fd00::2"}], "balancer": ["lb1"]},
        "balancer": {"kind": "caddy", "managed_file": "/etc/caddy/shop.caddy"},
    }, path=Path("inv.yml"), environ={})


def test_the_snippet_names_the_live_colour_upstreams_and_carries_the_header() -> None:
    inv = inventory()
    driver = balancer_for(inv.balancer)  # type: ignore[attr-defined]
    text = driver.render(build_upstream(inv, Colour.GREEN, 4))  # type: ignore[arg-type]
    header = parse_header(text)
    assert header is not None and (header.colour, header.generation) == (Colour.GREEN, 4)
    assert "(shop_upstream) {\n\tto 10.0.0.1:9502 [fd00::2]:9502\n}\n" in text
    assert snippet_dials(text) == {"10.0.0.1:9502", "[fd00::2]:9502"}


def test_the_running_config_yields_every_reverse_proxy_upstream_set() -> None:
    config = FIXTURE.read_text()  # GET /config/ of Caddy 2.6 running a Caddyfile
    assert proxied_dials(config) == [frozenset({"127.0.10.1:9501", "127.0.10.2:9501"})]
    assert proxied_dials("not json") == [] and proxied_dials(json.dumps({"apps": {}})) == []


def test_check_advises_handing_queued_connections_over_on_a_config_swap() -> None:
    from bluegreen.balancer.caddy import judge_migrate_req
    from bluegreen.transport.base import CommandResult

    def read(stdout: str) -> tuple[bool, str]:
        return judge_migrate_req(CommandResult("lb1", "cat", 0, stdout, ""))

    (advice,) = balancer_for(inventory().balancer).host_advice()  # type: ignore[attr-defined]
    assert "/proc/sys/net/ipv4/tcp_migrate_req" in str(advice.command)
    assert read("1\n") == (True, "net.ipv4.tcp_migrate_req = 1: a config swap hands the "
                                 "connections queued on Caddy's old listener to the new one")
    fine, said = read("0\n")
    assert not fine and "sysctl -w net.ipv4.tcp_migrate_req=1" in said
    fine, said = read("none\n")  # before Linux 5.14
    assert not fine and "Linux 5.14" in said
