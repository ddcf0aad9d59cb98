"""`bluegreen --version`: bluegreen's own version first (scripts compare that line), then what
it runs on, the balancer drivers it has, and the versions of them `bluegreen check` last found
on the hosts (kept in the user's cache directory: `check` is what reaches the hosts)."""

from __future__ import annotations

import json
import os
import platform
import typing
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

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
            "(`bluegreen check` shows the version each balancer host runs)",
            *_found_by_check()]


def found_file() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "bluegreen" / "drivers-found.json"


def remember_drivers(service: str, found: dict[str, str]) -> None:
    """What `check` found on the balancer hosts (host → "nginx 1.22.1"), per service; a cache
    that cannot be written is not an error."""
    path = found_file()
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
        known[service] = {"checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "balancers": found}
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(known, indent=1, sort_keys=True))
        temporary.chmod(0o600)
        temporary.replace(path)
    except (OSError, ValueError):
        pass


def _found_by_check() -> list[str]:
    try:
        known = json.loads(found_file().read_text())
    except (OSError, ValueError):
        return []
    lines = []
    for service, seen in sorted(known.items()) if isinstance(known, dict) else []:
        drivers = ", ".join(f"{host} {found}" for host, found in
                            sorted(seen.get("balancers", {}).items()))
        if drivers:
            lines.append(f"found by `check` ({service}, {seen.get('checked_at', '?')}): "
                         f"{drivers}")
    return lines
