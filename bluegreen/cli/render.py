"""Human renderings of command results (JSON mode prints the data as is)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bluegreen.results import (
        BalancerStatus,
        CanaryStatus,
        CanaryView,
        DryRun,
        EndedElsewhere,
        LockReleased,
        LockState,
        Moved,
        Reloaded,
        RetireResult,
        Status,
    )


def operation_result(data: Moved | DryRun | EndedElsewhere) -> Any:
    from bluegreen.results import DryRun, EndedElsewhere

    def show(console: Any) -> None:
        if isinstance(data, DryRun):
            dry_run(data)(console)
            return
        from rich.markup import escape

        if isinstance(data, EndedElsewhere):
            console.print(f"the canary of release {escape(str(data.release))} was ended by "
                          "another operation; `bluegreen status` shows where traffic goes")
            return
        canary = data.canary
        if canary:
            console.print(f"[bold yellow]canary:[/bold yellow] {canary.colour} runs release "
                          f"{escape(str(canary.release))} with {canary.weight}% of the "
                          "traffic, "
                          f"{data.live} (live) {100 - canary.weight}%; generation "
                          f"{data.generation}")
            console.print(canary_next(canary), markup=False)
            return
        console.print(f"[bold green]{data.live} is live[/bold green] — release "
                      f"{escape(str(data.release))}, generation {data.generation}"
                      + (f"; {data.previous} keeps running for rollback"
                         if data.previous and data.previous != data.live else ""))
        if data.out_of_traffic:
            console.print(f"[yellow]out of traffic (unhealthy):[/yellow] "
                          f"{', '.join(data.out_of_traffic)}")

    return show


def dry_run(data: DryRun) -> Any:
    def show(console: Any) -> None:
        console.print("[bold]dry run — nothing was changed. Plan:[/bold]")
        for line in data.plan:
            style = ("green" if line.startswith("   +") and not line.startswith("   +++")
                     else "red" if line.startswith("   -") and not line.startswith("   ---")
                     else None)
            console.print(line, style=style, markup=False, highlight=False)

    return show


def retire_result(data: RetireResult | DryRun) -> Any:
    from bluegreen.results import DryRun

    def show(console: Any) -> None:
        if isinstance(data, DryRun):
            dry_run(data)(console)
            return
        cut = data.connections_cut
        console.print(f"{data.retired} retired"
                      + (f" (release {data.release})" if isinstance(data.release, str) else "")
                      + (f", {cut} connection(s) still open at the drain timeout closed "
                         "by the stop" if cut else ", every connection drained")
                      + f"; {data.live} stays live", markup=False)

    return show


def reload_result(data: Reloaded | DryRun) -> Any:
    from bluegreen.results import DryRun

    def show(console: Any) -> None:
        if isinstance(data, DryRun):
            dry_run(data)(console)
            return
        onto = (f" onto release {data.release} (was {data.replaced})" if data.replaced else "")
        console.print(f"{data.colour} reloaded in place{onto} on {len(data.hosts)} host(s) "
                      f"with SIG{data.signal} in {data.seconds:.2f} s", markup=False)

    return show


def canary_status(data: CanaryStatus) -> Any:
    def show(console: Any) -> None:
        canary = data.canary
        if canary is None:
            console.print("no canary in progress", markup=False)
            return
        steps = canary.steps or (canary.weight,)
        console.print(f"canary: {canary.colour} runs release {canary.release} with "
                      f"{canary.weight}% of the traffic since {canary.since}"
                      + (f" (steps {', '.join(map(str, steps))}%)" if len(steps) > 1
                         else ""), markup=False)
        if data.analysis:
            console.print(f"analysis: {data.analysis['described']}", markup=False)
        console.print(canary_next(canary), markup=False)

    return show


def canary_next(canary: CanaryView) -> str:
    """What the canary commands would do next."""
    weight, pause = canary.next_weight, canary.pause
    timed = (f"this step lasts {pause:g} s while a `deploy` or `canary promote` steps it; "
             if pause is not None else "")
    held = (f"held at this weight after {canary.breaches} breach(es) of its analysis in a "
            "row (canary.failure_limit); " if canary.breaches else "")
    if canary.paused_at:
        return (f"paused by {canary.paused_by} since {canary.paused_at}: {held}its timed "
                "steps wait for `bluegreen canary resume`; `bluegreen canary promote` takes the "
                "next step now; `bluegreen canary abort` sends it all back")
    return (f"next: {held}{timed}`bluegreen canary promote` gives it "
            + (f"{weight}%" if weight else "all the traffic")
            + "; `bluegreen canary abort` sends it all back")


def status_result(data: Status) -> Any:
    def show(console: Any) -> None:
        from rich.markup import escape
        from rich.table import Table

        live = data.live or "none"
        console.print(f"[bold]{data.service}[/bold]: live colour [bold]{live}[/bold], "
                      f"generation {data.generation}")
        if data.drift:
            console.print(f"[bold red]DRIFT: {data.drift}[/bold red]")
        operation = data.operation
        if operation:
            step = f" — step: {escape(operation.step)}" if operation.step else ""
            if operation.in_progress:
                console.print(f"[bold yellow]in progress:[/bold yellow] "
                              f"`{escape(operation.command)}` "
                              f"by {operation.by} since {operation.started}{step}",
                              markup=True, highlight=False)
                if operation.transient:
                    console.print(f"  (mid-operation: {operation.transient})", markup=False)
            else:
                console.print(f"[bold red]cut short:[/bold red] "
                              f"`{escape(operation.command)}` by "
                              f"{operation.by} since {operation.started}{step} never "
                              "finished (its process ended without cleaning up)",
                              markup=True, highlight=False)
        canary = data.canary
        if canary:
            steps = canary.steps or (canary.weight,)
            console.print(f"[yellow]canary:[/yellow] {escape(canary.colour)} runs release "
                          f"{escape(str(canary.release))} with {canary.weight}% of the "
                          f"traffic since {canary.since}"
                          + (f" (steps {', '.join(map(str, steps))}%)" if len(steps) > 1 else "")
                          + (f", paused by {escape(str(canary.paused_by))} since "
                             f"{canary.paused_at}" if canary.paused_at else "")
                          + " — `bluegreen canary promote` or `abort`")
        colours = Table(title="colours (recorded)", title_justify="left")
        for column in ("colour", "status", "release", "since", "note"):
            colours.add_column(column)
        for name, c in data.colours.items():
            note = c.error or ""
            if c.out_of_traffic:
                note = (f"out of traffic: {', '.join(c.out_of_traffic)}"
                        + (f"; {note}" if note else ""))
            if c.replaced and c.status in ("starting", "failed"):
                note = f"replacing {c.replaced}" + (f"; {note}" if note else "")
            status = c.status or "-"
            style = {"running": "green", "failed": "red", "starting": "yellow",
                     "stopping": "yellow"}.get(status)
            colours.add_row(f"{name} (live)" if name == data.live else name,
                            f"[{style}]{status}[/{style}]" if style else status,
                            escape(c.release or "-"), c.since or "-", escape(note))
        console.print(colours)
        balancers = Table(title="balancers", title_justify="left")
        for column in ("host", "kind", "state says", "file says", "serves", "still draining",
                       "drift"):
            balancers.add_column(column)
        for b in data.balancers:
            loaded = {True: ", loaded", False: ", NOT loaded", None: ""}[b.file_loaded]
            balancers.add_row(
                b.host, b.kind, f"{b.state_live or '-'} (gen {b.state_generation})",
                f"{b.file_colour} (gen {b.serving_generation}{loaded})"
                if b.file_colour else "-",
                b.serving or "?", escape(_draining(b)),
                f"[red]{escape(b.drift)}[/red]" if b.drift else "[green]none[/green]")
        console.print(balancers)
        if data.instances:
            instances = Table(title="instances", title_justify="left")
            for column in ("host", "colour", "port", "running", "healthy", "release",
                           "connections"):
                instances.add_column(column)
            for i in data.instances:
                colour = f"{i.colour} (live)" if i.live else i.colour
                if i.live and not i.in_traffic:
                    colour += " [red]out of traffic[/red]"
                instances.add_row(i.host, colour, str(i.port), _mark(i.running),
                                  _mark(i.healthy), i.release or "-",
                                  str(i.connections) if i.running else "-")
            console.print(instances)
        lock = data.lock
        if lock:
            stale = " [red](stale)[/red]" if lock.stale else ""
            console.print(f"lock: held by {lock.owner} running `{lock.command}` since "
                          f"{lock.started}{stale}", markup=True)
        else:
            console.print("lock: free")

    return show


def _draining(balancer: BalancerStatus) -> str:
    """What an earlier flip left on a balancer: old workers, sessions on the idle colour."""
    parts = []
    if balancer.old_workers:
        parts.append(f"{balancer.old_workers} old worker(s)")
    idle = {"blue": "green", "green": "blue"}.get(balancer.state_live or "")
    sessions = (balancer.sessions or {}).get(idle or "", 0)
    if sessions:
        parts.append(f"{sessions} session(s) on {idle}")
    return ", ".join(parts) or "-"


def history_result(records: list[dict[str, Any]]) -> Any:
    def show(console: Any) -> None:
        from rich.table import Table

        table = Table(title="history", title_justify="left")
        for column in ("finished", "operation", "from → to", "release", "result", "took",
                       "who"):
            table.add_column(column)
        for r in records:
            result = r.get("result", "?")
            if r.get("error"):
                result += f": {r['error'].get('code')}"
            finished = str(r.get("finished", "")).replace("T", " ").split("+")[0]
            table.add_row(finished, str(r.get("operation", "")),
                          f"{r.get('from') or '-'} → {r.get('to') or '-'}",
                          str(r.get("release") or "-"), result,
                          f"{r.get('duration_s', 0):.2f}s", str(r.get("who", "")))
        console.print(table)

    return show


def lock_result(data: LockState) -> Any:
    def show(console: Any) -> None:
        info = data.lock
        if info is None:
            console.print("lock: free")
        else:
            console.print(f"lock: held by {info.owner} (pid {info.pid} on {info.host}) "
                          f"running `{info.command}` since {info.started}"
                          + (" — STALE" if info.stale else ""), markup=False)

    return show


def lock_released(data: LockReleased) -> Any:
    def show(console: Any) -> None:
        console.print(f"lock released (was {data.previous_holder})" if data.released
                      else "no lock was held", markup=False)

    return show


def _mark(value: bool | None) -> str:
    return {True: "✓", False: "✗", None: "-"}[value]
