"""Inventory: one YAML file describing one service in one environment, validated with msgspec
into typed structs (pydantic cost ~0.11 s of start-up on every command; msgspec ~0.03 s). Every
error names the file and the key path (``hosts.app[1].port``) and never shows a traceback.
Imports model, shell and errors; never a network library.

model.py holds the structs, yaml_text.py reads the YAML, validate.py checks and translates,
load.py puts them together."""

from bluegreen.inventory.load import load_inventory
from bluegreen.inventory.model import (
    AppSettings,
    BalancerOverride,
    BalancerSettings,
    CanarySettings,
    CanaryStep,
    CanarySticky,
    Colours,
    ColourSpec,
    DeploySettings,
    HealthSettings,
    Hook,
    Hooks,
    Hosts,
    HostSpec,
    Inventory,
    LockSettings,
    PrometheusQuery,
    PrometheusSettings,
    ReleaseSettings,
    SecretRef,
    SSHSettings,
    VerifySettings,
    json_schema,
)
from bluegreen.inventory.validate import key_path, validate_inventory
from bluegreen.inventory.yaml_text import parse_yaml

__all__ = [
    "AppSettings", "BalancerOverride", "BalancerSettings", "CanarySettings", "CanaryStep",
    "CanarySticky", "ColourSpec", "Colours", "DeploySettings", "HealthSettings", "Hook", "Hooks",
    "HostSpec", "Hosts", "Inventory", "LockSettings", "PrometheusQuery", "PrometheusSettings",
    "ReleaseSettings", "SSHSettings", "SecretRef", "VerifySettings", "json_schema", "key_path",
    "load_inventory", "parse_yaml", "validate_inventory",
]
