"""`deploy`, `switch` and `rollback`: the commands that move traffic."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from bluegreen.cli.common import app_context, reported_errors
from bluegreen.cli.options import DryRun, LockWait
from bluegreen.cli.render import operation_result
from bluegreen.model import Colour

ColourChoice = Annotated[Optional[Colour],  # noqa: UP045 - typer reads the annotation
                         typer.Option("--to", help="Target colour (default: the idle one).")]


def deploy(
    ctx: typer.Context,
    release: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--release", "-r", help="Release id (default: a checksum of the source).")] = None,
    source: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--source", help="Release directory or .tar.gz (default: release.source).")] = None,
    to: ColourChoice = None,
    dry_run: DryRun = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Deploy a release to the idle colour, health-check it, flip traffic, verify."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.operations import Options
        from bluegreen.operations import deploy as run_deploy

        result = run_deploy(context.inventory(), context.reporter, source=source,
                            release=release, to=to,
                            options=Options(dry_run=dry_run, lock_wait=lock_wait))
        context.reporter.result(result, human=operation_result(result))


def switch(
    ctx: typer.Context,
    to: Annotated[Colour, typer.Option("--to", help="Colour to send traffic to.")],
    dry_run: DryRun = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Flip traffic to a colour that is running and healthy (also reconciles drift)."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.operations import Options
        from bluegreen.operations import switch as run_switch

        result = run_switch(context.inventory(), context.reporter, to=to,
                            options=Options(dry_run=dry_run, lock_wait=lock_wait))
        context.reporter.result(result, human=operation_result(result))


def rollback(
    ctx: typer.Context,
    dry_run: DryRun = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Flip traffic back to the previous colour; starts no process."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.operations import Options
        from bluegreen.operations import rollback as run_rollback

        result = run_rollback(context.inventory(), context.reporter,
                              options=Options(dry_run=dry_run, lock_wait=lock_wait))
        context.reporter.result(result, human=operation_result(result))
