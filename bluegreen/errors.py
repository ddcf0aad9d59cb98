"""The error tree. Each error carries its exit code, a stable code for JSON, where it happened and a
hint saying what to do. Imports nothing from bluegreen."""

from __future__ import annotations

from typing import ClassVar


class BluegreenError(Exception):
    exit_code: ClassVar[int] = 1
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def paragraph(self) -> str:
        """One paragraph for a human: where, what, what to do."""
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "exit_code": self.exit_code,
            "message": self.message,
            "where": self.where,
            "hint": self.hint,
        }


class UsageError(BluegreenError):
    exit_code = 2
    code = "usage_error"


class InventoryError(UsageError):
    code = "inventory_error"


class TemplateError(UsageError):
    code = "template_error"


class ConnectError(BluegreenError):
    exit_code = 3
    code = "connect_error"


class HostKeyError(ConnectError):
    code = "host_key_error"


class AuthError(ConnectError):
    code = "auth_error"


class ForwardingRefused(ConnectError):
    """sshd will not forward a port (AllowTcpForwarding no): health checks through SSH fail."""

    code = "forwarding_refused"


class CommandTimeout(ConnectError):
    code = "command_timeout"


class RemoteCommandFailed(BluegreenError):
    """A remote command the operation depends on exited non-zero; `detail` is what it said."""

    code = "remote_command_failed"

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None,
                 detail: str = ""):
        super().__init__(message, where=where, hint=hint)
        self.detail = detail


class LockHeld(BluegreenError):
    exit_code = 4
    code = "lock_held"


class HealthCheckFailed(BluegreenError):
    exit_code = 5
    code = "health_check_failed"


class StartFailed(HealthCheckFailed):
    """The target colour could not be stood up on a host: upload, stop, pointer or start."""

    code = "start_failed"


class ReloadFailed(BluegreenError):
    """An in-place worker reload did not complete on a host (stale pid file, workers not
    replaced in time, unhealthy afterwards)."""

    exit_code = 5
    code = "reload_failed"


class BalancerError(BluegreenError):
    exit_code = 6
    code = "balancer_error"


class VerifyFailed(BluegreenError):
    exit_code = 7
    code = "verify_failed"


class RollbackImpossible(BluegreenError):
    exit_code = 8
    code = "rollback_impossible"


class DriftError(BluegreenError):
    exit_code = 9
    code = "drift"


class HookFailed(BluegreenError):
    """A pre_* hook failed: the operation was stopped before it changed anything."""

    exit_code = 10
    code = "hook_failed"


class StateError(BluegreenError):
    """The state, history or lock on a balancer host could not be read or written (disk full,
    permissions, a corrupt file)."""

    exit_code = 11
    code = "state_error"


class CanaryInProgress(BluegreenError):
    """A canary splits traffic: deploy and rollback wait for `canary promote` or `abort`."""

    exit_code = 12
    code = "canary_in_progress"


class NoCanary(UsageError):
    """A canary command with no canary in progress (or not the one it was about)."""


class CanaryNotJudged(CanaryInProgress):
    """`canary promote` with analysis configured, before the canary answered enough requests
    to be judged (or without the counters to judge from): it stays where it is."""

    code = "canary_not_judged"

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None,
                 waiting_helps: bool = True):
        super().__init__(message, where=where, hint=hint)
        self.waiting_helps = waiting_helps  # more traffic can make it judgeable


class CanaryHeld(CanaryInProgress):
    """The analysis found the canary over a threshold, within `canary.failure_limit` breaches
    in a row: it stays at its weight, to be judged again on the traffic from now on."""

    code = "canary_held"


class CanaryAborted(BluegreenError):
    """The analysis found the canary over a threshold: all traffic went back to the stable
    colour and the canary's colour was marked failed."""

    exit_code = 13
    code = "canary_aborted"


class Interrupted(BluegreenError):
    exit_code = 130
    code = "interrupted"


class HostFailure:
    """One host's failure inside a fan-out."""

    def __init__(self, host: str, step: str, error: BluegreenError):
        self.host = host
        self.step = step
        self.error = error


class FanOutError(BluegreenError):
    """Several hosts failed in one parallel step; every failure is kept, not just the first.
    Its exit code and JSON code are those of the failure that decides (`deciding`)."""

    def __init__(self, step: str, failures: list[HostFailure]):
        hosts = ", ".join(f.host for f in failures)
        super().__init__(f"{step} failed on {len(failures)} host(s): {hosts}.")
        self.step = step
        self.failures = failures

    @property
    def deciding(self) -> BluegreenError:
        """The failure that names the whole: the first host's (hosts are reported in inventory
        order), except that a mix of unreachable and failing hosts is first of all a connection
        problem."""
        errors = [f.error for f in self.failures]
        return next((e for e in errors if e.exit_code == 3), errors[0])

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return self.deciding.exit_code

    @property
    def code(self) -> str:  # type: ignore[override]
        return self.deciding.code

    def paragraph(self) -> str:
        lines = [super().paragraph()]
        for failure in self.failures:
            error = failure.error
            text = (error.paragraph() if error.where != failure.host
                    else error.message + (f" {error.hint}" if error.hint else ""))
            lines.append(f"  {failure.host} [{failure.step}]: {text}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        data = super().to_dict()
        data["exit_code"] = self.exit_code
        data["failures"] = [
            {"host": f.host, "step": f.step, **f.error.to_dict()} for f in self.failures
        ]
        return data

