from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bluegreen.balancer.base import parse_header
from bluegreen.errors import TemplateError
from bluegreen.inventory import validate_inventory
from bluegreen.model import Colour
from bluegreen.plan import build_deploy_plan, build_flip_plan
from bluegreen.render import render_command
from bluegreen.session import drift_between
from bluegreen.state import State, sha256_text

INVENTORY: dict[str, Any] = {
    "service": "shop",
    "hosts": {"app": [{"name": "app1", "address": "10.0.0.11"},
                      {"name": "app2", "address": "10.0.0.12", "app_root": "/opt/shop"}],
              "balancer": ["lb1", {"name": "lb2", "balancer": {"managed_file": "/etc/lb2.conf"}}]},
    "app": {"root": "/srv/shop", "start": "run --port {{ port }} --dir {{ release_dir }}",
            "stop": "stop {{ colour }}"},
    "balancer": {"managed_file": "/etc/nginx/conf.d/shop.conf"},
}


def inventory() -> Any:
    return validate_inventory(INVENTORY, path=Path("inv.yml"), environ={})


def test_flip_plan_renders_only_the_target_colour_with_a_parseable_header() -> None:
    plan = build_flip_plan(inventory(), state=State(service="shop", generation=4,
                                                   live=Colour.BLUE),
                           target=Colour.GREEN, current={"lb1": None, "lb2": None})
    text = plan.configs["lb1"]
    assert "server 10.0.0.11:9502 weight=100" in text and "10.0.0.12:9502" in text
    assert ":9501" not in text
    header = parse_header(text)
    assert header is not None
    assert (header.colour, header.generation, header.weights) == (
        Colour.GREEN, 5, {"blue": 0, "green": 100})
    assert plan.paths == {"lb1": "/etc/nginx/conf.d/shop.conf", "lb2": "/etc/lb2.conf"}
    assert any(line.startswith("+upstream shop {") for line in plan.diffs())


def test_deploy_plan_uses_each_hosts_app_root_and_quotes_values() -> None:
    plan = build_deploy_plan(inventory(), state=State(service="shop"), release="v1 $(x)",
                             target=Colour.BLUE, current={"lb1": None, "lb2": None})
    starts = {steps.spec.host.name: str(steps.start) for steps in plan.instances}
    assert "/srv/shop/releases/" in starts["app1"] and "/opt/shop/releases/" in starts["app2"]
    assert "'\"'\"'/opt/shop/releases/v1 $(x)'\"'\"'" in starts["app2"]
    text = "\n".join(plan.describe())
    assert "deploy release v1 $(x) to blue" in text and "health-check 2 blue" in text


def test_command_templates_quote_every_value() -> None:
    command = render_command("echo {{ value }}", {"value": "a; rm -rf / $(id)"}, where="t")
    assert command.argv == ("sh", "-c", "echo 'a; rm -rf / $(id)'")


def test_unknown_template_variable_is_a_template_error_naming_the_key() -> None:
    with pytest.raises(TemplateError) as caught:
        render_command("run {{ prot }}", {"port": 1}, where="app.start")
    assert caught.value.exit_code == 2 and caught.value.where == "app.start"
    assert "prot" in caught.value.message and "port" in (caught.value.hint or "")


def test_drift_detection() -> None:
    plan = build_flip_plan(inventory(), state=State(service="shop"), target=Colour.BLUE,
                           current={})
    text = plan.configs["lb1"]
    state = State(service="shop", generation=1, live=Colour.BLUE,
                  managed_sha256={"lb1": sha256_text(text)})
    assert drift_between(state, text, host="lb1") is None
    assert "edited" in (drift_between(state, text + "# hand edit\n", host="lb1") or "")
    assert "missing" in (drift_between(state, None, host="lb1") or "")
    green = State(service="shop", generation=1, live=Colour.GREEN)
    assert "state says green" in (drift_between(green, text, host="lb1") or "")
    fresh = State(service="shop")
    assert drift_between(fresh, "upstream shop { server 127.0.0.1:9 down; }", host="lb1") is None
