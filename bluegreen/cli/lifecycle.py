"""`reload`: in-place graceful worker reload of a colour."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from bluegreen.cli.common import app_context, reported_errors
from bluegreen.cli.options import DryRun, LockWait
from bluegreen.cli.render import reload_result


def reload(
    ctx: typer.Context,
    colour: Annotated[str, typer.Option(
        "--colour", help="live, idle, blue or green.")] = "live",
    signal: Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer reads the annotation
        "--signal", help="Signal to send (default: app.reload_signal).")] = None,
    parallel: Annotated[int, typer.Option("--parallel", min=1,
                                          help="Hosts reloaded at once.")] = 1,
    task_workers: Annotated[bool, typer.Option(
        "--task-workers", help="Reload only task workers (app.task_reload_signal).")] = False,
    source: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--source", help="Upload this directory or .tar.gz as a new release and reload onto "
                         "it (each host's pointer moves before its signal).")] = None,
    release: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--release", help="The release id (with --source), or a release already on the "
                          "hosts to reload onto (e.g. back to the previous one).")] = None,
    dry_run: DryRun = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Reload a colour's workers in place, one host at a time, verifying each (code-only
    changes; use deploy for runtime, extension or setting changes)."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.worker_reload import COLOUR_CHOICES, reload_workers

        if colour not in COLOUR_CHOICES:
            from bluegreen.errors import UsageError

            raise UsageError(f"unknown colour {colour!r}.", where="--colour",
                             hint=f"Use one of: {', '.join(COLOUR_CHOICES)}.")
        result = reload_workers(context.inventory(), context.reporter, colour=colour,
                                signal=signal, parallel=parallel, task_workers=task_workers,
                                lock_wait=lock_wait, dry_run=dry_run, source=source,
                                release=release)
        context.reporter.result(result, human=reload_result(result))
