"""What every command pays at start: libraries it does not need stay unimported. Each check
runs in a fresh interpreter, since this one has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys


def _modules_after(code: str, *names: str) -> list[str]:
    # a stand-in for a module imported on first use is not the module
    probe = (f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {names!r} "
             "if type(sys.modules.get(m)).__name__ == 'module')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_parsing_a_commands_options_does_not_import_pydantic() -> None:
    code = ("import sys; sys.argv = ['bluegreen', '-i', '/nonexistent.yml', 'rollback', '--yes']\n"
            "from bluegreen.cli import app\n"
            "try: app()\nexcept SystemExit: pass")
    assert _modules_after(code, "pydantic") == []


def test_paramiko_comes_without_invoke_until_ssh_config_runs_a_match_exec() -> None:
    code = "import bluegreen.transport.ssh, paramiko"
    assert _modules_after(code, "invoke", "unittest.mock", "asyncio") == []
    code += ("\nfrom paramiko.config import SSHConfig\n"
             "assert SSHConfig.from_text('Match exec true\\n  User deploy\\n')"
             ".lookup('app1')['user'] == 'deploy'")
    assert _modules_after(code, "invoke") == ["invoke"]


_INVENTORY = ("from pathlib import Path\n"
              "from bluegreen.inventory import validate_inventory\n"
              "inventory = validate_inventory({'service': 'shop', 'hosts': {"
              "'app': [{'name': 'app1', 'address': '10.0.0.11'}], "
              "'balancer': [{'name': 'lb1'}]}, 'verify': {'urls': VERIFY}}, "
              "path=Path('inv.yml'), environ={})\n")


def test_checks_on_the_hosts_need_no_http_client_here() -> None:
    code = ("VERIFY = []\n" + _INVENTORY
            + "from bluegreen.health import HealthChecker, import_ahead\n"
              "import_ahead(inventory); HealthChecker().close()\n"
              "import threading; [t.join() for t in threading.enumerate()[1:]]")
    assert _modules_after(code, "httpx") == []


def test_an_operation_that_verifies_imports_httpx_while_it_works_on_the_hosts() -> None:
    code = ("VERIFY = ['http://127.0.0.1:8080/']\n" + _INVENTORY
            + "from bluegreen.health import import_ahead\nimport threading\n"
              "import_ahead(inventory)\n"
              "[t.join() for t in threading.enumerate()[1:]]")
    assert _modules_after(code, "httpx", "httpcore") == ["httpcore", "httpx"]
