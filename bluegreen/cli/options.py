"""Option aliases shared by several commands."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")]
LockWait = Annotated[
    float,
    typer.Option("--lock-wait", metavar="SECONDS", min=0,
                 help="Wait this long for a running operation's lock instead of failing."),
]
Reason = Annotated[Optional[str],  # noqa: UP045 (typer reads the annotation at run time)
                   typer.Option("--reason", help="Why, for the history.")]
