"""The command line — the only typer importer; nothing imports cli. One thin file per command,
registered here. Heavy libraries (paramiko, httpx, jinja2, msgspec) load inside commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from bluegreen.cli import check as check_command
from bluegreen.cli import lifecycle, operations, queries, setup
from bluegreen.cli.argv import click_lookup, hoist_global_options
from bluegreen.cli.common import AppContext


class _Commands(TyperGroup):
    """The root command: global options are also accepted after the command name."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        return super().parse_args(ctx, hoist_global_options(args, click_lookup(self)))


app = typer.Typer(
    cls=_Commands,
    name="bluegreen",
    help="Zero-downtime blue/green deployments over plain SSH.",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from bluegreen.versions import version_lines

        for line in version_lines():
            typer.echo(line)
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    inventory: Annotated[
        Optional[Path],  # noqa: UP045 - typer needs Optional on 3.9-style introspection
        typer.Option("-i", "--inventory", envvar="BLUEGREEN_INVENTORY",
                     help="Inventory file (YAML).", show_default=False),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show details.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="Plain output.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    ctx.obj = AppContext(
        inventory_path=inventory, json_output=json_output, yes=yes, verbose=verbose,
        color=not no_color,
    )


app.command("deploy")(operations.deploy)
app.command("switch")(operations.switch)
app.command("rollback")(operations.rollback)
app.command("reload")(lifecycle.reload)
app.command("retire")(operations.retire)
app.command("status")(queries.status)
app.command("history")(queries.history)
app.add_typer(queries.lock_app, name="lock")
app.add_typer(operations.canary_app, name="canary")
app.command("check")(check_command.check)
app.command("init")(setup.init)
app.command("schema")(setup.schema)


def main() -> None:
    try:
        app(prog_name="bluegreen")
    except KeyboardInterrupt:  # outside any command body
        sys.stderr.write("interrupted\n")
        code: int | str | None = 130
    except SystemExit as exit_:
        code = exit_.code
    else:
        code = 0
    # Every command has released its lock and closed its connections by now. Tearing down the
    # interpreter (paramiko's and OpenSSL's finalizers) would add ~0.15 s to every run, which
    # rollback cannot afford: flush and leave.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)
