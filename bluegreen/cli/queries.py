"""`status`, `history` and `lock`: read-only views, and breaking a stale lock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from bluegreen.cli.common import AppContext, app_context, reported_errors
from bluegreen.cli.render import history_result, lock_released, lock_result, status_result
from bluegreen.shell import redact

if TYPE_CHECKING:
    from bluegreen.results import Status

DRIFT_EXIT = 9

lock_app = typer.Typer(help="Show or release the operation lock.", no_args_is_help=True)


def status(
    ctx: typer.Context,
    watch: Annotated[bool, typer.Option(
        "--watch", "-w", help="Refresh every second until Ctrl-C (with --json: one JSON "
                              "document per line, per refresh).")] = False,
) -> None:
    """Live colour per balancer (drift shown loudly), every instance, and the lock."""
    context = app_context(ctx)
    if watch:
        _watch(context)
        return
    with reported_errors(context):
        from bluegreen.queries import status as run_status

        result = run_status(context.inventory(), context.reporter)
        context.reporter.result(result, human=status_result(result))
    if result.drift:
        raise typer.Exit(DRIFT_EXIT)


def _watch(context: AppContext) -> None:
    """Ctrl-C is how a watch ends: exit 0."""
    import json
    import sys

    from bluegreen.output import json_default
    from bluegreen.queries import watch_status

    def as_json_line(data: Status) -> None:
        sys.stdout.write(redact(json.dumps({"data": data}, default=json_default)) + "\n")
        sys.stdout.flush()

    context.progress = False  # the live view is the progress
    try:
        with reported_errors(context):
            inventory = context.inventory()
            if context.json_output:
                watch_status(inventory, context.reporter, show=as_json_line)
                return
            from rich.console import Console, Group
            from rich.live import Live

            console = Console(no_color=None if context.color else True)  # None: NO_COLOR
            with Live(console=console, auto_refresh=False, screen=False) as live:
                def show(data: Status) -> None:
                    collected = _Collected()
                    status_result(data)(collected)
                    live.update(Group(*collected.items), refresh=True)

                watch_status(inventory, context.reporter, show=show)
    except typer.Exit as exit_:
        if exit_.exit_code != 130:  # Ctrl-C ends a watch normally
            raise


class _Collected:
    """A stand-in console that keeps what a renderer prints, for a live view."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def print(self, item: Any = "", *, markup: bool = True, **_: Any) -> None:
        from rich.text import Text

        self.items.append(Text.from_markup(item) if isinstance(item, str) and markup
                          else Text(item) if isinstance(item, str) else item)


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
        context.reporter.result(info, human=lock_result(info))


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
        context.reporter.result(result, human=lock_released(result))
