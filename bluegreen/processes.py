"""Process facts on a host: the process tree as reported by `ps`, and which processes are an app
server's workers. Pure parsing, so it is tested on fixtures."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bluegreen.shell import Command

# Every process, whoever owns it: `kill -0` cannot tell "not running" from "not mine" (EPERM)
PROCESS_TABLE = Command("ps", "-e", "-o", "pid=,ppid=,stat=,args=")


@dataclass(frozen=True)
class ProcessTable:
    parent: dict[int, int]  # pid → ppid, of every process still running (zombies left out)
    args: dict[int, str]  # pid → command line

    @classmethod
    def parse(cls, ps_output: str) -> ProcessTable:
        parent: dict[int, int] = {}
        args: dict[int, str] = {}
        for line in ps_output.splitlines():
            fields = line.split(None, 3)
            if len(fields) < 3 or not (fields[0].isdigit() and fields[1].isdigit()):
                continue
            if fields[2].startswith("Z"):  # exited, not yet reaped: not running
                continue
            parent[int(fields[0])] = int(fields[1])
            args[int(fields[0])] = fields[3] if len(fields) > 3 else ""
        return cls(parent, args)

    def alive(self, pid: int) -> bool:
        return pid in self.parent

    def children(self, pid: int) -> list[int]:
        return sorted(p for p, pp in self.parent.items() if pp == pid)

    def descendants(self, pid: int) -> list[int]:
        found: list[int] = []
        frontier = [pid]
        while frontier:
            kids = [c for p in frontier for c in self.children(p)]
            found += kids
            frontier = kids
        return sorted(found)

    def workers(self, master: int, pattern: str | None = None) -> set[int]:
        """The master's processes that a reload replaces. With `pattern` (a regex searched in
        each command line, e.g. Swoole's process names), the descendants it matches — so a
        user process (`addProcess`), which no reload replaces, is left out. Without, the
        descendants that have no children of their own, whatever the depth (gunicorn: master →
        workers; Swoole process mode: master → manager → workers; base mode: manager →
        workers); a manager, having children, is left out."""
        if pattern:
            found = re.compile(pattern)
            return {p for p in self.descendants(master) if found.search(self.args.get(p, ""))}
        return {p for p in self.descendants(master) if not self.children(p)}
