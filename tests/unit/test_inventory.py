from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from bluegreen.errors import InventoryError
from bluegreen.inventory import key_path, load_inventory, validate_inventory
from bluegreen.model import Colour
from bluegreen.shell import Secret
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]

MINIMAL: dict[str, Any] = {
    "service": "shop",
    "hosts": {"app": ["app1", {"name": "app2", "port": 2222}], "balancer": ["lb1"]},
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """MINIMAL with one key set ("hosts.app[1].port"); value DELETE removes it."""
    data = copy.deepcopy(MINIMAL)
    parts = path.replace("[", ".").replace("]", "").split(".")
    node: Any = data
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    last: Any = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()


def test_the_shipped_example_validates_and_documents_every_section() -> None:
    inventory = load_inventory(ROOT / "inventories" / "example.yml",
                               environ={"SHOP_DATABASE_PASSWORD": "s3cret"})
    assert inventory.service == "shop"
    assert [h.name for h in inventory.hosts.app] == ["app1", "app2"]
    assert inventory.colours.spec(Colour.GREEN).port == 9502
    assert inventory.resolved_secrets["DATABASE_PASSWORD"] == Secret("s3cret")
    assert "s3cret" not in repr(inventory.resolved_secrets)
    text = (ROOT / "inventories" / "example.yml").read_text()
    for section in ("ssh:", "hosts:", "colours:", "release:", "app:", "health:", "balancer:",
                    "verify:", "lock:", "secrets:"):
        assert f"\n{section}" in text


def test_minimal_inventory_gets_defaults() -> None:
    inventory = validate_inventory(MINIMAL, path=Path("inv.yml"), environ={})
    assert inventory.ssh.strict_host_keys is True
    assert inventory.ssh.trust_on_first_use is False
    assert inventory.hosts.app[0].name == "app1"
    assert inventory.state_dir_for(inventory.hosts.balancer[0]) == "/var/lib/bluegreen/shop"
    assert [h.name for h in inventory.colour_hosts(Colour.BLUE)] == ["app1", "app2"]


BAD = [
    ("unknown key", with_change("hosts.app[1].prot", 22), "hosts.app[1].prot",
     "Did you mean 'port'"),
    ("wrong type", with_change("ssh.connect_timeout", "soon"), "ssh.connect_timeout", "number"),
    ("bad port", with_change("hosts.app[1].port", 70000), "hosts.app[1].port", "65535"),
    ("zero port", with_change("colours.blue", {"port": 0}), "colours.blue.port", "1"),
    ("missing service", with_change("service", DELETE), "service", "required"),
    ("missing balancers", with_change("hosts.balancer", DELETE), "hosts.balancer", "required"),
    ("empty app hosts", with_change("hosts.app", []), "hosts.app", "length >= 1"),
    ("duplicate host", with_change("hosts.app[1]", "app1"), "hosts.app[1].name", "twice"),
    ("colour ports clash", with_change("colours.green", {"port": 9501}), "colours.green.port",
     "both use port 9501"),
    ("bad service name", with_change("service", "my shop!"), "service", "matching regex"),
    ("host entry of the wrong type", with_change("hosts.app[0]", 7), "hosts.app[0]",
     "a host name or a mapping"),
    ("unknown top-level key", with_change("sevrice", "x"), "sevrice", "service"),
    ("host mode unknown host", {**MINIMAL, "colours": {
        "mode": "host", "blue": {"port": 1, "hosts": ["app1"]},
        "green": {"port": 1, "hosts": ["app9"]}}}, "colours.green.hosts[0]", "not a host"),
    ("host mode overlap", {**MINIMAL, "colours": {
        "mode": "host", "blue": {"port": 1, "hosts": ["app1"]},
        "green": {"port": 1, "hosts": ["app1"]}}}, "colours.green.hosts[0]", "already runs"),
    ("relative app root", {**MINIMAL, "app": {"root": "srv", "start": "a", "stop": "b"}},
     "app.root", "absolute"),
    ("missing secret env", {**MINIMAL, "secrets": {"DB": {"env": "NOPE_NOT_SET"}}},
     "secrets.DB.env", "NOPE_NOT_SET is not set"),
    ("an env name that is an option", {**MINIMAL, "app": {
        "root": "/srv", "start": "a", "stop": "b", "env": {"-S sh -c 'id'": "x"}}},
     "app.env.-S sh -c 'id'", "not an environment variable name"),
    ("a newline in a host name", with_change("hosts.app[0]", "app1\nserver evil:80"),
     "hosts.app[0].name", "control characters"),
    ("a space in an address", with_change("hosts.app[1].address", "10.0.0.1 x"),
     "hosts.app[1].address", "spaces"),
    ("a worker pattern that is no regex", {**MINIMAL, "app": {
        "root": "/srv", "start": "a", "stop": "b", "worker_pattern": "(worker"}},
     "app.worker_pattern", "not a regular expression"),
]


@pytest.mark.parametrize(("data", "where", "expected"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_inventory_names_the_key_path(data: dict[str, Any], where: str, expected: str) -> None:
    with pytest.raises(InventoryError) as caught:
        validate_inventory(data, path=Path("inv.yml"), environ={})
    error = caught.value
    assert error.exit_code == 2
    assert error.where == f"inv.yml: {where}"
    assert expected in error.paragraph()


@pytest.mark.parametrize(("data", "where", "expected"), [b[1:] for b in BAD[:4]],
                         ids=[b[0] for b in BAD[:4]])
def test_bad_inventory_exits_2_through_the_cli_without_traceback(
    tmp_path: Path, data: dict[str, Any], where: str, expected: str
) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(yaml.safe_dump(data))
    result = run_cli("-i", str(path), "check")
    assert result.returncode == 2
    assert f"{path}: {where}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


HOSTS = "service: shop\nhosts: {app: [app1], balancer: [lb1]}\n"


@pytest.mark.parametrize(("text", "where", "expected"), [
    ("service: shop\nhosts:\n  app: a: b\n", ":3:", "not valid YAML"),
    ("service: shop\nservice: again\n", ":2:1", "appears twice"),
    ("- just\n- a list\n", "inv.yml", "must be a YAML mapping"),
    (HOSTS + "? [a, b]\n: 1\n", ":3:3", "must be plain text"),
    (HOSTS + "x: " + "[" * 3000 + "]" * 3000 + "\n", "inv.yml", "nest"),
    (HOSTS + "ssh: {connect_timeout: .inf}\n", "ssh.connect_timeout", "<= 604800"),
    (HOSTS + "ssh: {command_timeout: 1e308}\n", "ssh.command_timeout", "<= 604800"),
    (HOSTS + "ssh: {jump: 'bastion:abc'}\n", "ssh.jump", "not a jump host"),
    (HOSTS + "verify: {urls: [shop.example.com/]}\n", "verify.urls[0]", "not an http"),
    (HOSTS + 'health: {path: "/health\\r\\nX-Evil: 1"}\n', "health.path",
     "control characters"),
    (HOSTS + "canary: {steps: [{weight: 25}, {weight: 10}]}\n", "canary.steps[1].weight",
     "does not rise above the step before it (25)"),
    (HOSTS + "canary: {steps: [{weight: 5, pause: soon}]}\n", "canary.steps[0].pause",
     "'soon' is not one of the words this key accepts"),
    (HOSTS + "canary: {steps: [{weight: 100}]}\n", "canary.steps[0].weight", "99"),
    (HOSTS + "balancer: {kind: haproxy, managed_file: /b.cfg, access_log: /a.log}\n",
     "balancer.access_log", "read for nginx"),
    (HOSTS + "balancer: {managed_file: /u.conf, access_log: logs/a.log}\n",
     "balancer.access_log", "absolute path"),
])
def test_broken_yaml_names_the_line(tmp_path: Path, text: str, where: str, expected: str) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(text)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path, environ={})
    assert where in (caught.value.where or "") and expected in caught.value.message
    assert caught.value.exit_code == 2


def test_a_binary_file_is_not_an_inventory(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_bytes(b"\x00\x01\xff\xfe binary")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path, environ={})
    assert "not UTF-8 text" in caught.value.message


def test_yaml_1_2_numbers_and_merge_keys_behave_as_written(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("service: shop\nhosts:\n  app: [{<<: {name: app1, port: 2222}, name: app2}]"
                    "\n  balancer: [lb1]\nssh: {command_timeout: 1e3}\n")
    inventory = load_inventory(path, environ={})
    assert inventory.ssh.command_timeout == 1000.0
    assert (inventory.hosts.app[0].name, inventory.hosts.app[0].port) == ("app2", 2222)


def test_missing_file_exits_2_with_a_hint(tmp_path: Path) -> None:
    result = run_cli("-i", str(tmp_path / "nope.yml"), "--json", "check")
    assert result.returncode == 2
    assert '"code": "inventory_error"' in result.stdout
    assert "BLUEGREEN_INVENTORY" in result.stdout


def test_inventory_comes_from_the_environment_variable(tmp_path: Path) -> None:
    result = run_cli("check", env={"BLUEGREEN_INVENTORY": str(tmp_path / "env.yml")})
    assert result.returncode == 2 and "env.yml" in result.stderr


def test_key_path_formatting() -> None:
    assert key_path(("hosts", "app", 1, "port")) == "hosts.app[1].port"
    assert key_path(()) == "(top level)"


def test_the_shipped_plain_process_example_is_a_valid_app_section() -> None:
    example = yaml.safe_load((ROOT / "templates" / "examples" / "plain-process.yml").read_text())
    inventory = validate_inventory({**MINIMAL, **example}, path=Path("inv.yml"), environ={})
    assert inventory.app is not None and "{{ port }}" in inventory.app.start


def test_yaml_1_2_booleans_so_on_and_no_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("service: shop\nhosts: {app: [a], balancer: [b]}\nssh: {sudo: true}\n"
                    "hooks:\n  pre_flip:\n    - run: echo no\n      on: app\n")
    inventory = load_inventory(path, environ={})
    assert inventory.hooks.pre_flip[0].on == "app" and inventory.ssh.sudo is True


def test_the_shipped_swoole_and_gunicorn_example_inventories_validate() -> None:
    for name in ("swoole", "gunicorn"):
        inventory = load_inventory(ROOT / "examples" / name / "inventory.yml", environ={})
        assert inventory.app is not None and inventory.app.pid_file
    swoole = load_inventory(ROOT / "examples" / "swoole" / "inventory.yml", environ={})
    assert swoole.app is not None and swoole.app.reload_signal == "USR1"
    assert swoole.app.server_mode == "process"


@pytest.mark.parametrize(("text", "hint"), [
    ("canary: {steps: [{weight: 5, pause: soon}]}\n", "Write 'manual', or a number."),
    ("balancer: {kind: ngnix}\n", "Did you mean 'nginx'?"),
    ("colours: {mode: colour}\n", "Write "),
])
def test_a_word_a_key_does_not_accept_gets_the_words_it_does(tmp_path: Path, text: str,
                                                             hint: str) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(HOSTS + text)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path, environ={})
    assert "is not one of the words this key accepts" in caught.value.message
    assert (caught.value.hint or "").startswith(hint)
