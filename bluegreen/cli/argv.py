"""Global options where people type them: `bluegreen status --json`, `bluegreen deploy -v`,
`bluegreen canary abort -i prod.yml` mean what they mean before the command (as with gh and
kubectl). The parser only knows them before it, so they are moved there first."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

GLOBAL_FLAGS = frozenset({"--json", "--yes", "-y", "--verbose", "-v", "--no-color"})
GLOBAL_WITH_VALUE = frozenset({"--inventory", "-i"})

# what the command named by a path (["canary", "abort"]) is: a group of sub-commands, or a
# command with the options that take a value; None: no such command
Lookup = Callable[[Sequence[str]], "CommandShape | None"]


class CommandShape:
    def __init__(self, *, group: bool, options_with_value: frozenset[str] = frozenset()):
        self.group = group
        self.options_with_value = options_with_value


def hoist_global_options(args: Sequence[str], lookup: Lookup) -> list[str]:
    """`args` with the global options found after the command moved before it. A value that
    belongs to one of the command's own options (`--reason -v`) stays where it is, and so does
    everything after `--`."""
    before: list[str] = []
    path: list[str] = []
    moved: list[str] = []
    rest: list[str] = []
    shape: CommandShape | None = None
    tokens = list(args)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token == "--":
            rest.extend(tokens[index:])
            break
        if not path:  # still before the command: the parser reads these as they are
            before.append(token)
            if token in GLOBAL_WITH_VALUE and index + 1 < len(tokens):
                before.append(tokens[index + 1])
                index += 1
            elif not token.startswith("-"):
                path.append(token)
                shape = lookup(path)
            index += 1
            continue
        if shape is None:  # an unknown command: the parser reports it
            rest.extend(tokens[index:])
            break
        if shape.group and not token.startswith("-"):
            rest.append(token)
            path.append(token)
            shape = lookup(path)
        elif token in GLOBAL_FLAGS:
            moved.append(token)
        elif token in GLOBAL_WITH_VALUE and index + 1 < len(tokens):
            moved.extend(tokens[index:index + 2])
            index += 1
        elif (token.startswith("--inventory=") or _attached_inventory(token, shape)
              or _SHORT_GLOBAL_CLUSTER.fullmatch(token)):  # -vy
            moved.append(token)
        elif token in shape.options_with_value and index + 1 < len(tokens):
            rest.extend(tokens[index:index + 2])
            index += 1
        else:
            rest.append(token)
        index += 1
    if not moved:
        return list(args)
    command_at = len(before) - 1  # the command name is the last token read before the rest
    return before[:command_at] + moved + before[command_at:] + rest


# short global flags written together (`-vy`); a cluster with any of the command's own flags
# stays where it is (the parser reports it)
_SHORT_GLOBAL_CLUSTER = re.compile(r"-[vy]{2,}")


def _attached_inventory(token: str, shape: CommandShape) -> bool:
    """`-iFILE`, unless the command has an `-i…` option of its own."""
    return (token.startswith("-i") and len(token) > 2 and not token.startswith("--")
            and "-i" not in shape.options_with_value)


def click_lookup(root: Any) -> Lookup:
    """A `Lookup` over a click (or typer) command tree."""
    def lookup(path: Sequence[str]) -> CommandShape | None:
        command = root
        for name in path:
            commands = getattr(command, "commands", None)
            if not isinstance(commands, dict) or name not in commands:
                return None
            command = commands[name]
        if isinstance(getattr(command, "commands", None), dict):
            return CommandShape(group=True)
        valued = frozenset(
            name for param in getattr(command, "params", ())
            if getattr(param, "param_type_name", "") == "option"
            and not getattr(param, "is_flag", False) and not getattr(param, "count", False)
            for name in (*param.opts, *param.secondary_opts))
        return CommandShape(group=False, options_with_value=valued)

    return lookup
