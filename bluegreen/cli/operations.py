"""`deploy`, `switch` and `rollback`: the commands that move traffic."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from bluegreen.cli.common import app_context, reported_errors
from bluegreen.cli.options import DryRun, LockWait, Reason
from bluegreen.cli.render import canary_status as canary_status_result
from bluegreen.cli.render import operation_result, retire_result
from bluegreen.model import Colour

ColourChoice = Annotated[Optional[Colour],  # noqa: UP045 - typer reads the annotation
                         typer.Option("--to", help="Target colour (default: the idle one).")]


def deploy(
    ctx: typer.Context,
    release: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--release", "-r", help="Release id (default: a checksum of the source).")] = None,
    source: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--source", help="Release directory or .tar.gz (default: release.source).")] = None,
    sha256: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--sha256", metavar="HEX",
        help="With release.url: the checksum of the .tar.gz the hosts fetch (with --release)."
    )] = None,
    to: ColourChoice = None,
    retire_after: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--retire-after", metavar="DURATION",
        help="Then retire the old colour, draining its connections for up to DURATION "
             "(300, 90s, 5m).")] = None,
    canary: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--canary", metavar="PERCENT[,PERCENT…]",
        help="Give the new release only this share of the traffic (5), or the first of rising "
             "steps (5,25,50); each `bluegreen canary promote` moves to the next step, then to "
             "all of it; `abort` ends it.")] = None,
    step_pause: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--step-pause", metavar="DURATION",
        help="With a canary (--canary, or canary.steps): each step lasts DURATION (30s, 5m), "
             "then the next is taken by itself — judged first when canary: thresholds are set "
             "— until the canary is live or aborted.")] = None,
    no_canary: Annotated[bool, typer.Option(
        "--no-canary", help="Deploy straight to all the traffic, without the inventory's "
                            "canary.steps.")] = False,
    no_drain: Annotated[bool, typer.Option(
        "--no-drain", help="Stop the idle colour at once, cutting the connections it still "
                           "holds (they are counted), instead of draining them first "
                           "(app.drain, app.drain_timeout).")] = False,
    dry_run: DryRun = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Deploy a release to the idle colour, health-check it, flip traffic, verify."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.operations.canary import canary_steps
        from bluegreen.operations.deploy import deploy as run_deploy
        from bluegreen.operations.shared import Options
        from bluegreen.retire import parse_duration

        drain = parse_duration(retire_after, option="--retire-after") if retire_after else None
        steps = canary_steps(canary) if canary is not None else None
        pause = parse_duration(step_pause, option="--step-pause") if step_pause else None
        result = run_deploy(context.inventory(), context.reporter, source=source,
                            release=release, to=to, sha256=sha256,
                            options=Options(dry_run=dry_run, lock_wait=lock_wait,
                                            retire_after=drain, drain=not no_drain,
                                            canary=steps, step_pause=pause,
                                            no_canary=no_canary))
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
        from bluegreen.operations.flips import switch as run_switch
        from bluegreen.operations.shared import Options

        result = run_switch(context.inventory(), context.reporter, to=to,
                            options=Options(dry_run=dry_run, lock_wait=lock_wait))
        context.reporter.result(result, human=operation_result(result))


def rollback(
    ctx: typer.Context,
    restart: Annotated[bool, typer.Option(
        "--restart", help="Start a retired previous colour again first.")] = False,
    dry_run: DryRun = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Flip traffic back to the previous colour; starts no process (unless --restart)."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.operations.flips import rollback as run_rollback
        from bluegreen.operations.shared import Options

        result = run_rollback(context.inventory(), context.reporter, restart=restart,
                              options=Options(dry_run=dry_run, lock_wait=lock_wait))
        context.reporter.result(result, human=operation_result(result))


def retire(
    ctx: typer.Context,
    drain_timeout: Annotated[str, typer.Option(
        "--drain-timeout", metavar="DURATION",
        help="How long its connections may take to end (300, 90s, 5m).")] = "300",
    dry_run: DryRun = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Stop the idle colour once its connections have drained; it is then no rollback target."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.operations.flips import retire as run_retire
        from bluegreen.operations.shared import Options
        from bluegreen.retire import parse_duration

        result = run_retire(context.inventory(), context.reporter,
                            drain_timeout=parse_duration(drain_timeout, option="--drain-timeout"),
                            options=Options(dry_run=dry_run, lock_wait=lock_wait))
        context.reporter.result(result, human=retire_result(result))


canary_app = typer.Typer(help="A canary: a new release with part of the traffic.",
                         no_args_is_help=True)


@canary_app.command("status")
def canary_status(ctx: typer.Context) -> None:
    """The canary in progress: its colour, release and share of the traffic."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.queries import canary_status as run_status

        result = run_status(context.inventory(), context.reporter)
        context.reporter.result(result, human=canary_status_result(result))


@canary_app.command("promote")
def canary_promote(ctx: typer.Context, dry_run: DryRun = False,
                   lock_wait: LockWait = 0.0,
                   full: Annotated[bool, typer.Option(
                       "--full", help="All the traffic now, skipping the steps left.")] = False,
                   skip_analysis: Annotated[bool, typer.Option(
                       "--skip-analysis", help="Do not judge the canary against the "
                       "canary: thresholds first.")] = False,
                   ) -> None:
    """The canary's next step; after the last one (or with --full), all the traffic: its colour
    becomes live (verified). Steps with a timed pause (canary.steps, --step-pause) then follow
    by themselves."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.operations.canary import canary_promote as run_promote
        from bluegreen.operations.shared import Options

        result = run_promote(context.inventory(), context.reporter,
                             options=Options(dry_run=dry_run, lock_wait=lock_wait, full=full,
                                             skip_analysis=skip_analysis))
        context.reporter.result(result, human=operation_result(result))


@canary_app.command("pause")
def canary_pause(
    ctx: typer.Context,
    reason: Reason = None,
    dry_run: DryRun = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Hold the canary at its weight: timed steps wait for `canary resume` (a deploy stepping
    it stops at its next step); `canary promote` still moves it by hand."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.operations.canary import canary_pause as run_pause
        from bluegreen.operations.shared import Options

        result = run_pause(context.inventory(), context.reporter, reason=reason,
                           options=Options(dry_run=dry_run, lock_wait=lock_wait))
        context.reporter.result(result, human=operation_result(result))


@canary_app.command("resume")
def canary_resume(ctx: typer.Context, dry_run: DryRun = False,
                  lock_wait: LockWait = 0.0) -> None:
    """End a pause: at a timed step, wait its pause from now, then go on through the timed
    steps as a deploy does (judged first); at a manual step, wait for `canary promote`."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.operations.canary import canary_resume as run_resume
        from bluegreen.operations.shared import Options

        result = run_resume(context.inventory(), context.reporter,
                            options=Options(dry_run=dry_run, lock_wait=lock_wait))
        context.reporter.result(result, human=operation_result(result))


@canary_app.command("abort")
def canary_abort(
    ctx: typer.Context,
    reason: Reason = None,
    dry_run: DryRun = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Send all traffic back to the stable colour; the canary's colour is marked failed."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.operations.canary import canary_abort as run_abort
        from bluegreen.operations.shared import Options

        result = run_abort(context.inventory(), context.reporter, reason=reason,
                           options=Options(dry_run=dry_run, lock_wait=lock_wait))
        context.reporter.result(result, human=operation_result(result))
