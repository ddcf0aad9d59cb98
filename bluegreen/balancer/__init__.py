"""The Balancer seam: each driver renders the managed file (pure), and builds the commands that
validate and activate it and read back what is live. nginx and HAProxy implement it."""

from __future__ import annotations

from bluegreen.balancer.base import Balancer
from bluegreen.inventory import BalancerSettings


def balancer_for(settings: BalancerSettings) -> Balancer:
    if settings.kind == "haproxy":
        from bluegreen.balancer.haproxy import HAProxyBalancer

        return HAProxyBalancer(settings)
    from bluegreen.balancer.nginx import NginxBalancer

    return NginxBalancer(settings)


__all__ = ["Balancer", "balancer_for"]
