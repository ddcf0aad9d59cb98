"""paramiko imports invoke when it is imported, for one thing: running an ssh_config
`Match exec` line. invoke imports unittest.mock and asyncio, ~40 ms of every command's start.
Here `import invoke` finds a stand-in that imports the real package on first use, so only an
ssh_config with `Match exec` pays for it."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

NAME = "invoke"


class _Deferred(types.ModuleType):
    def __getattr__(self, attribute: str) -> Any:  # only for what the stand-in lacks
        if sys.modules.get(NAME) is self:
            del sys.modules[NAME]
        real = importlib.import_module(NAME)
        return getattr(real, attribute)


def defer_invoke() -> None:
    """Put the stand-in in place unless invoke is already imported (or not installed)."""
    if NAME in sys.modules:
        return
    spec = importlib.util.find_spec(NAME)
    if spec is None:
        return
    stand_in = _Deferred(NAME)
    stand_in.__spec__ = spec  # what `import invoke` reads of a module already in sys.modules
    sys.modules[NAME] = stand_in
