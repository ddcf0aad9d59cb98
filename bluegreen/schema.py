"""The inventory's JSON Schema, generated from the inventory model itself (so it cannot drift
from what `check` accepts): editors that speak the YAML language server complete and flag keys
while typing, through a `# yaml-language-server: $schema=…` first line. The same schema renders
docs/inventory.md, the reference of every key. What each key means comes from
bluegreen/inventory_descriptions.py, merged in where the model says nothing itself."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"
ITEM = "[]"  # the path segment of a list's entries: hosts.app[].name
ENTRY = "<name>"  # the path segment of a map's entries: secrets.<name>.env
ANY = "*"  # a segment that differs between the paths one object is reached by


def inventory_schema() -> dict[str, Any]:
    from bluegreen.inventory import json_schema

    schema = json_schema()
    definitions = schema["$defs"]
    definitions["Inventory"]["description"] = (
        "A bluegreen inventory: one service in one environment. See inventories/example.yml.")
    describe(definitions)
    return {"$schema": SCHEMA_DRAFT, "title": "bluegreen inventory", **schema}


def describe(definitions: dict[str, Any]) -> None:
    """Give every object and key of `$defs` its description from
    bluegreen/inventory_descriptions.py, where the model has none of its own. An entry naming
    no object or key is skipped here (a unit test flags it)."""
    from bluegreen.inventory_descriptions import FIELDS, OBJECTS

    for name, definition in definitions.items():
        if name in OBJECTS:
            definition.setdefault("description", OBJECTS[name])
        properties: dict[str, Any] = definition.get("properties", {})
        for key, text in FIELDS.get(name, {}).items():
            if key in properties:
                properties[key].setdefault("description", text)


def schema_text() -> str:
    return json.dumps(inventory_schema(), indent=2, sort_keys=True) + "\n"


# --- docs/inventory.md -------------------------------------------------------------------------

INTRO = (
    "Every key of a bluegreen inventory, with its type, its default and what it does. This file "
    "is generated from the inventory model (the one `bluegreen check` validates with, and the "
    "one `docs/inventory.schema.json` is generated from) and the descriptions in "
    "`bluegreen/inventory_descriptions.py` by `bluegreen schema --markdown`: do not edit it by "
    "hand, regenerate it with `bluegreen schema --markdown > docs/inventory.md`. "
    "There is one section per mapping, in the order the file nests them; a key marked "
    "*required* must be set whenever its section is written. In a key, `[]` stands for any "
    "entry of a list, `<name>` for any key of a map, and `*` for each of the keys a section "
    "names at its start. `inventories/example.yml` shows every key in context.")


@dataclass
class _Section:
    name: str  # the definition's name in $defs
    paths: list[tuple[str, ...]] = field(default_factory=list)


def inventory_reference() -> str:
    """The Markdown reference of the inventory (docs/inventory.md), rendered from
    `inventory_schema()`: one section per object reachable from the top level, depth-first, each
    object once, with a table of its keys."""
    schema = inventory_schema()
    definitions: dict[str, Any] = schema["$defs"]
    root = _ref_name(schema["$ref"])
    sections: dict[str, _Section] = {}
    _collect(root, (), definitions, sections, stack=())
    anchors = {name: _anchor(name, index) for index, name in enumerate(sections)}
    lines = ["# Inventory reference", "", INTRO, ""]
    lines += [f"- [{_heading(section, root)}](#{anchors[section.name]})"
              for section in sections.values()]
    for section in sections.values():
        lines += ["", f'<a id="{anchors[section.name]}"></a>', "",
                  f"## {_heading(section, root)}", ""]
        lines += _section_body(section, definitions, anchors)
    return "\n".join(lines) + "\n"


def _collect(name: str, path: tuple[str, ...], definitions: dict[str, Any],
             sections: dict[str, _Section], stack: tuple[str, ...]) -> None:
    """Depth-first from the root: every object once (first reached first), with every path it
    is reached by."""
    section = sections.setdefault(name, _Section(name))
    section.paths.append(path)
    if name in stack:  # a recursive model: its keys are listed once, at the outer path
        return
    for key, prop in definitions[name].get("properties", {}).items():
        for child, suffix in _objects_in(prop):
            _collect(child, (*path, key, *suffix), definitions, sections, (*stack, name))


def _objects_in(schema: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    """The definitions a value's schema refers to, each with the path segments leading to it
    (`[]` through a list's entries, `<name>` through a map's)."""
    found: list[tuple[str, tuple[str, ...]]] = []
    if "$ref" in schema:
        found.append((_ref_name(schema["$ref"]), ()))
    for keyword in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(keyword, []):
            found += _objects_in(option)
    if isinstance(schema.get("items"), dict):
        found += [(name, (ITEM, *rest)) for name, rest in _objects_in(schema["items"])]
    if isinstance(schema.get("additionalProperties"), dict):
        found += [(name, (ENTRY, *rest))
                  for name, rest in _objects_in(schema["additionalProperties"])]
    return found


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _anchor(name: str, index: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or f"section-{index}"


def _pattern(section: _Section) -> tuple[str, ...]:
    """One path for every path the object is reached by: the segments they differ in become
    `*` (hosts.app[] and hosts.balancer[] give hosts.*[]); the first path if their shapes
    differ."""
    first = section.paths[0]
    if any(len(path) != len(first) for path in section.paths):
        return first
    return tuple(segment if all(path[i] == segment for path in section.paths) else ANY
                 for i, segment in enumerate(first))


def _join(path: tuple[str, ...]) -> str:
    text = ""
    for segment in path:
        text += segment if segment == ITEM or not text else f".{segment}"
    return text


def _heading(section: _Section, root: str) -> str:
    if section.name == root:
        return "Top level"
    return _code(_join(_pattern(section)))


def _section_body(section: _Section, definitions: dict[str, Any],
                  anchors: dict[str, str]) -> list[str]:
    definition = definitions[section.name]
    lines: list[str] = []
    if definition.get("description"):
        lines += [_paragraph(definition["description"]), ""]
    pattern = _pattern(section)
    concrete = list(dict.fromkeys(_join(path) for path in section.paths))  # in reach order
    if len(concrete) > 1:
        lines += ["The keys below apply to each of "
                  + ", ".join(_code(path) for path in concrete) + ".", ""]
    properties: dict[str, Any] = definition.get("properties", {})
    if not properties:
        return [*lines, "No keys."]
    required = set(definition.get("required", []))
    rows = [[_code(_join((*pattern, key))),
             _type(prop, anchors, null=prop.get("default", ...) is not None),
             _default(prop, key in required, definitions), _description(prop)]
            for key, prop in properties.items()]
    header = ["Key", "Type", "Default", "Description"]
    if not any(row[3] for row in rows):  # no key documented yet: no empty column
        header, rows = header[:3], [row[:3] for row in rows]
    lines.append(_row(header))
    lines.append(_row(["---"] * len(header)))
    lines += [_row(row) for row in rows]
    return lines


def _type(schema: dict[str, Any], anchors: dict[str, str], *, null: bool = True) -> str:
    """A value's type in words: `integer (1–65535)`, `list of string`, `one of "a" | "b"`…
    `null` is left out when the default is null already (`null: False`)."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[mapping](#{anchors[name]})" if name in anchors else "mapping"
    if "const" in schema:
        return _code(_literal(schema["const"]))
    if "enum" in schema:
        words = [_code(_literal(value)) for value in schema["enum"]]
        return words[0] if len(words) == 1 else "one of " + " | ".join(words)
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            options = [option for option in schema[keyword]
                       if null or option.get("type") != "null"]
            words = [_type(option, anchors) for option in options]
            return " or ".join(dict.fromkeys(words)) or "null"
    kinds = schema.get("type")
    if isinstance(kinds, list):
        kinds = [kind for kind in kinds if null or kind != "null"]
        return " or ".join(_type({**schema, "type": kind}, anchors) for kind in kinds) or "null"
    if kinds == "array":
        items = schema.get("items")
        entry = _type(items, anchors) if isinstance(items, dict) else "any"
        if " or " in entry:
            entry = f"({entry})"
        return _with("list of " + entry,
                     _count_bounds(schema, "minItems", "maxItems", "entries"))
    if kinds == "object" or "properties" in schema or "additionalProperties" in schema:
        values = schema.get("additionalProperties")
        if isinstance(values, dict):
            return _with("map of string to " + _type(values, anchors),
                         _count_bounds(schema, "minProperties", "maxProperties", "keys"))
        return "mapping"
    if kinds == "string":
        bounds = _count_bounds(schema, "minLength", "maxLength", "characters")
        if "pattern" in schema:
            bounds.append("matching " + _code(schema["pattern"]))
        if "format" in schema:
            bounds.append(f"format {schema['format']}")
        return _with("string", bounds)
    if kinds in ("integer", "number"):
        return _with(kinds, _number_bounds(schema))
    if isinstance(kinds, str):
        return kinds
    return "any"


def _with(kind: str, bounds: list[str]) -> str:
    if bounds[:1] == ["non-empty"]:
        kind, bounds = f"non-empty {kind}", bounds[1:]
    return f"{kind} ({', '.join(bounds)})" if bounds else kind


def _number_bounds(schema: dict[str, Any]) -> list[str]:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return [f"{_literal(low)}–{_literal(high)}"]
    bounds = []
    if low is not None:
        bounds.append(f"≥ {_literal(low)}")
    if schema.get("exclusiveMinimum") is not None:
        bounds.append(f"> {_literal(schema['exclusiveMinimum'])}")
    if schema.get("exclusiveMaximum") is not None:
        bounds.append(f"< {_literal(schema['exclusiveMaximum'])}")
    if high is not None:
        bounds.append(f"≤ {_literal(high)}")
    if schema.get("multipleOf") is not None:
        bounds.append(f"a multiple of {_literal(schema['multipleOf'])}")
    return bounds


def _count_bounds(schema: dict[str, Any], low_key: str, high_key: str, unit: str) -> list[str]:
    low, high = schema.get(low_key), schema.get(high_key)
    if low == 1 and high is None:
        return ["non-empty"]
    if low is not None and high is not None:
        return [f"{low}–{high} {unit}"]
    if low is not None:
        return [f"at least {low} {unit}"]
    if high is not None:
        return [f"at most {high} {unit}"]
    return []


def _default(schema: dict[str, Any], required: bool, definitions: dict[str, Any]) -> str:
    if required:
        return "*required*"
    if "default" not in schema:
        return "—"
    default = schema["default"]
    target = _single_ref(schema)
    if isinstance(default, dict) and default and target is not None:
        keys = definitions[target].get("properties", {})
        if all(key in keys and keys[key].get("default", object()) == value
               for key, value in default.items()):
            return "each key's default"
    return _code(_literal(default))


def _single_ref(schema: dict[str, Any]) -> str | None:
    if "$ref" in schema:
        return _ref_name(schema["$ref"])
    refs = [option["$ref"] for option in schema.get("anyOf", []) if "$ref" in option]
    return _ref_name(refs[0]) if len(refs) == 1 else None


def _description(schema: dict[str, Any]) -> str:
    text = _paragraph(str(schema.get("description") or schema.get("title") or ""))
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        shown = ", ".join(_code(_literal(example)) for example in examples)
        text = f"{text} Example: {shown}.".strip()
    return text


def _literal(value: Any) -> str:
    """A value as it would be written (JSON, which is also YAML): `30`, `"HUP"`, `null`."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _paragraph(text: str) -> str:
    return " ".join(text.split())


def _code(text: str) -> str:
    """An inline code span that survives any backticks in the text."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _row(cells: list[str]) -> str:
    # `|` splits cells even inside a code span: escaped, GitHub's tables show it as `|`
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
