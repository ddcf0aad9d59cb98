"""bluegreen: zero-downtime blue/green deployments over plain SSH."""

__version__ = "0.1.0"
