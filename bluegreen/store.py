"""State and history on a balancer host, under the service's state directory:

* ``state.json`` — the state (`state.State`), whose revision must still be what was read when it
  is written (no lost update: the host compares checksums, in the same command);
* ``history.jsonl`` — one JSON record per operation.

Every write is a temp file plus rename."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bluegreen.errors import DriftError, RemoteCommandFailed, StateError
from bluegreen.shell import Command, redact
from bluegreen.state import State, sha256_text
from bluegreen.transport.base import CommandResult, FilesRead, Transport, get_file, get_files

if TYPE_CHECKING:
    from bluegreen.lock import Lock


class StateStore:
    """State, history and lock for one service on one balancer host."""

    def __init__(self, transport: Transport, state_dir: str, service: str):
        self.transport = transport
        self.dir = state_dir.rstrip("/")
        self.service = service
        # the revision and checksum of the state file as this store last read or wrote it:
        # a write that expects that revision replaces exactly those bytes, in one round trip
        self._seen: tuple[int, str] | None = None

    @property
    def state_path(self) -> str:
        return f"{self.dir}/state.json"

    @property
    def history_path(self) -> str:
        return f"{self.dir}/history.jsonl"

    @property
    def lock_dir(self) -> str:
        return f"{self.dir}/lock"

    def read(self) -> State:
        with state_errors("read the state"):
            text = get_file(self.transport, self.state_path)
        return self.parse(text)

    def read_with(self, path: str) -> tuple[State, str | None]:
        """The state and the text of another file on this host (None if it does not exist),
        in one round trip."""
        with state_errors("read the state"):
            state_text, text = get_files(self.transport, self.state_path, path)
        return self.parse(state_text), text

    def reading_with(self, path: str) -> FilesRead:
        """`read_with` as a command for the caller to run (after taking the lock, say); its
        output goes to `read_from`."""
        return FilesRead((self.state_path, path))

    def read_from(self, reading: FilesRead, result: CommandResult) -> tuple[State, str | None]:
        with state_errors("read the state"):
            state_text, text = reading.texts(result.stdout, host=self.transport.host,
                                             errors=result.stderr)
        return self.parse(state_text), text

    def parse(self, text: str | None) -> State:
        """The state from the text of its file (None: no file yet), remembered as what this
        store last saw."""
        if text is None:
            self._seen = (0, _ABSENT)
            return State(service=self.service)
        try:
            state = State.from_json(text, service=self.service)
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"state file {self.state_path} is not valid: {exc}.",
                where=self.transport.host,
                hint="Restore it from history, or fix it by hand; bluegreen will not guess.",
            ) from None
        self._seen = (state.revision, sha256_text(text))
        return state

    def write(self, state: State, *, expected_revision: int) -> None:
        """Replace the state, provided the file still holds `expected_revision`: one round
        trip when it is exactly what this store last saw (the host compares checksums);
        otherwise the file is read and its revision compared first."""
        text = state.to_json()
        seen = self._seen
        if seen is None or seen[0] != expected_revision or not self._replace(text, seen[1]):
            current = self.read()
            if current.revision != expected_revision:
                raise DriftError(
                    f"state changed under us: revision {current.revision} on disk, "
                    f"{expected_revision} expected.",
                    where=self.transport.host,
                    hint="Another operation wrote the state without the lock; run "
                         "`bluegreen status`.",
                )
            assert self._seen is not None
            if not self._replace(text, self._seen[1]):
                raise DriftError("state changed under us while it was being written.",
                                 where=self.transport.host,
                                 hint="Another operation writes the state without the lock; "
                                      "run `bluegreen status`.")
        self._seen = (state.revision, sha256_text(text))

    def guard(self, lock_token: str | None = None) -> StateGuard:
        """What a flip checks on this host right before it stages: the state file still has
        the bytes this store last read or wrote, and (with `lock_token`) the lock is still that
        token's."""
        assert self._seen is not None, "the state is read before it is guarded"
        return StateGuard(
            Command.script(_UNCHANGED, self.state_path, self._seen[1], lock_token or "",
                           self.lock_dir),
            host=self.transport.host, state_path=self.state_path, lock_dir=self.lock_dir)

    def _replace(self, text: str, checksum: str) -> bool:
        """Write `text` as the state file if the file's checksum is still `checksum`."""
        with state_errors("write the state"):
            result = self.transport.run(
                Command.script(_WRITE_IF_UNCHANGED, self.state_path, checksum),
                stdin=text.encode())
            if result.exit_status == _CHANGED:
                return False
            result.check("write the state")
        return True

    def append_history(self, record: dict[str, Any], *, then_release: Lock | None = None
                       ) -> None:
        """Append one record; with `then_release` (this store's lock, when the record is the
        operation's last word), release the lock in the same command."""
        line = redact(json.dumps(record, sort_keys=True, default=str)).encode() + b"\n"
        append = Command.script(_APPEND, self.history_path)
        with state_errors("append history"):
            result = (self.transport.run(append, stdin=line) if then_release is None
                      else then_release.release_after(append, stdin=line))
            result.check("append history")

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The last `limit` records (all without): only those lines cross the connection, so
        a long-lived service's history costs `history -n 20` what a new one's does."""
        if limit is None:
            text = get_file(self.transport, self.history_path) or ""
        else:
            text = self.transport.run(Command.script(_TAIL, self.history_path, str(limit))
                                      ).check("read the history").stdout
        records = []
        for line in text.splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        return records[-limit:] if limit else records


# $1 the history file, $2 how many of its last lines; nothing when there is no history yet
_TAIL = '[ ! -e "$1" ] || tail -n "$2" -- "$1"'

_ABSENT = "absent"  # the checksum of a state file that does not exist
_CHANGED = 73
# The checksum of the state file ($1) as $seen — what `_ABSENT` says when there is none: what a
# write, and the flip's guard, compare with the checksum this store last saw ($2).
_SEEN = ('if [ -e "$1" ]; then seen=$(sha256sum < "$1"); seen=${seen%% *}; '
         f'else seen={_ABSENT}; fi; ')
# Whether the state file still has the checksum it had when read ($2) and, with a lock token
# ($3), whether the lock ($4) is still that token's; says which is not.
_UNCHANGED = (
    _SEEN + f'[ "$seen" = "$2" ] || {{ echo "state changed"; exit {_CHANGED}; }}; '
    '[ -z "$3" ] || grep -qF -- "$3" "$4/owner.json" 2>/dev/null || { echo "lock lost"; exit 74; }'
)


@dataclass(frozen=True)
class StateGuard:
    """A check run on a balancer right before a flip stages there (in the same command)."""

    command: Command
    host: str
    state_path: str
    lock_dir: str

    def refusal(self, output: str) -> DriftError:
        """The error when the guard refused, from what it said."""
        if "lock lost" in output:
            return DriftError(
                "this operation no longer holds the lock (it was released or taken over from "
                "elsewhere), so it stopped before moving traffic: nothing was flipped.",
                where=f"{self.host}:{self.lock_dir}",
                hint="`bluegreen lock status` shows who holds it; `bluegreen status` shows "
                     "what runs where.")
        return DriftError(
            "the state changed after this operation read it, so it stopped before moving "
            "traffic: nothing was flipped.",
            where=f"{self.host}:{self.state_path}",
            hint="Another operation wrote it without the lock; `bluegreen status` shows what "
                 "runs where now.")
# The state file replaced atomically (temp file, mode, rename) only if its checksum is still $2
# (or it is still absent); exit 73 otherwise. The state directory is created if needed.
_WRITE_IF_UNCHANGED = (
    'set -e; mkdir -p -m 700 -- "$(dirname -- "$1")"; '
    + _SEEN + f'[ "$seen" = "$2" ] || exit {_CHANGED}; '
    'tmp=$(mktemp -- "$1.XXXXXX"); trap \'rm -f -- "$tmp"\' EXIT; '
    'cat > "$tmp"; chmod 600 "$tmp"; mv -f -- "$tmp" "$1"; trap - EXIT'
)
# A line appended to the history by rewriting it atomically (readers never see half a line).
_APPEND = (
    'set -e; mkdir -p -m 700 -- "$(dirname -- "$1")"; '
    'tmp=$(mktemp -- "$1.XXXXXX"); trap \'rm -f -- "$tmp"\' EXIT; '
    'if [ -f "$1" ]; then cat -- "$1" > "$tmp"; fi; cat >> "$tmp"; chmod 600 "$tmp"; '
    'mv -f -- "$tmp" "$1"; trap - EXIT'
)


@contextlib.contextmanager
def state_errors(step: str) -> Iterator[None]:
    """A remote command that fails on the state directory (disk full, permissions) is a state
    error (exit 11), not a bug."""
    try:
        yield
    except RemoteCommandFailed as error:
        raise StateError(f"could not {step}: {error.detail}.", where=error.where,
                         hint="Free space or fix permissions in the state directory "
                              "(balancer.state_dir), then run `bluegreen status`.") from None
