"""`init` (a first inventory) and `schema` (the inventory's JSON Schema, or its Markdown
reference)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from bluegreen.cli.common import app_context, reported_errors


def init(
    ctx: typer.Context,
    environment: Annotated[str, typer.Option(
        "--env", help="Environment name: the file is inventories/ENV.yml.")] = "production",
    service: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--service", help="Service name (default: this directory's name).")] = None,
    balancer: Annotated[str, typer.Option(
        "--balancer", help="nginx or haproxy.")] = "nginx",
    app_server: Annotated[str, typer.Option(
        "--app", help="gunicorn, swoole or systemd.")] = "gunicorn",
    hosts: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--hosts", help="App hosts, comma-separated.")] = None,
    balancer_host: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--balancer-host", help="Balancer hosts, comma-separated.")] = None,
    directory: Annotated[Path, typer.Option(
        "--dir", help="Where inventories live.")] = Path("inventories"),
) -> None:
    """Write a commented, valid inventory (and the schema your editor checks it with); never
    overwrites a file."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.errors import UsageError
        from bluegreen.inventory import parse_yaml, validate_inventory
        from bluegreen.scaffold import APPS, BALANCERS, Choices, inventory_text
        from bluegreen.schema import schema_text

        for value, allowed, option in ((balancer, BALANCERS, "--balancer"),
                                       (app_server, APPS, "--app")):
            if value not in allowed:
                raise UsageError(f"{value!r} is not one of {', '.join(allowed)}.", where=option)
        interactive = sys.stdin.isatty() and not context.json_output
        if hosts is None and interactive:
            hosts = typer.prompt("App hosts (comma-separated)", default="app1,app2")
        if balancer_host is None and interactive:
            balancer_host = typer.prompt("Balancer hosts (comma-separated)", default="lb1")
        target = directory / f"{environment}.yml"
        schema = directory / "inventory.schema.json"
        choices = Choices(
            service=service or _service_name(Path.cwd().name), environment=environment,
            balancer=balancer, app=app_server, app_hosts=_names(hosts or "app1,app2", "--hosts"),
            balancer_hosts=_names(balancer_host or "lb1", "--balancer-host"),
            schema=schema.name)
        if target.exists():
            raise UsageError(f"{target} already exists; init never overwrites a file.",
                             where="--env", hint="Pick another --env, or edit that file.")
        text = inventory_text(choices)
        validate_inventory(parse_yaml(text, source=str(target)), path=target,
                           environ={})  # valid as written
        directory.mkdir(parents=True, exist_ok=True)
        with target.open("x") as handle:
            handle.write(text)
        wrote = [str(target)]
        if not schema.exists():
            schema.write_text(schema_text())
            wrote.append(str(schema))
        result = {"written": wrote, "inventory": str(target)}

        def show(console: Any) -> None:
            for path in wrote:
                console.print(f"wrote {path}", markup=False)
            console.print(f"next: edit {target}, then `bluegreen -i {target} check`",
                          markup=False)

        context.reporter.result(result, human=show)


def schema(
    ctx: typer.Context,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="Print the Markdown reference of every key instead "
        "(docs/inventory.md).")] = False,
) -> None:
    """Print the inventory's JSON Schema (for editors: `# yaml-language-server: $schema=…`)."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.schema import inventory_reference, schema_text

        sys.stdout.write(inventory_reference() if markdown else schema_text())


def _names(text: str, option: str) -> tuple[str, ...]:
    from bluegreen.errors import UsageError

    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise UsageError("name at least one host.", where=option)
    return names


def _service_name(directory: str) -> str:
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]", "-", directory).strip("-._") or "service"
    return name[:64]
