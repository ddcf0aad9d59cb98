from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bluegreen.balancer.base import parse_header
from bluegreen.drift import drift_between
from bluegreen.errors import TemplateError
from bluegreen.inventory import validate_inventory
from bluegreen.model import Colour
from bluegreen.plan import build_deploy_plan, build_flip_plan
from bluegreen.render import render_command, render_config
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
    assert [steps.spec.host.name for batch in plan.batches for steps in batch] == [
        "app1", "app2"]


def test_command_templates_quote_every_value() -> None:
    command = render_command("echo {{ value }}", {"value": "a; rm -rf / $(id)"}, where="t")
    assert command.argv == ("sh", "-c", "echo 'a; rm -rf / $(id)'")


def test_a_template_is_compiled_once_and_rendered_for_each_host() -> None:
    from bluegreen import render

    template = "start --port {{ port }} # compiled once"
    commands = [render_command(template, {"port": port}, where="app.start")
                for port in (9501, 9502, 9503)]
    assert [c.argv[2] for c in commands] == [f"start --port {p} # compiled once"
                                              for p in (9501, 9502, 9503)]
    # the same text as a plain (unquoted) template is compiled by its own environment
    assert render.render_text(template, {"port": "a b"}, where="t") == (
        "start --port a b # compiled once")
    compiled = render._compiled
    assert compiled(render._COMMAND, template) is compiled(render._COMMAND, template)
    assert compiled(render._COMMAND, template) is not compiled(render._TEXT, template)


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


def test_a_broken_template_is_found_before_any_network_call(tmp_path: Path) -> None:
    from bluegreen.plan import check_templates

    check_templates(inventory())  # the shipped templates render
    broken = tmp_path / "broken.j2"
    broken.write_text("upstream {{ upstream_name }} {% for s in servers %}\n")
    data = {**INVENTORY, "balancer": {**INVENTORY["balancer"], "template": str(broken)}}
    with pytest.raises(TemplateError) as caught:
        check_templates(validate_inventory(data, path=Path("inv.yml"), environ={}))
    assert caught.value.exit_code == 2 and "broken.j2" in str(caught.value.where)
    bad_verify = {**INVENTORY, "verify": {"urls": ["http://lb/"],
                                          "expect_body": "release {{ relase }}"}}
    with pytest.raises(TemplateError):
        check_templates(validate_inventory(bad_verify, path=Path("inv.yml"), environ={}))
    bad_command = {**INVENTORY, "app": {**INVENTORY["app"], "stop": "stop {{ colur }}"}}
    with pytest.raises(TemplateError):
        check_templates(validate_inventory(bad_command, path=Path("inv.yml"), environ={}))


def test_app_drain_may_use_the_pid_only_with_a_pid_file() -> None:
    from bluegreen.app import AppStack, instance_specs
    from bluegreen.plan import check_templates

    def with_app(**app: str) -> Any:
        data = {**INVENTORY, "app": {**INVENTORY["app"], **app}}
        return validate_inventory(data, path=Path("inv.yml"), environ={})

    no_pid_file = with_app(drain="kill -s URG {{ pid }}")
    with pytest.raises(TemplateError) as caught:
        check_templates(no_pid_file)
    assert caught.value.exit_code == 2 and caught.value.where == "app.drain"
    assert "app.pid_file" in str(caught.value)
    check_templates(with_app(drain='kill -s URG "$(cat /run/{{ colour }}.pid)"'))

    inventory = with_app(drain="kill -s URG {{ pid }}", pid_file="/run/shop/{{ colour }}.pid")
    check_templates(inventory)
    stack = AppStack(inventory, inventory.app)
    spec = instance_specs(inventory, Colour.GREEN)[0]
    assert stack.drain_needs_pid()
    assert stack.pid_file(spec, "v1") == "/run/shop/green.pid"
    assert stack.drain_command(spec, "v1", pid=4242).argv[-1] == "kill -s URG 4242"
    with pytest.raises(TemplateError):  # a typo in the signal template is found up front too
        check_templates(with_app(pid_file="/run/x.pid", signal="kill -s {{ sig }} {{ pid }}"))


def test_rollback_refuses_a_colour_a_failed_deploy_changed() -> None:
    from bluegreen.errors import RollbackImpossible
    from bluegreen.operations.flips import require_rollback_target
    from bluegreen.state import ColourState

    def state(**blue: Any) -> State:
        return State(service="shop", live=Colour.GREEN,
                     colours={"blue": ColourState(**blue), "green": ColourState("v2", "running")})

    require_rollback_target(state(release="v1", status="running"), Colour.BLUE, restart=False)
    require_rollback_target(state(release="v1", status="retired"), Colour.BLUE, restart=True)
    # a retire cut short changes no release: each host's check decides
    require_rollback_target(state(release="v1", status="stopping"), Colour.BLUE, restart=False)
    # a restart of the served release that did not finish may be tried again
    require_rollback_target(state(release="v1", status="failed", replaced="v1"), Colour.BLUE,
                             restart=True)
    refusals = {
        "failed": state(release="v5", status="failed", replaced="v1", error="deploy v5 failed"),
        "starting": state(release="v5", status="starting", replaced="v1"),
        "retired": state(release="v1", status="retired"),
        "retired failure": state(release="v5", status="retired", error="deploy v5 failed"),
        "stopping failure": state(release="v5", status="stopping", error="deploy v5 failed"),
    }
    for name, refused in refusals.items():
        with pytest.raises(RollbackImpossible) as caught:
            require_rollback_target(refused, Colour.BLUE, restart=name == "retired failure")
        assert caught.value.exit_code == 8, name
    failed = refusals["failed"]
    with pytest.raises(RollbackImpossible) as caught:
        require_rollback_target(failed, Colour.BLUE, restart=False)
    assert "deploy --to blue --release v1" in str(caught.value.hint)


def test_state_round_trips_with_its_operation_and_colour_details() -> None:
    from bluegreen.state import ColourState, Operation

    original = State(service="shop", generation=3, revision=7, live=Colour.GREEN,
                     colours={"blue": ColourState("v5", "failed", "t", "v1", "deploy v5 failed"),
                              "green": ColourState("v2", "running", "t")},
                     operation=Operation("deploy v6", "ci@runner", "t0", "start blue"))
    assert State.from_json(original.to_json(), service="shop") == original
    legacy = '{"service": "shop", "generation": 2, "live": "blue", "colours": ' \
             '{"blue": {"release": "v1", "status": "running", "since": null}}}'
    old = State.from_json(legacy, service="shop")
    assert old.revision == 0 and old.operation is None and old.colour(Colour.BLUE).replaced is None


@pytest.mark.parametrize("template", [
    "{{ cycler.__init__.__globals__.os.system('touch /tmp/bluegreen-pwned') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ colour.__class__ }}",
])
def test_templates_are_sandboxed(template: str) -> None:
    for render in (lambda: render_command(template, {"colour": "blue"}, where="app.start"),
                   lambda: render_config(template, {"colour": "blue"}, where="template")):
        with pytest.raises(TemplateError) as caught:
            render()
        assert caught.value.exit_code == 2
    assert not Path("/tmp/bluegreen-pwned").exists()
