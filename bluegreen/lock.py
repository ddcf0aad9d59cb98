"""The operation lock on the primary balancer, under the service's state directory: ``lock/`` is
created with an atomic ``mkdir``; ``owner.json`` inside says who, since when and what,
``heartbeat``'s mtime (on the host's own clock) says the holder is alive."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from bluegreen.errors import BluegreenError, LockHeld
from bluegreen.shell import Command
from bluegreen.state import actor, now
from bluegreen.store import StateStore, state_errors
from bluegreen.transport.base import CommandResult
from bluegreen.waiting import poll_until


@dataclass(frozen=True)
class LockInfo:
    owner: str
    pid: int
    host: str
    command: str
    started: str
    token: str
    heartbeat_age: float | None = None

    def describe(self) -> str:
        age = f", last heartbeat {self.heartbeat_age:.0f} s ago" if self.heartbeat_age is not None \
            else ""
        return (f"held by {self.owner} (pid {self.pid} on {self.host}) running "
                f"`{self.command}` since {self.started}{age}")


# A lock whose owner file could not be written (disk full) is removed at once: an empty owner
# would block every later operation as "held by unknown". $3: a command run once the lock is
# taken (a rendered `Command`, or ""), whose output is the caller's to judge.
_ACQUIRE = (
    'mkdir -m 700 -p -- "$1" || exit 74; '
    'err=$(mkdir -m 700 -- "$2" 2>&1) || { [ -d "$2" ] && exit 75; echo "$err" >&2; exit 74; }; '
    'if cat > "$2/owner.json" && touch -- "$2/heartbeat"; then '
    '[ -z "$3" ] || eval "$3" </dev/null; exit 0; fi; '
    'rm -rf -- "$2"; exit 74'
)
_READ_LOCK = (
    'if [ -d "$1" ]; then cat -- "$1/owner.json" 2>/dev/null; echo; '
    'if [ -f "$1/heartbeat" ]; then echo $(( $(date +%s) - $(stat -c %Y -- "$1/heartbeat") )); '
    'else echo; fi; else exit 44; fi'
)
_RELEASE_OWN = 'if grep -qF -- "$2" "$1/owner.json" 2>/dev/null; then rm -rf -- "$1"; fi'
_LOCK_BUSY = 75


class Lock:
    """The operation lock. Acquire with `acquire()`, keep alive with the heartbeat thread, release
    on every exit path (the caller's ``finally``)."""

    def __init__(self, store: StateStore, *, command: str, stale_after: float):
        self.store = store
        self.command = command
        self.stale_after = stale_after
        self.token = uuid.uuid4().hex
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, *, wait: float = 0.0, on_wait: Any = None, then: Command | None = None
                ) -> CommandResult:
        """Take the lock, waiting up to `wait` seconds for its holder to release it (not for a
        holder that is gone: a stale lock fails at once, with how to clear it). `then` runs
        under the lock in the same round trip (reading the state): the command that took the
        lock, with what `then` printed, is returned."""
        owner = {"owner": actor(), "pid": os.getpid(), "host": socket.gethostname(),
                 "command": self.command, "started": now(), "token": self.token}
        announced = False
        taken: CommandResult | None = None

        def attempt() -> LockInfo | bool | None:
            """True: taken; else who holds it."""
            nonlocal announced, taken
            result = self.store.transport.run(
                Command.script(_ACQUIRE, self.store.dir, self.store.lock_dir,
                               then.render() if then else ""),
                stdin=json.dumps(owner).encode())
            if result.ok:
                taken = result
                return True
            if result.exit_status != _LOCK_BUSY:
                with state_errors("take the lock"):
                    result.check("take the lock")
            info = read_lock(self.store)
            if on_wait and wait > 0 and not announced and not self._stale(info):
                on_wait(info)
                announced = True
            return info

        # waiting for a holder that is gone would only run out the clock
        outcome = poll_until(attempt, lambda got: got is True or self._stale(got),
                             timeout=wait, interval=1.0)
        if outcome is True:
            self.held = True
            self._start_heartbeat()
            assert taken is not None
            return taken
        info = outcome if isinstance(outcome, LockInfo) else None
        raise LockHeld(
            f"another operation holds the lock: {info.describe() if info else 'unknown'}.",
            where=f"{self.store.transport.host}:{self.store.lock_dir}",
            hint=_lock_hint(info, self.stale_after),
        )

    def _stale(self, info: LockInfo | bool | None) -> bool:
        # no heartbeat yet: a holder between its mkdir and its first heartbeat
        return (isinstance(info, LockInfo) and info.heartbeat_age is not None
                and is_stale(info, self.stale_after))

    def _start_heartbeat(self) -> None:
        interval = max(min(self.stale_after / 4, 30.0), 0.5)

        def beat() -> None:
            while not self._stop.wait(interval):
                # a dead connection is noticed by the operation itself
                with contextlib.suppress(BluegreenError):
                    self.store.transport.run(
                        Command("touch", "--", f"{self.store.lock_dir}/heartbeat"), timeout=10)

        self._thread = threading.Thread(target=beat, daemon=True, name="lock-heartbeat")
        self._thread.start()

    def release(self) -> None:
        self._stop_heartbeat()
        if self.held:
            self.store.transport.run(
                Command.script(_RELEASE_OWN, self.store.lock_dir, self.token), timeout=15)
            self.held = False

    def release_after(self, last: Command, *, stdin: bytes | None = None) -> CommandResult:
        """Run `last` (an operation's history record), then release the lock, in one round
        trip; `last`'s own result. The lock is released whatever `last` does; if the command
        never ran, it is still held, for `release()`."""
        self._stop_heartbeat()
        result = self.store.transport.run(Command.script(
            f'eval "$3"; status=$?; {_RELEASE_OWN}; exit $status', self.store.lock_dir,
            self.token, last.render()), stdin=stdin)
        self.held = False
        return result

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def read_lock(store: StateStore) -> LockInfo | None:
    return lock_from(store.transport.run(reading_lock(store)))


def reading_lock(store: StateStore) -> Command:
    """What `read_lock` runs, for a caller that runs it with other commands; its result goes
    to `lock_from`."""
    return Command.script(_READ_LOCK, store.lock_dir)


def lock_from(result: CommandResult) -> LockInfo | None:
    """The lock `reading_lock`'s command found; None when nobody holds it."""
    if result.exit_status == 44:
        return None
    with state_errors("read the lock"):
        result.check("read the lock")
    return parse_lock(result.stdout)


def parse_lock(output: str) -> LockInfo:
    """`_READ_LOCK`'s output — the owner file's JSON, then the heartbeat's age in seconds —
    as a LockInfo; an owner file left empty or half-written reads as "unknown"."""
    lines = output.splitlines()
    try:
        data = json.loads(lines[0]) if lines and lines[0].strip() else {}
    except ValueError:
        data = {}
    age = float(lines[1]) if len(lines) > 1 and lines[1].strip().lstrip("-").isdigit() else None
    return LockInfo(
        owner=str(data.get("owner", "unknown")), pid=int(data.get("pid", 0) or 0),
        host=str(data.get("host", "unknown")), command=str(data.get("command", "unknown")),
        started=str(data.get("started", "unknown")), token=str(data.get("token", "")),
        heartbeat_age=age,
    )


def is_stale(info: LockInfo, stale_after: float) -> bool:
    if info.heartbeat_age is None or info.heartbeat_age > stale_after:
        return True
    if info.host == socket.gethostname() and info.pid:
        try:
            os.kill(info.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


def force_release(store: StateStore) -> None:
    store.transport.run(Command("rm", "-rf", "--", store.lock_dir)).check("release the lock")


def _lock_hint(info: LockInfo | None, stale_after: float) -> str:
    if info is not None and is_stale(info, stale_after):
        return ("The holder looks dead (stale heartbeat or process gone): "
                "`bluegreen lock release` removes the lock.")
    return ("Wait for it to finish, or pass --lock-wait SECONDS to queue behind it; "
            "`bluegreen lock status` shows it.")
