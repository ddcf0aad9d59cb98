"""What every command shares: the global options, loading the inventory, and the one place where
errors become messages and exit codes."""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from bluegreen.errors import BluegreenError, Interrupted, UsageError

if TYPE_CHECKING:
    from bluegreen.inventory import Inventory
    from bluegreen.output import Reporter


@dataclass
class AppContext:
    inventory_path: Path | None
    json_output: bool
    yes: bool
    verbose: bool
    color: bool
    progress: bool = True  # a spinner and upload rates on a terminal (not under a live view)
    _reporter: Reporter | None = field(default=None, repr=False)

    @property
    def reporter(self) -> Reporter:
        if self._reporter is None:
            from bluegreen.output import HumanReporter, JsonReporter

            self._reporter = (JsonReporter(verbose=self.verbose) if self.json_output
                              else HumanReporter(color=self.color, verbose=self.verbose,
                                                 progress=self.progress))
        return self._reporter

    def inventory(self) -> Inventory:
        from bluegreen.inventory import load_inventory

        if self.inventory_path is None:
            raise UsageError(
                "no inventory given.",
                hint="Pass -i inventories/NAME.yml or set BLUEGREEN_INVENTORY.",
            )
        return load_inventory(self.inventory_path)


def app_context(ctx: typer.Context) -> AppContext:
    obj = ctx.find_root().obj
    assert isinstance(obj, AppContext)
    return obj


@contextmanager
def reported_errors(context: AppContext) -> Iterator[None]:
    """Run a command body: errors are reported once, in the chosen mode, with their exit code.
    SIGTERM is treated like Ctrl-C so cleanup (lock release, restore) runs on both; a second
    signal is ignored so it cannot cut that cleanup short."""
    from bluegreen.cancel import SIGNALS, interrupt_once

    previous = {sig: signal.signal(sig, interrupt_once) for sig in SIGNALS}
    reporter = context.reporter
    try:
        yield
    except BluegreenError as exc:
        from bluegreen.output import ci_annotation

        reporter.error(exc, details=getattr(exc, "details", None))
        ci_annotation(exc)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        interrupted = Interrupted("interrupted; live traffic was left as it was.")
        reporter.error(interrupted)
        raise typer.Exit(interrupted.exit_code) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        error = BluegreenError(
            f"internal error: {type(exc).__name__}: {exc}",
            hint="This is a bug in bluegreen; rerun with -v for the traceback and report it.",
        )
        reporter.error(error, details=traceback.format_exc())
        raise typer.Exit(1) from None
    finally:
        reporter.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.stdout.flush()
