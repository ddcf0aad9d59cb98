from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bluegreen import __version__
from tests.conftest import run_cli


def test_version_and_help() -> None:
    version = run_cli("--version").stdout.splitlines()
    assert version[0] == f"bluegreen {__version__}"  # the line scripts compare
    assert version[1].startswith("Python 3.") and "paramiko " in version[1]
    assert "missing" not in version[1]
    assert version[2].startswith("balancer drivers: nginx, haproxy, caddy")
    help_text = run_cli("--help").stdout
    for option in ("--inventory", "--json", "--verbose", "--no-color", "check"):
        assert option in help_text


def test_no_inventory_is_a_usage_error_in_json_too() -> None:
    result = run_cli("--json", "check")
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["error"]["code"] == "usage_error" and document["error"]["exit_code"] == 2


def test_unknown_command_is_a_usage_error() -> None:
    assert run_cli("frobnicate").returncode == 2


def test_help_does_not_import_heavy_libraries() -> None:
    import subprocess
    import sys

    code = ("import sys; sys.argv=['bluegreen','--help']\n"
            "from bluegreen.cli import app\n"
            "try: app()\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('paramiko','httpx','jinja2','msgspec','yaml') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_global_options_are_accepted_after_the_command() -> None:
    for args in (["status", "--json"], ["lock", "status", "--json", "-v"],
                 ["canary", "abort", "--reason", "bad release", "--json"]):
        result = run_cli("-i", "/nonexistent/inventory.yml", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert json.loads(result.stdout)["error"]["code"] == "inventory_error"
    after = run_cli("status", "-i", "/nonexistent/after.yml")  # -i after the command too
    assert after.returncode == 2 and "/nonexistent/after.yml" in after.stderr


def test_hoisting_keeps_the_values_of_the_commands_own_options() -> None:
    from bluegreen.cli.argv import CommandShape, hoist_global_options

    shapes = {("deploy",): CommandShape(group=False,
                                        options_with_value=frozenset({"--release"})),
              ("canary",): CommandShape(group=True),
              ("canary", "abort"): CommandShape(group=False,
                                                options_with_value=frozenset({"--reason"}))}

    def hoist(*args: str) -> list[str]:
        return hoist_global_options(args, lambda path: shapes.get(tuple(path)))

    assert hoist("deploy", "--json", "--release", "v2") == ["--json", "deploy", "--release", "v2"]
    assert hoist("-i", "a.yml", "deploy", "-v", "-i", "b.yml") == [
        "-i", "a.yml", "-v", "-i", "b.yml", "deploy"]  # the parser's last -i wins, as typed
    assert hoist("canary", "abort", "--reason", "-v", "-y") == [
        "-y", "canary", "abort", "--reason", "-v"]  # "-v" is the reason here
    assert hoist("deploy", "--", "--json") == ["deploy", "--", "--json"]
    assert hoist("nosuch", "--json") == ["nosuch", "--json"]  # the parser reports it
    assert hoist("deploy", "--inventory=c.yml") == ["--inventory=c.yml", "deploy"]
    assert hoist("--json", "deploy") == ["--json", "deploy"]
    assert hoist("deploy", "-vy", "-iprod.yml") == ["-vy", "-iprod.yml", "deploy"]
    assert hoist("deploy", "-vn") == ["deploy", "-vn"]  # not all global: left to the parser


def test_bash_completion_completes_commands_options_and_colours(tmp_path: Path) -> None:
    """The script `--show-completion bash` prints, sourced in a real bash, completes through the
    installed `bluegreen` command (as a user's shell would)."""
    command = Path(sys.executable).parent / "bluegreen"
    assert command.is_file(), "bluegreen is installed in the test environment"
    script = run_cli("--show-completion", "bash")
    assert script.returncode == 0 and "complete " in script.stdout, script.stderr
    (tmp_path / "completion.bash").write_text(script.stdout)
    driver = (
        "source \"$1\"\n"
        "complete_words() { COMP_WORDS=(\"$@\"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=();\n"
        "  _bluegreen_completion bluegreen; printf '%s\\n' \"${COMPREPLY[@]}\" ''; }\n"
        "complete_words bluegreen de\n"
        "complete_words bluegreen canary ''\n"
        "complete_words bluegreen deploy --re\n"
        "complete_words bluegreen switch --to ''\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")}
    env["PATH"] = f"{command.parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(["bash", "-c", driver, "bash", str(tmp_path / "completion.bash")],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    answers = [block.split("\n") for block in result.stdout.split("\n\n")]
    assert answers[0] == ["deploy"]
    assert {"status", "promote", "abort"} <= set(answers[1])
    assert set(answers[2]) >= {"--release", "--retire-after"}
    assert [a for a in answers[3] if a] == ["blue", "green"]
