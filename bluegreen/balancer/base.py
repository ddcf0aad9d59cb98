"""What every balancer driver provides."""

from __future__ import annotations

from typing import Protocol

from bluegreen.shell import Command


class Balancer(Protocol):
    kind: str
    binary: str

    def validate_main_config(self) -> Command:
        """Validate the balancer's whole live configuration as it stands."""
        ...
