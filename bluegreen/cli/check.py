"""`bluegreen check`: validate the inventory, reach every host, and report readiness per host."""

from __future__ import annotations

import typer

from bluegreen.cli.common import app_context, reported_errors


def check(ctx: typer.Context) -> None:
    """Validate the inventory and check every host: connection, sudo, balancer, state dir, ports."""
    context = app_context(ctx)
    with reported_errors(context):
        from bluegreen.checks import exit_code_for, run_checks

        inventory = context.inventory()
        reporter = context.reporter
        reporter.phase(f"checking {len(inventory.all_hosts)} host(s) of {inventory.service}")
        rows = run_checks(inventory)
        code = exit_code_for(rows)
        from bluegreen.versions import remember_drivers

        remember_drivers(inventory.service, {
            row.host: f"{row.check.removesuffix(' installed')} {row.version}"
            for row in rows if row.version})
        data = {"service": inventory.service, "ok": code == 0, "exit_code": code,
                "checks": [row.to_dict() for row in rows]}
        human = None
        if not reporter.json_mode:
            human = reporter.table(  # type: ignore[attr-defined]
                f"bluegreen check — {inventory.service}", ["host", "check", "", "detail"],
                [(r.host, r.check, "!" if r.warning else "✓" if r.ok else "✗", r.detail)
                 for r in rows])
        reporter.result(data, human=human)
    if code:
        raise typer.Exit(code)
