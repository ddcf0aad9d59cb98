"""Process facts on a host: the process tree as reported by `ps`, and which processes are an app
server's workers. Pure parsing, so it is tested on fixtures."""

from __future__ import annotations

from dataclasses import dataclass

from bluegreen.shell import Command

PROCESS_TABLE = Command("ps", "-e", "-o", "pid=,ppid=")


@dataclass(frozen=True)
class ProcessTable:
    parent: dict[int, int]  # pid → ppid

    @classmethod
    def parse(cls, ps_output: str) -> ProcessTable:
        parent = {}
        for line in ps_output.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
                parent[int(fields[0])] = int(fields[1])
        return cls(parent)

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

    def workers(self, master: int) -> set[int]:
        """The descendants of `master` that have no children of their own: the workers, whatever
        the depth (gunicorn: master → workers; Swoole process mode: master → manager → workers;
        Swoole base mode: manager → workers). A manager, having children, is left out."""
        return {p for p in self.descendants(master) if not self.children(p)}
