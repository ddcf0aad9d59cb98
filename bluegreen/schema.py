"""The inventory's JSON Schema, generated from the inventory model itself (so it cannot drift
from what `check` accepts): editors that speak the YAML language server complete and flag keys
while typing, through a `# yaml-language-server: $schema=…` first line."""

from __future__ import annotations

import json
from typing import Any

SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"


def inventory_schema() -> dict[str, Any]:
    from bluegreen.inventory import json_schema

    schema = json_schema()
    definitions = schema["$defs"]
    definitions["Inventory"]["description"] = (
        "A bluegreen inventory: one service in one environment. See inventories/example.yml.")
    return {"$schema": SCHEMA_DRAFT, "title": "bluegreen inventory", **schema}


def schema_text() -> str:
    return json.dumps(inventory_schema(), indent=2, sort_keys=True) + "\n"
