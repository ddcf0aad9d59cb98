"""The module boundaries the architecture rests on: one importer per third-party library, and an
orchestrator that never names a balancer driver (drivers hand out their own activation)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "bluegreen"

ONLY_IMPORTERS = {
    "paramiko": {"transport/ssh/"},
    "httpx": {"health.py", "prometheus.py"},
    "jinja2": {"render.py"},
    "msgspec": {"inventory/model.py", "inventory/validate.py", "results.py"},
    "yaml": {"inventory/yaml_text.py"},
    "typer": {"cli/"},
    "rich": {"cli/", "output.py", "progress.py"},
    "bluegreen.balancer.nginx": {"balancer/"},
    "bluegreen.balancer.haproxy": {"balancer/"},
    "bluegreen.balancer.caddy": {"balancer/"},
    "bluegreen.cli": {"cli/", "__main__.py"},
}


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_each_library_and_driver_has_its_only_importers() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        for name in imports(path):
            for module, allowed in ONLY_IMPORTERS.items():
                if (name == module or name.startswith(module + ".")) and not any(
                        where == a or (a.endswith("/") and where.startswith(a))
                        for a in allowed):
                    offenders.append(f"{where} imports {name}")
    assert offenders == []


def test_the_ssh_transport_reads_inventory_structs_only_to_resolve_its_target() -> None:
    readers = sorted(path.relative_to(PACKAGE).as_posix()
                     for path in (PACKAGE / "transport" / "ssh").glob("*.py")
                     if any(name == "bluegreen.inventory" or name.startswith("bluegreen.inventory.")
                            for name in imports(path)))
    assert readers == ["transport/ssh/target.py"]
