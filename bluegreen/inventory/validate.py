"""Validating a parsed inventory against the model: msgspec's errors translated into a message
naming the key path (``hosts.app[1].port``) with a hint, the checks across sections, and the
secrets resolved from the environment."""

from __future__ import annotations

import difflib
import itertools
import re
from pathlib import Path
from typing import Any

import msgspec

from bluegreen.errors import InventoryError
from bluegreen.inventory.model import Inventory
from bluegreen.model import Colour
from bluegreen.shell import Secret


def validate_inventory(data: Any, *, path: Path, environ: dict[str, str]) -> Inventory:
    try:
        inventory = msgspec.convert(data, Inventory)
    except msgspec.ValidationError as exc:
        raise _translate(str(exc), path) from None
    inventory.path = path
    _check_cross_references(inventory, path)
    secrets = {}
    for name, ref in inventory.secrets.items():
        if ref.env not in environ:
            raise InventoryError(
                f"environment variable {ref.env} is not set.",
                where=f"{path}: secrets.{name}.env",
                hint=f"Export {ref.env} before running bluegreen (its value is never printed).",
            )
        secrets[name] = Secret(environ[ref.env])
    inventory.resolved_secrets = secrets
    return inventory


def key_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_FIELD = re.compile(r"field `([^`]+)`")


def _translate(text: str, path: Path) -> InventoryError:
    """msgspec's "Expected `int` <= 65535 - at `$.hosts.app[1].port`" as an InventoryError
    naming the file and the key path, with a hint."""
    match = _AT.match(text)
    message = match["message"] if match else text
    loc: tuple[int | str, ...] = tuple(
        int(index) if index else name
        for name, index in _PART.findall(match["path"] or "" if match else ""))
    field = _FIELD.search(message)
    hint = "See inventories/example.yml for the expected form."
    if message.startswith("Object contains unknown field") and field:
        name = field.group(1)
        valid = _keys_at(loc)
        loc = (*loc, name)
        close = difflib.get_close_matches(name, valid, n=1)
        message = f"unknown key '{name}'."
        if close:
            hint = f"Did you mean '{close[0]}'?"
        elif valid:
            hint = f"Valid keys here: {', '.join(valid)}."
    elif message.startswith("Object missing required field") and field:
        loc = (*loc, field.group(1))
        message = "this key is required."
        hint = "See inventories/example.yml for what it holds."
    elif message.startswith("Invalid enum value") and _literals_at(loc):
        allowed = _literals_at(loc)
        given = message.split(" ", 3)[3]
        message = f"{given} is not one of the words this key accepts."
        close = difflib.get_close_matches(given.strip("'"), [str(v) for v in allowed], n=1)
        hint = f"Did you mean '{close[0]}'?" if close else (
            f"Write {' or '.join(repr(value) for value in allowed)}"
            + (", or a number." if _accepts_number_at(loc) else "."))
    else:
        message = _TYPE_NAME.sub(lambda m: _TYPE_NAMES.get(m[1], m[1]), message)
        message = message[0].lower() + message[1:] + "."
    return InventoryError(message, where=f"{path}: {key_path(loc)}", hint=hint)


_TYPE_NAME = re.compile(r"`([^`]+)`")
_TYPE_NAMES = {
    "float": "a number", "int": "a whole number", "str": "text", "bool": "true or false",
    "array": "a list", "object": "a mapping", "null": "nothing (null)",
    "str | object": "a host name or a mapping", "object | null": "a mapping or null",
    "str | null": "text or null", "int | null": "a whole number or null",
}


def _type_at(loc: tuple[int | str, ...]) -> Any:
    """The type the model expects at `loc`, found by walking the structs' type information."""
    from msgspec import inspect

    node: Any = inspect.type_info(Inventory)
    for part in loc:
        node = _unwrap(node)
        if isinstance(part, str) and isinstance(node, inspect.StructType):
            node = next((f.type for f in node.fields if f.encode_name == part), None)
        elif isinstance(node, (inspect.ListType, inspect.VarTupleType)):
            node = node.item_type
        elif isinstance(node, inspect.DictType):
            node = node.value_type
        else:
            return None
    return node


def _keys_at(loc: tuple[int | str, ...]) -> list[str]:
    """The keys a mapping accepts at `loc`."""
    from msgspec import inspect

    node = _unwrap(_type_at(loc))
    return [f.encode_name for f in node.fields] if isinstance(node, inspect.StructType) else []


def _alternatives_at(loc: tuple[int | str, ...]) -> list[Any]:
    from msgspec import inspect

    node = _type_at(loc)
    return list(node.types) if isinstance(node, inspect.UnionType) else [node]


def _literals_at(loc: tuple[int | str, ...]) -> list[Any]:
    from msgspec import inspect

    return [value for node in _alternatives_at(loc) if isinstance(node, inspect.LiteralType)
            for value in node.values]


def _accepts_number_at(loc: tuple[int | str, ...]) -> bool:
    from msgspec import inspect

    return any(isinstance(node, (inspect.FloatType, inspect.IntType))
               for node in _alternatives_at(loc))


def _unwrap(node: Any) -> Any:
    from msgspec import inspect

    if isinstance(node, inspect.UnionType):
        structs = [t for t in node.types if isinstance(t, inspect.StructType)]
        return structs[0] if structs else node
    return node


def _check_cross_references(inventory: Inventory, path: Path) -> None:
    def fail(key: str, message: str, hint: str) -> None:
        raise InventoryError(message, where=f"{path}: {key}", hint=hint)

    if inventory.app is not None and not inventory.app.root.startswith("/"):
        fail("app.root", "must be an absolute path on the app hosts.",
             "Write it as /srv/NAME or similar.")
    if not inventory.health.path.startswith("/"):
        fail("health.path", "must start with '/'.", "For example /health.")
    if not re.fullmatch(r"/[^\s\x00-\x1f\x7f]*", inventory.health.path):
        fail("health.path", "must not contain spaces or control characters (a CR/LF would "
             "inject headers into the request).", "Percent-encode them, e.g. %20.")
    for index, url in enumerate(inventory.verify.urls):
        if not re.fullmatch(r"https?://[^\s/?#\x00-\x1f\x7f]+[^\s\x00-\x1f\x7f]*", url):
            fail(f"verify.urls[{index}]", f"{url!r} is not an http:// or https:// URL.",
                 "Write the public URL with its scheme, e.g. https://shop.example.com/.")
    jumps = [("ssh.jump", inventory.ssh.jump)] + [
        (f"hosts.{role}[{index}].jump", host.jump)
        for role in ("app", "balancer")
        for index, host in enumerate(getattr(inventory.hosts, role))]
    for key, jump in jumps:
        for spec in (jump or "").split(",") if jump else []:
            if not spec.strip():
                continue
            hostport = spec.strip().rpartition("@")[2]
            port = hostport.split(":")[1] if hostport.count(":") == 1 else None
            if spec.strip().lower() != "none" and (not hostport or (
                    port is not None and not (port.isdigit() and 1 <= int(port) <= 65535))):
                fail(key, f"{spec.strip()!r} is not a jump host ([user@]host[:port], port "
                     "1–65535).", "For example deploy@bastion.example.com:2222.")
    env_names = [(f"app.env.{name}", name)
                 for name in (inventory.app.env if inventory.app else {})]
    env_names += [(f"secrets.{name}", name) for name in inventory.secrets]
    for key, name in env_names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            fail(key, f"{name!r} is not an environment variable name.",
                 "Use letters, digits and '_', not starting with a digit (e.g. DATABASE_URL).")
    for key in ("worker_pattern", "task_worker_pattern"):
        pattern = getattr(inventory.app, key, None) if inventory.app else None
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                fail(f"app.{key}", f"{pattern!r} is not a regular expression: {exc}.",
                     "Write a Python regex such as 'shop-\\w+: (worker|task) #'.")
    for index, host in enumerate(inventory.hosts.app):
        if host.app_root is not None and not host.app_root.startswith("/"):
            fail(f"hosts.app[{index}].app_root", "must be an absolute path on the app host.",
                 "Write it as /srv/NAME or similar.")
    for role in ("app", "balancer"):
        for index, host in enumerate(getattr(inventory.hosts, role)):
            for key in ("name", "address"):
                value = getattr(host, key)
                if value is not None and not re.fullmatch(r"[^\s\x00-\x1f\x7f]+", value):
                    fail(f"hosts.{role}[{index}].{key}",
                         f"{value!r} contains spaces or control characters (a newline would "
                         "write extra lines into the balancer config).",
                         "Write a host name or an IP address.")
        names: set[str] = set()
        for index, host in enumerate(getattr(inventory.hosts, role)):
            if host.name in names:
                fail(
                    f"hosts.{role}[{index}].name",
                    f"host '{host.name}' is listed twice.",
                    "Each host appears once per role.",
                )
            names.add(host.name)
    app_by_name = {h.name: h for h in inventory.hosts.app}
    for index, host in enumerate(inventory.hosts.balancer):
        twin = app_by_name.get(host.name)
        if twin is not None and twin != host:
            fail(
                f"hosts.balancer[{index}]",
                f"host '{host.name}' is also an app host but with different settings.",
                "A host that is both app and balancer must be described identically in both lists.",
            )
    prometheus = inventory.canary.prometheus
    if prometheus is not None:
        if not _is_base_url(prometheus.url):  # never echoed: it may hold a password
            fail("canary.prometheus.url", "is not an http:// or https:// base URL with a host "
                 "(and a numeric port, if any).",
                 "Write the Prometheus server's URL, e.g. http://prometheus:9090; "
                 "percent-encode a '/', '@' or ':' in a user name or password.")
        query_names: set[str] = set()
        for index, query in enumerate(prometheus.queries):
            where = f"canary.prometheus.queries[{index}]"
            if query.max is None and query.min is None:
                fail(where, f"query {query.name!r} has neither max nor min: nothing to judge.",
                     "Give it `max:` (a breach above it), `min:` (below it), or both.")
            if query.max is not None and query.min is not None and query.min > query.max:
                fail(where, f"query {query.name!r} has min {query.min:g} above max "
                     f"{query.max:g}: every value would be a breach.",
                     "min is the lowest value that passes, max the highest.")
            if query.name in query_names:
                fail(f"{where}.name", f"{query.name!r} names two queries.",
                     "Each query's name says which metric a breach is about.")
            query_names.add(query.name)
    sticky = inventory.canary.sticky
    if sticky is not None and (sticky.header is None) == (sticky.cookie is None):
        fail("canary.sticky", "give either `header` or `cookie`: what marks a tester's "
             "request.", "E.g. `sticky: {header: X-Canary, value: \"1\"}`.")
    weights = [step.weight for step in inventory.canary.steps]
    for index, (earlier, later) in enumerate(itertools.pairwise(weights), start=1):
        if later <= earlier:
            fail(f"canary.steps[{index}].weight",
                 f"{later} does not rise above the step before it ({earlier}).",
                 "Steps give the canary a rising share of the traffic, e.g. 5, 25, 50.")
    colours = inventory.colours
    if colours.mode == "port":
        if colours.blue.port == colours.green.port:
            fail(
                "colours.green.port",
                f"blue and green both use port {colours.blue.port}; in port mode both colours "
                "run on every app host, so their ports must differ.",
                "Pick another port for green (e.g. blue 9501, green 9502).",
            )
        for colour in Colour:
            if colours.spec(colour).hosts is not None:
                fail(
                    f"colours.{colour}.hosts",
                    "per-colour host lists only apply in host mode.",
                    "Set colours.mode: host, or remove this list.",
                )
    else:
        claimed: dict[str, Colour] = {}
        for colour in Colour:
            hosts = colours.spec(colour).hosts
            if not hosts:
                fail(
                    f"colours.{colour}.hosts",
                    "host mode needs a list of app hosts for each colour.",
                    "List the names of hosts.app entries that run this colour.",
                )
            for index, name in enumerate(hosts or []):
                if name not in app_by_name:
                    fail(
                        f"colours.{colour}.hosts[{index}]",
                        f"'{name}' is not a host under hosts.app.",
                        f"Known app hosts: {', '.join(app_by_name)}.",
                    )
                if claimed.get(name, colour) is not colour:
                    fail(
                        f"colours.{colour}.hosts[{index}]",
                        f"'{name}' already runs {claimed[name]}; in host mode a host runs one "
                        "colour.",
                        "Use port mode to run both colours on the same host.",
                    )
                claimed[name] = colour
    if inventory.balancer is not None:
        for index, host in enumerate(inventory.hosts.balancer):
            settings = inventory.balancer_settings(host)
            key = f"hosts.balancer[{index}].balancer.flip" if host.balancer else "balancer.flip"
            if settings.flip == "runtime" and settings.kind != "haproxy":
                fail(key, f"flip: runtime needs HAProxy's runtime API; {settings.kind} has "
                     "none.", f"Use flip: reload with {settings.kind}.")
            if settings.flip == "runtime" and not settings.admin_socket:
                fail(key, "flip: runtime needs balancer.admin_socket (HAProxy's stats socket "
                     "at level admin).",
                     "Add `stats socket /run/haproxy/admin.sock mode 600 level admin` to "
                     "HAProxy's global section and name that path here.")
            log = (f"hosts.balancer[{index}].balancer.access_log"
                   if host.balancer and host.balancer.access_log else "balancer.access_log")
            if settings.access_log and settings.kind != "nginx":
                fail(log, f"access_log is read for nginx; {settings.kind} keeps its own "
                     "counters or none.",
                     "Remove it (with mixed balancers, set it on each nginx host's own "
                     "`balancer:` instead); HAProxy's counters are read through admin_socket.")
            if settings.access_log and not settings.access_log.startswith("/"):
                fail(log, "must be an absolute path on the balancer host.",
                     "For example /var/log/nginx/shop-upstream.log.")
    if inventory.ssh.trust_on_first_use and not inventory.ssh.strict_host_keys:
        fail(
            "ssh.trust_on_first_use",
            "trust_on_first_use only makes sense with strict_host_keys on.",
            "Remove one of the two settings.",
        )


def _is_base_url(url: str) -> bool:
    """An http(s) URL with a host, a port that is a number, and no query or fragment."""
    from urllib.parse import urlsplit

    if re.search(r"[\s\x00-\x1f\x7f]", url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname)
            and not parts.query and not parts.fragment)
