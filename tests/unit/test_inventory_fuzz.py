"""The inventory loader under arbitrary input: whatever the bytes, it returns an inventory or
raises an InventoryError (exit 2) naming where — never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bluegreen.errors import InventoryError
from bluegreen.inventory import load_inventory

BASE = {"service": "shop", "hosts": {"app": ["app1"], "balancer": ["lb1"]}}
KEYS = ["service", "hosts", "app", "balancer", "ssh", "colours", "health", "verify", "release",
        "lock", "hooks", "secrets", "port", "name", "address", "jump", "path", "urls", "root",
        "start", "stop", "env", "connect_timeout", "mode", "blue", "green", "<<"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                    st.text(max_size=20), st.sampled_from(["1e3", ".inf", "on", "0x1F", "~"]))
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(KEYS), children, max_size=4)),
    max_leaves=20)


def _load(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "inv.yml"
    path.write_bytes(data)
    try:
        load_inventory(path, environ={})
    except InventoryError as error:
        assert error.exit_code == 2 and error.where


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_load_or_exit_2(tmp_path: Path, data: bytes) -> None:
    _load(tmp_path, data)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=6))
def test_arbitrary_inventory_shapes_load_or_exit_2(tmp_path: Path, extra: dict[str, object]
                                                   ) -> None:
    try:
        text = yaml.safe_dump({**BASE, **extra}, allow_unicode=True)
    except yaml.YAMLError:
        pytest.skip("not representable in YAML")
    _load(tmp_path, text.encode())
