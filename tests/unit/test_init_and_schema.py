from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bluegreen.inventory import load_inventory
from bluegreen.plan import check_templates
from bluegreen.scaffold import APPS, BALANCERS
from bluegreen.schema import inventory_reference, inventory_schema, schema_text
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_schema_is_the_one_the_model_generates() -> None:
    committed = (ROOT / "docs" / "inventory.schema.json").read_text()
    assert committed == schema_text(), (
        "docs/inventory.schema.json is stale: `bluegreen schema > docs/inventory.schema.json`")
    schema = json.loads(committed)
    inventory = schema["$defs"]["Inventory"]
    assert inventory["additionalProperties"] is False  # editors flag unknown keys
    assert {"service", "hosts"} <= set(inventory["required"])
    assert schema["$defs"]["AppSettings"]["properties"]["signal"]["default"] == (
        "kill -s {{ signal }} {{ pid }}")



def test_the_committed_inventory_reference_is_the_one_the_model_generates() -> None:
    committed = (ROOT / "docs" / "inventory.md").read_text()
    assert committed == inventory_reference(), (
        "docs/inventory.md is stale: `bluegreen schema --markdown > docs/inventory.md`")
    result = run_cli("schema", "--markdown")
    assert result.returncode == 0, result.stderr
    assert result.stdout == committed


def test_every_key_and_object_of_the_schema_has_a_description() -> None:
    definitions = inventory_schema()["$defs"]
    undescribed = [f"{name}.{key}" for name, definition in definitions.items()
                   for key, prop in definition.get("properties", {}).items()
                   if not str(prop.get("description", "")).strip()]
    assert not undescribed, (
        "keys without a description (add them to bluegreen/inventory_descriptions.py): "
        f"{undescribed}")
    assert [name for name, d in definitions.items() if not d.get("description")] == []
    reference = inventory_reference()
    assert "| Key | Type | Default | Description |" in reference
    assert all(cells[2] for cells in _rows(reference).values())  # every row has one


def test_every_description_names_a_real_object_and_key_and_is_used() -> None:
    from bluegreen.inventory import json_schema
    from bluegreen.inventory_descriptions import FIELDS, OBJECTS

    model = json_schema()["$defs"]  # before the descriptions are merged in
    stale = [name for name in {*FIELDS, *OBJECTS} if name not in model]
    stale += [f"{name}.{key}" for name, keys in FIELDS.items() if name in model
              for key in keys if key not in model[name].get("properties", {})]
    assert not stale, f"descriptions of objects or keys the model does not have: {stale}"
    # a description the model already gives wins, so an entry for it would never show
    shadowed = [name for name in OBJECTS if model[name].get("description")]
    shadowed += [f"{name}.{key}" for name, keys in FIELDS.items() for key in keys
                 if model[name]["properties"][key].get("description")]
    assert not shadowed, f"descriptions the model's own replace: {shadowed}"
    texts = [*OBJECTS.values(), *(text for keys in FIELDS.values() for text in keys.values())]
    assert all(text.strip() and "\n" not in text for text in texts)


def _rows(markdown: str) -> dict[str, list[str]]:
    """The reference's table rows by key (the first cell, its code span unwrapped)."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip().replace("\\|", "|")
                     for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def _paths(schema: dict[str, Any], definitions: dict[str, Any], path: str) -> list[str]:
    """Every key path of the schema, written as a file would (`hosts.app[].name`; a map's
    entries as `NAME`)."""
    if "$ref" in schema:
        definition = definitions[schema["$ref"].rsplit("/", 1)[-1]]
        found = []
        for key, prop in definition.get("properties", {}).items():
            child = f"{path}.{key}" if path else key
            found += [child, *_paths(prop, definitions, child)]
        return found
    found = []
    for option in schema.get("anyOf", []):
        found += _paths(option, definitions, path)
    if isinstance(schema.get("items"), dict):
        found += _paths(schema["items"], definitions, f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += _paths(schema["additionalProperties"], definitions, f"{path}.NAME")
    return found


def test_the_inventory_reference_names_every_key_of_the_schema() -> None:
    schema = inventory_schema()
    paths = _paths(schema, schema["$defs"], "")
    assert {"service", "hosts.app[].name", "hosts.balancer[].balancer.flip", "colours.green.port",
            "hooks.on_failure[].run", "secrets.NAME.env", "app.drain_timeout"} <= set(paths)
    keys = _rows(inventory_reference())
    patterns = [re.compile(re.escape(key).replace(r"\*", r"[^.\[\]]+")
                           .replace(re.escape("<name>"), r"[^.\[\]]+") + "$") for key in keys]
    missing = [path for path in paths if not any(p.match(path) for p in patterns)]
    assert not missing, f"keys missing from the reference: {missing}"
    assert len(keys) == len(set(keys))  # each object's keys once


def test_the_inventory_reference_shows_types_defaults_and_required_keys() -> None:
    reference = inventory_reference()
    assert reference.startswith("# Inventory reference\n")
    assert "`bluegreen schema --markdown`" in reference and "do not edit it by hand" in reference
    rows = _rows(reference)
    assert rows["app.drain_timeout"][:2] == ["number (0–604800)", "`30`"]
    assert rows["app.signal"][:2] == ["non-empty string", '`"kill -s {{ signal }} {{ pid }}"`']
    assert rows["service"][1] == "*required*"
    assert rows["app.root"][1] == "*required*"
    assert rows["ssh.port"][:2] == ["integer (1–65535)", "`null`"]
    assert rows["ssh.config_file"][0] == "string or null"  # null means something else there
    assert rows["balancer.kind"][0] == 'one of `"caddy"` | `"haproxy"` | `"nginx"`'
    assert rows["hosts.app"][0] == "non-empty list of (string or [mapping](#hostspec))"
    assert rows["secrets"][0] == "map of string to [mapping](#secretref)"
    assert rows["deploy.max_unhealthy"][:2] == [
        "integer (≥ 0) or string (matching `^(100|[1-9]?[0-9])%$`)", "`0`"]
    assert rows["colours.*.port"][1] == "*required*"
    assert "The keys below apply to each of `colours.blue`, `colours.green`." in reference
    assert "| `deploy.max_unhealthy` | integer (≥ 0) or string (matching `^(100\\|" in reference
    for anchor in re.findall(r"\]\(#([a-z0-9-]+)\)", reference):  # every link has a target
        assert f'<a id="{anchor}"></a>' in reference


@pytest.mark.parametrize("app", APPS)
@pytest.mark.parametrize("balancer", BALANCERS)
def test_init_writes_a_valid_inventory_and_never_overwrites(tmp_path: Path, app: str,
                                                            balancer: str) -> None:
    result = run_cli("init", "--env", "staging", "--app", app, "--balancer", balancer,
                     "--hosts", "web1,web2", "--balancer-host", "lb1", "--service", "shop",
                     "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    path = tmp_path / "staging.yml"
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=inventory.schema.json\n")
    inventory = load_inventory(path, environ={})
    check_templates(inventory)  # every command and balancer template renders
    assert [h.name for h in inventory.hosts.app] == ["web1", "web2"]
    assert inventory.balancer is not None and inventory.balancer.kind == balancer
    assert (tmp_path / "inventory.schema.json").read_text() == schema_text()
    again = run_cli("init", "--env", "staging", "--dir", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert path.read_text() == text


def test_schema_prints_json_without_an_inventory() -> None:
    result = run_cli("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "bluegreen inventory"


def test_in_github_actions_an_error_is_also_an_annotation_and_json_stays_clean() -> None:
    result = run_cli("--json", "-i", "/nonexistent/inventory.yml", "status",
                     env={"GITHUB_ACTIONS": "true"})
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == "inventory_error"
    assert ("::error title=bluegreen%3A inventory_error (exit 2)::/nonexistent/inventory.yml: "
            "inventory file not found.") in result.stderr
    plain = run_cli("-i", "/nonexistent/inventory.yml", "status")
    assert "::error" not in plain.stderr


@pytest.mark.parametrize(("variables", "expected"), [
    ({"GITHUB_RUN_ID": "7", "GITHUB_REPOSITORY": "acme/shop"},
     "https://github.com/acme/shop/actions/runs/7"),
    ({"CI_JOB_URL": "https://gitlab.example/acme/shop/-/jobs/9"},
     "https://gitlab.example/acme/shop/-/jobs/9"),
    ({"BUILD_URL": "https://jenkins.example/job/shop/3/"}, "https://jenkins.example/job/shop/3/"),
    ({"BUILDKITE_BUILD_URL": "https://buildkite.com/acme/shop/builds/4"},
     "https://buildkite.com/acme/shop/builds/4"),
])
def test_the_ci_job_is_named_from_the_ci_own_variables(
        monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected: str) -> None:
    from bluegreen.state import ci_job_url

    for name in ("GITHUB_RUN_ID", "GITHUB_REPOSITORY", "CI_JOB_URL", "BUILD_URL",
                 "BUILDKITE_BUILD_URL", "CIRCLE_BUILD_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert ci_job_url() == expected
