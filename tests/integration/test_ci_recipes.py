"""The CI recipes in examples/ci/ run: the steps that call bluegreen are taken from the workflow
files as they are and run by bash, as the CI would, against the loopback fleet."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.integration.service import Service

RECIPES = Path(__file__).resolve().parents[2] / "examples" / "ci"
GITHUB = yaml.safe_load((RECIPES / "github-actions.yml").read_text())
GITLAB = yaml.safe_load((RECIPES / "gitlab-ci.yml").read_text())


def github_step(name: str) -> str:
    (step,) = [s for s in GITHUB["jobs"]["deploy"]["steps"] if s.get("name") == name]
    return str(step["run"])


def run_step(script: str, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """As GitHub runs a `run:` step: bash -e -o pipefail, in the checkout."""
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")},
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **env}
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                          cwd=workdir, env=full, capture_output=True, text=True, timeout=180)


def checkout(service: Service, tmp_path: Path, release: str) -> Path:
    workdir = tmp_path / "checkout"
    (workdir / "inventories").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(service.inventory(), workdir / "inventories" / "production.yml")
    shutil.rmtree(workdir / "build", ignore_errors=True)
    shutil.copytree(service.release(release), workdir / "build")
    return workdir


def ok(result: Any) -> None:
    assert result.returncode == 0, (result.stdout, result.stderr)


def test_the_github_workflow_deploys_summarises_and_rolls_back(service: Service,
                                                               tmp_path: Path) -> None:
    output, summary = tmp_path / "output", tmp_path / "summary"
    env = {**GITHUB["jobs"]["deploy"]["env"], "GITHUB_ACTIONS": "true",
           "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
    for sha in ("1111111111111111", "2222222222222222"):
        workdir = checkout(service, tmp_path, sha[:12])  # RELEASE names what is served
        ok(run_step(github_step("Deploy"), workdir, {**env, "GITHUB_SHA": sha}))
        ok(run_step(github_step("Summary"), workdir, env))
        assert service.fetch().startswith(f"release {sha[:12]} ")
    assert output.read_text().splitlines() == ["live=blue", "live=green"]
    ok(run_step(github_step("Rollback"), workdir, env))
    ok(run_step(github_step("Summary"), workdir, env))
    assert service.fetch().startswith("release 111111111111 (blue)")
    assert summary.read_text().splitlines() == [
        "blue is live with release 111111111111 (generation 1)",
        "green is live with release 222222222222 (generation 2)",
        "blue is live with release 111111111111 (generation 3)"]
    # a failure reaches the summary and the run's annotations
    (workdir / "inventories" / "production.yml").write_text("service: [broken\n")
    failed = run_step(github_step("Rollback"), workdir, env)
    assert failed.returncode == 2 and "::error title=bluegreen%3A inventory_error" in (
        failed.stderr)
    ok(run_step(github_step("Summary"), workdir, env))
    assert summary.read_text().splitlines()[-1].startswith(
        "bluegreen failed (exit 2, inventory_error)")


def test_the_gitlab_pipeline_deploys_and_rolls_back(service: Service, tmp_path: Path) -> None:
    env = {**GITLAB["variables"], "CI_COMMIT_SHORT_SHA": "3333333"}
    workdir = checkout(service, tmp_path, "3333333")
    deploy = run_step("\n".join(GITLAB["deploy"]["script"]), workdir, env)
    ok(deploy)
    assert deploy.stdout.strip() == "blue is live with release 3333333"
    workdir = checkout(service, tmp_path, "4444444")
    ok(run_step("\n".join(GITLAB["deploy"]["script"]), workdir,
                {**env, "CI_COMMIT_SHORT_SHA": "4444444"}))
    rollback = run_step("\n".join(GITLAB["rollback"]["script"]), workdir, env)
    ok(rollback)
    assert rollback.stdout.strip() == "blue is live again with release 3333333"
    assert service.fetch().startswith("release 3333333 (blue)")
