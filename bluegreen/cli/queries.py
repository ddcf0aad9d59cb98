"""`status`, `history` and `lock`: read-only views, and breaking a stale lock."""

from __future__ import annotations

from typing import Annotated

import typer

from bluegreen.cli.common import app_context, reported_errors
from bluegreen.cli.render import history_result, status_result

DRIFT_EXIT = 9

lock_app = typer.Typer(help="Show or release the operation lock.", no_args_is_help=True)


def status(ctx: typer.Context) -> None:
    """Live colour per balancer (drift shown loudly), every instance, and the lock."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.queries import status as run_status

        result = run_status(context.inventory(), context.reporter)
        context.reporter.result(result, human=status_result(result))
    if result["drift"]:
        raise typer.Exit(DRIFT_EXIT)


def history(
    ctx: typer.Context,
    count: Annotated[int, typer.Option("-n", min=1, help="How many records.")] = 20,
) -> None:
    """The last operations: who, what, from → to, release, result, duration."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.queries import history as run_history

        records = run_history(context.inventory(), context.reporter, limit=count)
        context.reporter.result(records, human=history_result(records))


@lock_app.command("status")
def lock_status(ctx: typer.Context) -> None:
    """Who holds the lock, since when, and whether it looks stale."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.queries import lock_status as run_lock_status

        info = run_lock_status(context.inventory(), context.reporter)

        def show(console: object) -> None:
            if info is None:
                console.print("lock: free")  # type: ignore[attr-defined]
            else:
                console.print(  # type: ignore[attr-defined]
                    f"lock: held by {info['owner']} (pid {info['pid']} on {info['host']}) "
                    f"running `{info['command']}` since {info['started']}"
                    + (" — STALE" if info["stale"] else ""), markup=False)

        context.reporter.result({"lock": info}, human=show)


@lock_app.command("release")
def lock_release(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Break a lock that looks alive.")] = False,
) -> None:
    """Remove a stale lock (one whose holder died); --force for any lock."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.queries import lock_release as run_lock_release

        result = run_lock_release(context.inventory(), context.reporter, force=force)

        def show(console: object) -> None:
            text = (f"lock released (was {result['previous_holder']})" if result["released"]
                    else "no lock was held")
            console.print(text, markup=False)  # type: ignore[attr-defined]

        context.reporter.result(result, human=show)
