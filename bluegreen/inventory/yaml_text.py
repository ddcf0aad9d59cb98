"""Reading an inventory's YAML: YAML 1.2 booleans and numbers, merge keys, and no key written
twice — each error with the file, line and column."""

from __future__ import annotations

import re
from typing import Any

from bluegreen.errors import InventoryError


def parse_yaml(text: str, *, source: str) -> Any:
    import yaml

    # libyaml's parser when PyYAML was built with it (its wheels are): ~10× faster on a fleet's
    # inventory; the constructor and the resolvers below are the same Python classes either way
    class _NoDuplicates(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    # YAML 1.2 booleans only: with YAML 1.1's, `on: app` in a hook would mean `true: app`, and
    # `yes`, `no`, `off` would turn into booleans wherever text was meant.
    _NoDuplicates.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _NoDuplicates.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"))
    # YAML 1.2 numbers: `1e3` is a number (YAML 1.1 wanted `1.0e+3` and read `1e3` as text)
    _NoDuplicates.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
        list("-+.0123456789"))

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        written = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        loader.flatten_mapping(node)  # keys merged in (`<<: *base`) now come first
        merged = len(node.value) - written
        mapping: dict[Any, Any] = {}
        explicit: set[Any] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = loader.construct_object(key_node)
            mark = key_node.start_mark
            where = f"{source}:{mark.line + 1}:{mark.column + 1}"
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise InventoryError("a mapping key must be plain text, not a list or mapping.",
                                     where=where, hint="Write the key as a name.")
            if index >= merged:  # written here: may override a merged key, not repeat one
                if key in explicit:
                    raise InventoryError(
                        f"key '{key}' appears twice in the same mapping.", where=where,
                        hint="Remove one of them; YAML would silently keep only the last.")
                explicit.add(key)
            mapping[key] = loader.construct_object(value_node)
        return mapping

    _NoDuplicates.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping
    )
    try:
        data = yaml.load(text, Loader=_NoDuplicates)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise InventoryError(
            f"not valid YAML: {exc.problem or exc.context}.",
            where=where,
            hint="Fix the syntax at that line (indentation and ':' after keys are common causes).",
        ) from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"not valid YAML: {exc}.", where=source) from None
    if not isinstance(data, dict):
        raise InventoryError(
            "the inventory must be a YAML mapping (service:, hosts:, …).",
            where=source,
            hint="See inventories/example.yml.",
        )
    return data
