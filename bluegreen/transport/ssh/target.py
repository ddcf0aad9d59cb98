"""Where to connect: an inventory host and the SSH settings, merged with ~/.ssh/config (the
inventory wins; the ssh config fills what it leaves out), resolved into an `SSHTarget` — the
only part of the SSH transport that reads inventory structs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bluegreen.inventory import HostSpec, SSHSettings

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to connect, after the inventory and ~/.ssh/config are merged (the inventory
    wins; the ssh config fills what it leaves out)."""

    name: str
    address: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    jumps: tuple[SSHTarget, ...] = field(default=())
    sudo: bool = False

    @property
    def known_hosts_name(self) -> str:
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

def resolve_target(host: HostSpec, settings: SSHSettings, *, follow_jump: bool = True
                   ) -> SSHTarget:
    lookup = _ssh_config_lookup(settings.config_file, host.address or host.name)
    identity = (
        [settings.identity_file] if settings.identity_file else lookup.get("identityfile", [])
    )
    jump = host.jump or settings.jump or lookup.get("proxyjump")
    jumps: tuple[SSHTarget, ...] = ()
    if follow_jump and jump and jump.lower() != "none":
        jumps = tuple(
            _resolve_jump(spec.strip(), settings) for spec in jump.split(",") if spec.strip()
        )
    return SSHTarget(
        name=host.name,
        address=lookup.get("hostname", host.address or host.name),
        port=int(host.port or settings.port or lookup.get("port", 22)),
        user=host.user or settings.user or lookup.get("user") or _local_user(),
        identity_files=tuple(os.path.expanduser(p) for p in identity),
        jumps=jumps,
        sudo=settings.sudo if host.sudo is None else host.sudo,
    )

def _resolve_jump(spec: str, settings: SSHSettings) -> SSHTarget:
    user, _, hostport = spec.rpartition("@")
    name, port = hostport, None
    if hostport.count(":") == 1:
        name, port_text = hostport.split(":")
        port = int(port_text)
    # a jump host is reached directly (its own ProxyJump, if any, is not followed)
    target = resolve_target(HostSpec(name=name, port=port, user=user or None), settings,
                            follow_jump=False)
    return SSHTarget(
        name=spec,
        address=target.address,
        port=target.port,
        user=target.user,
        identity_files=target.identity_files,
    )

def _ssh_config_lookup(config_file: str | None, name: str) -> dict[str, Any]:
    if not config_file:
        return {}
    path = Path(os.path.expanduser(config_file))
    if not path.is_file():
        return {}
    import paramiko

    config = paramiko.SSHConfig.from_path(str(path))
    found = dict(config.lookup(name))
    if found.get("hostname") == name:
        del found["hostname"]
    return found

def _local_user() -> str:
    import getpass

    return getpass.getuser()
