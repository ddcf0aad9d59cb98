"""Runs a program as a child subreaper: `python tests/reaper.py PROGRAM [ARG…]`.

The test and bench fleets run each sshd under it. An app started from an SSH session
(`nohup … &`, `gunicorn --daemon`) outlives the session and is re-parented to the nearest
subreaper, else to PID 1. On a real host PID 1 reaps it the moment it exits; some sandboxes'
PID 1 reaps only every second or two, and until then the exited server is a zombie that
`kill -0` still finds — so every stop an inventory waits for with `kill -0` would look ~1.5 s
slower than it is on a real host. This process reaps at once instead.

Signals that stop a server (TERM, INT, HUP, QUIT) are passed to the program; this process
exits with the program's status once it exits. Other processes left behind are then
re-parented to PID 1: the tests stop what they started by PID."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

_PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: reaper.py PROGRAM [ARG…]", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"reaper: prctl: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    program = os.posix_spawnp(argv[0], argv, os.environ)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(program, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        if pid == program:
            return os.waitstatus_to_exitcode(status) % 256


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
