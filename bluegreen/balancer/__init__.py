"""The Balancer seam: each driver renders the managed file (pure), and builds the commands that
validate and activate it and read back what is live. nginx, HAProxy and Caddy implement it."""

from __future__ import annotations

from dataclasses import dataclass

from bluegreen.balancer.base import Balancer, ManagedFile
from bluegreen.inventory import BalancerSettings, HostSpec, Inventory


def balancer_for(settings: BalancerSettings) -> Balancer:
    if settings.kind == "caddy":
        from bluegreen.balancer.caddy import CaddyBalancer

        return CaddyBalancer(settings)
    if settings.kind == "haproxy":
        from bluegreen.balancer.haproxy import HAProxyBalancer

        return HAProxyBalancer(settings)
    from bluegreen.balancer.nginx import NginxBalancer

    return NginxBalancer(settings)


@dataclass(frozen=True)
class BalancerSite:
    """One balancer host with its settings (overrides applied), driver, file and state dir."""

    host: HostSpec
    settings: BalancerSettings
    driver: Balancer
    managed: ManagedFile
    state_dir: str


def site_for(inventory: Inventory, host: HostSpec) -> BalancerSite:
    settings = inventory.balancer_settings(host)
    state_dir = inventory.state_dir_for(host)
    return BalancerSite(host, settings, balancer_for(settings),
                        ManagedFile(settings.managed_file, state_dir), state_dir)


__all__ = ["Balancer", "BalancerSite", "balancer_for", "site_for"]
