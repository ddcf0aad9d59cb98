from __future__ import annotations

import json

from bluegreen import __version__
from tests.conftest import run_cli


def test_version_and_help() -> None:
    assert run_cli("--version").stdout.strip() == f"bluegreen {__version__}"
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
