"""Hooks: the inventory's commands run at fixed points of an operation — pre_deploy,
post_deploy, pre_flip, post_flip, post_rollback, pre/post_reload, pre/post_retire, pre/post_step
(a canary's weight changes), on_abort (a canary aborted), on_failure —
on this machine or on every host of a role, with environment variables describing the
operation. They run inside the lock.

A failing pre_* hook stops the operation before it changes anything (exit 10); a failing post_*,
on_abort or on_failure hook is reported and recorded, and undoes nothing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from bluegreen.errors import BluegreenError, CommandTimeout, HookFailed
from bluegreen.fanout import fan_out
from bluegreen.inventory import Hook, Inventory
from bluegreen.output import Reporter
from bluegreen.shell import Command
from bluegreen.state import ci_job_url
from bluegreen.transport.base import Transport
from bluegreen.transport.local import LocalTransport


@dataclass
class HookRunner:
    """Runs the hooks of one operation and remembers their outcomes for the history."""

    inventory: Inventory
    connections: Any  # Connections (for remote hooks)
    reporter: Reporter
    command: str
    environment: dict[str, str] = field(default_factory=dict)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    _running: list[tuple[Transport, str]] = field(default_factory=list)  # remote hooks now

    def stop_running(self, which: list[tuple[Transport, str]] | None = None) -> None:
        """End remote hooks still running (all of them, after an interrupt), with what they
        started; local hooks end with the interrupt itself (their process group is killed)."""
        for transport, pid_file in list(self._running if which is None else which):
            if (transport, pid_file) in self._running:
                self._running.remove((transport, pid_file))
            try:
                result = transport.run(Command.script(_STOP, pid_file), timeout=10)
                stopped, detail = result.ok, result.tail() or "no output"
            except BluegreenError as error:
                stopped, detail = False, error.message
            if stopped:
                said = "" if detail == "no output" else f" ({detail})"
                self.reporter.step(transport.host, f"running hook stopped{said}", ok=False)
            else:
                self.reporter.warn(f"{transport.host}: could not stop the running hook "
                                   f"(pid file {pid_file}): {detail}")

    def describe(self, **values: str | None) -> None:
        """Set the BLUEGREEN_* variables hooks see (release, from, to, …)."""
        for name, value in values.items():
            self.environment[f"BLUEGREEN_{name.upper()}"] = value or ""

    def run(self, point: str) -> None:
        hooks: list[Hook] = getattr(self.inventory.hooks, point)
        if not hooks:
            return
        self.reporter.phase(f"hooks: {point}")
        env = self._environment(point)
        for index, hook in enumerate(hooks):
            try:
                where = self._run_one(hook, env)
            except BluegreenError as error:
                self.outcomes.append({"hook": point, "index": index, "on": hook.on, "ok": False,
                                      "error": error.message})
                if point.startswith("pre_"):
                    raise HookFailed(
                        f"{point} hook #{index + 1} (`{hook.run}` on {hook.on}) failed: "
                        f"{error.message}",
                        where=error.where,
                        hint="Nothing was changed. Fix the hook or what it checks, then retry.",
                    ) from None
                self.reporter.warn(f"{point} hook #{index + 1} (`{hook.run}`) failed: "
                                   f"{error.paragraph()} (recorded; nothing is undone)")
                continue
            self.outcomes.append({"hook": point, "index": index, "on": hook.on, "ok": True})
            self.reporter.step(where, f"{point} hook #{index + 1} ok", ok=True)

    def _environment(self, point: str) -> dict[str, str]:
        return {
            "BLUEGREEN_SERVICE": self.inventory.service,
            "BLUEGREEN_COMMAND": self.command,
            "BLUEGREEN_HOOK": point,
            "BLUEGREEN_APP_HOSTS": ",".join(h.name for h in self.inventory.hosts.app),
            "BLUEGREEN_BALANCER_HOSTS": ",".join(h.name for h in self.inventory.hosts.balancer),
            "BLUEGREEN_CI_JOB": ci_job_url() or "",
            **self.environment,
        }

    def _run_one(self, hook: Hook, env: dict[str, str]) -> str:
        """Run `hook` here or on every host of its role; BluegreenError if it fails anywhere.
        On a host it runs in a session of its own whose id is left in a pid file, so that an
        interrupt can end it with everything it started (`stop_running`)."""
        def run_on(transport: Transport) -> None:
            if isinstance(transport, LocalTransport):
                result = transport.run(Command("sh", "-c", hook.run, env=env),
                                       timeout=hook.timeout)
            else:
                pid_file = f"/tmp/bluegreen-hook-{uuid.uuid4().hex}"  # hosts may share /tmp
                running = (transport, pid_file)
                self._running.append(running)
                try:
                    result = transport.run(
                        Command.script(_SUPERVISED, hook.run, pid_file, env=env),
                        timeout=hook.timeout)
                except CommandTimeout:
                    self.stop_running([running])  # not left running past its timeout
                    raise
                except Exception:
                    self._running.remove(running)
                    raise
                # (an interrupt leaves it listed: the operation's cleanup stops it)
                self._running.remove(running)
            if not result.ok:
                raise BluegreenError(
                    f"exited {result.exit_status}: {result.tail() or 'no output'}",
                    where=transport.host)

        if hook.on == "local":
            run_on(LocalTransport("local"))
            return "local"
        hosts = self.inventory.hosts.app if hook.on == "app" else self.inventory.hosts.balancer
        fan_out(hosts, lambda host: run_on(self.connections[host.name]), step="hook",
                name=lambda h: h.name, parallelism=self.inventory.ssh.parallelism)
        return f"{hook.on} hosts"


# The hook in its own session (setsid: its pid is its process group), that pid in "$2".
_SUPERVISED = ('setsid sh -c "$1" </dev/null & pid=$!; printf %s "$pid" > "$2"; '
               'wait "$pid"; status=$?; rm -f -- "$2"; exit "$status"')
# dash's kill takes no "--": "-PID" right after the signal names the process group
_STOP = ('pid=$(cat -- "$1" 2>/dev/null) || { echo "it had already ended"; exit 0; }; '
         'rm -f -- "$1"; kill -TERM "-$pid"')
