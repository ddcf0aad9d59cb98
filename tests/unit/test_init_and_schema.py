from __future__ import annotations

import json
from pathlib import Path

import pytest

from bluegreen.inventory import load_inventory
from bluegreen.plan import check_templates
from bluegreen.scaffold import APPS, BALANCERS
from bluegreen.schema import schema_text
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
