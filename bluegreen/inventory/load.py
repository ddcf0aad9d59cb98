"""Loading an inventory: the file read, its YAML parsed, the result validated."""

from __future__ import annotations

import os
from pathlib import Path

from bluegreen.errors import InventoryError
from bluegreen.inventory.model import Inventory
from bluegreen.inventory.validate import validate_inventory
from bluegreen.inventory.yaml_text import parse_yaml


def load_inventory(
    path: str | os.PathLike[str], *, environ: dict[str, str] | None = None
) -> Inventory:
    path = Path(path)
    environ = dict(os.environ) if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InventoryError(f"not UTF-8 text (byte {exc.start} cannot be decoded): is this "
                             "the inventory file?", where=str(path)) from None
    except FileNotFoundError:
        raise InventoryError(
            "inventory file not found.",
            where=str(path),
            hint="Pass -i PATH or set BLUEGREEN_INVENTORY; see inventories/example.yml.",
        ) from None
    except OSError as exc:
        raise InventoryError(f"cannot read inventory: {exc.strerror}.", where=str(path)) from None
    try:
        data = parse_yaml(text, source=str(path))
        return validate_inventory(data, path=path, environ=environ)
    except RecursionError:
        raise InventoryError("the inventory is nested too deeply to be an inventory.",
                             where=str(path)) from None
