"""`bluegreen --version`: bluegreen's own version first (scripts compare that line), then what
it runs on and the balancer drivers it has; `bluegreen check` reads the balancers' versions on
the hosts."""

from __future__ import annotations

import platform
import typing
from importlib import metadata

from bluegreen import __version__

LIBRARIES = ("paramiko", "httpx", "jinja2", "msgspec", "PyYAML", "typer", "rich")


def balancer_kinds() -> tuple[str, ...]:
    from bluegreen.inventory import BalancerSettings

    return typing.get_args(typing.get_type_hints(BalancerSettings)["kind"])


def version_lines() -> list[str]:
    found = []
    for name in LIBRARIES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} missing")
    return [f"bluegreen {__version__}",
            f"Python {platform.python_version()}; " + ", ".join(found),
            f"balancer drivers: {', '.join(balancer_kinds())} "
            "(`bluegreen check` shows the version each balancer host runs)"]
