"""The vocabulary of DESIGN.md as frozen values. Imports nothing from bluegreen."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Colour(str, enum.Enum):
    BLUE = "blue"
    GREEN = "green"

    @property
    def other(self) -> Colour:
        return Colour.GREEN if self is Colour.BLUE else Colour.BLUE

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Instance:
    """One (app host, colour) pair: a server listening on a port."""

    host: str
    colour: Colour
    port: int

    def __str__(self) -> str:
        return f"{self.host}/{self.colour}:{self.port}"
