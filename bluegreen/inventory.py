"""Inventory: one YAML file describing one service in one environment, validated with msgspec
into typed structs (pydantic cost ~0.11 s of start-up on every command; msgspec ~0.03 s). Every
error names the file and the key path (``hosts.app[1].port``) and never shows a traceback.
Imports model, shell and errors; never a network library."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from bluegreen.errors import InventoryError
from bluegreen.model import Colour
from bluegreen.shell import Secret

# msgspec resolves these annotations at class creation, so they must be real names here.
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
WEEK = 604_800.0  # no wait is longer: .inf or 1e308 would mean "forever"
Seconds = Annotated[float, msgspec.Meta(gt=0, le=WEEK)]
NonNegative = Annotated[float, msgspec.Meta(ge=0, le=WEEK)]
Text = Annotated[str, msgspec.Meta(min_length=1)]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class _Mutable(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, dict=True):
    pass


class SSHSettings(_Strict, frozen=True):
    user: str | None = None
    port: Port | None = None
    identity_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    strict_host_keys: bool = True
    trust_on_first_use: bool = False
    config_file: str | None = "~/.ssh/config"
    jump: str | None = None
    use_agent: bool = True
    sudo: bool = False
    connect_timeout: Seconds = 10.0
    command_timeout: Seconds = 120.0
    parallelism: Annotated[int, msgspec.Meta(ge=1, le=256)] = 10


class BalancerOverride(_Strict, frozen=True):
    """Per-balancer-host overrides of the `balancer:` section (mixed drivers, other paths)."""

    kind: Literal["nginx", "haproxy", "caddy"] | None = None
    managed_file: str | None = None
    main_config: str | None = None
    prefix: str | None = None
    pid_file: str | None = None
    binary: str | None = None
    template: str | None = None
    reload: str | None = None
    state_dir: str | None = None
    flip: Literal["reload", "runtime"] | None = None
    admin_socket: str | None = None
    admin_address: str | None = None


class HostSpec(_Strict, frozen=True):
    name: Text
    address: str | None = None
    port: Port | None = None
    user: str | None = None
    jump: str | None = None
    sudo: bool | None = None
    connection: Literal["ssh", "local"] = "ssh"
    app_root: str | None = None
    balancer: BalancerOverride | None = None


HostEntry = str | HostSpec


class Hosts(_Strict, frozen=True):
    """Entries may be written as a bare name or a mapping; `app` and `balancer` give HostSpecs."""

    app_entries: Annotated[list[HostEntry], msgspec.Meta(min_length=1)] = msgspec.field(
        name="app")
    balancer_entries: Annotated[list[HostEntry], msgspec.Meta(min_length=1)] = msgspec.field(
        name="balancer")

    @property
    def app(self) -> list[HostSpec]:
        return [_host(entry) for entry in self.app_entries]

    @property
    def balancer(self) -> list[HostSpec]:
        return [_host(entry) for entry in self.balancer_entries]


def _host(entry: HostEntry) -> HostSpec:
    return HostSpec(name=entry) if isinstance(entry, str) else entry


class ColourSpec(_Strict, frozen=True):
    port: Port
    hosts: list[str] | None = None


class Colours(_Strict, frozen=True):
    mode: Literal["port", "host"] = "port"
    blue: ColourSpec = ColourSpec(port=9501)
    green: ColourSpec = ColourSpec(port=9502)

    def spec(self, colour: Colour) -> ColourSpec:
        return self.blue if colour is Colour.BLUE else self.green


class ReleaseSettings(_Strict, frozen=True):
    source: str | None = None
    keep: Annotated[int, msgspec.Meta(ge=2)] = 5


class AppSettings(_Strict, frozen=True):
    root: Text
    start: Text
    stop: Text
    status: str | None = None
    log: str | None = None
    env: dict[str, str] = {}
    start_timeout: Seconds = 60.0
    stop_timeout: Seconds = 30.0
    pid_file: str | None = None
    reload_signal: Annotated[str, msgspec.Meta(pattern=r"^(SIG)?[A-Z0-9+-]+$")] = "HUP"
    task_reload_signal: Annotated[str, msgspec.Meta(pattern=r"^(SIG)?[A-Z0-9+-]+$")] = "USR2"
    reload_timeout: Seconds = 30.0
    # how a reload reaches the master: e.g. `sudo -n -u shop kill -s {{ signal }} {{ pid }}`
    # when the service runs as another user than the deploy user
    signal: Text = "kill -s {{ signal }} {{ pid }}"
    # regexes searched in the command lines of the master's processes: the ones a reload
    # replaces (a Swoole user process from addProcess is never replaced, so must not match)
    worker_pattern: str | None = None
    task_worker_pattern: str | None = None
    reload_settle: NonNegative = 1.0  # the new workers must live this long: no crash loop
    # asks an instance to let its long-lived connections go (a signal, an HTTP call), before
    # `retire` or a deploy stops a colour that still holds connections
    drain: str | None = None
    drain_timeout: NonNegative = 30.0  # how long a deploy waits for the idle colour to drain
    server_mode: Literal["process", "base"] | None = None


class HealthSettings(_Strict, frozen=True):
    path: str = "/"
    expect_status: Annotated[int, msgspec.Meta(ge=100, le=599)] = 200
    expect_body: str | None = None
    timeout: Seconds = 2.0
    interval: NonNegative = 0.5
    retries: Annotated[int, msgspec.Meta(ge=1)] = 30
    successes: Annotated[int, msgspec.Meta(ge=1)] = 1
    via: Literal["ssh", "direct"] = "ssh"


class BalancerSettings(_Strict, frozen=True):
    managed_file: Text
    kind: Literal["nginx", "haproxy", "caddy"] = "nginx"
    main_config: str | None = None
    prefix: str | None = None
    pid_file: str | None = None
    binary: str | None = None
    template: str | None = None
    upstream_name: str | None = None
    reload: str | None = None
    state_dir: str | None = None
    upstream_address: str | None = None
    reload_timeout: Seconds = 10.0
    flip: Literal["reload", "runtime"] = "reload"
    admin_socket: str | None = None  # HAProxy's stats socket (level admin)
    admin_address: str | None = None  # Caddy's admin API (default localhost:2019)
    drain_timeout: NonNegative = 30.0


class VerifySettings(_Strict, frozen=True):
    urls: list[str] = []
    expect_body: str | None = None
    expect_header: str | None = None
    timeout: Seconds = 3.0
    attempts: Annotated[int, msgspec.Meta(ge=1)] = 5


class DeploySettings(_Strict, frozen=True):
    # how many target instances may fail their health check with the deploy still flipping
    # (those stay out of traffic): a count, or a percentage of the instances ("25%")
    max_unhealthy: Annotated[int, msgspec.Meta(ge=0)] | Annotated[
        str, msgspec.Meta(pattern=r"^(100|[1-9]?[0-9])%$")] = 0
    # drain an idle colour that still holds connections before stopping it (false: stop it at
    # once, as `deploy --no-drain`; what it cuts is still counted)
    drain: bool = True

    def allowed_unhealthy(self, instances: int) -> int:
        if isinstance(self.max_unhealthy, int):
            return self.max_unhealthy
        return instances * int(self.max_unhealthy[:-1]) // 100


class LockSettings(_Strict, frozen=True):
    stale_after: Seconds = 300.0


class Hook(_Strict, frozen=True):
    """A command run at a point of an operation: here (`on: local`) or on every host of a role."""

    run: Text
    on: Literal["local", "app", "balancer"] = "local"
    timeout: Seconds = 300.0


class Hooks(_Strict, frozen=True):
    pre_deploy: list[Hook] = []
    post_deploy: list[Hook] = []
    pre_flip: list[Hook] = []
    post_flip: list[Hook] = []
    post_rollback: list[Hook] = []
    pre_reload: list[Hook] = []
    post_reload: list[Hook] = []
    pre_retire: list[Hook] = []
    post_retire: list[Hook] = []
    on_failure: list[Hook] = []


class SecretRef(_Strict, frozen=True):
    env: Text


class CanarySettings(_Strict, frozen=True):
    # at most this per cent of the canary's requests may be answered 5xx
    max_error_rate: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = None
    # the canary's mean response time at most this many times the stable colour's
    max_latency_ratio: Annotated[float, msgspec.Meta(ge=1, le=1000)] | None = None
    # the canary is judged only once it answered this many requests since its step began
    min_requests: Annotated[int, msgspec.Meta(ge=1)] = 20

    @property
    def analysed(self) -> bool:
        return self.max_error_rate is not None or self.max_latency_ratio is not None


class Inventory(_Mutable):
    """The validated inventory. `path` and `resolved_secrets` are set after decoding (they are
    not keys of the file)."""

    service: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
    hosts: Hosts
    ssh: SSHSettings = SSHSettings()
    colours: Colours = Colours()
    release: ReleaseSettings = ReleaseSettings()
    app: AppSettings | None = None
    health: HealthSettings = HealthSettings()
    balancer: BalancerSettings | None = None
    verify: VerifySettings = VerifySettings()
    deploy: DeploySettings = DeploySettings()
    canary: CanarySettings = CanarySettings()
    lock: LockSettings = LockSettings()
    hooks: Hooks = Hooks()
    secrets: dict[str, SecretRef] = {}

    def __post_init__(self) -> None:
        self.path = Path("<inventory>")
        self.resolved_secrets: dict[str, Secret] = {}

    def balancer_settings(self, host: HostSpec) -> BalancerSettings:
        """The `balancer:` section with this balancer host's own overrides applied."""
        if self.balancer is None:
            raise InventoryError("this command needs a `balancer:` section.",
                                 where=f"{self.path}: balancer",
                                 hint="See inventories/example.yml.")
        if host.balancer is None:
            return self.balancer
        changes = {k: v for k, v in msgspec.structs.asdict(host.balancer).items()
                   if v is not None}
        return msgspec.structs.replace(self.balancer, **changes)

    @property
    def upstream_name(self) -> str:
        """The nginx upstream / HAProxy backend the service's servers live in."""
        return (self.balancer.upstream_name if self.balancer else None) or self.service

    def state_dir_for(self, host: HostSpec) -> str:
        configured = self.balancer_settings(host).state_dir if self.balancer else None
        return configured or f"/var/lib/bluegreen/{self.service}"

    def app_root_for(self, host: HostSpec) -> str:
        assert self.app is not None
        return (host.app_root or self.app.root).rstrip("/") or "/"

    @property
    def all_hosts(self) -> list[HostSpec]:
        """Every host once, app hosts first, in inventory order."""
        seen: dict[str, HostSpec] = {}
        for host in [*self.hosts.app, *self.hosts.balancer]:
            seen.setdefault(host.name, host)
        return list(seen.values())

    @property
    def primary_balancer(self) -> HostSpec:
        return self.hosts.balancer[0]

    def colour_hosts(self, colour: Colour) -> list[HostSpec]:
        spec = self.colours.spec(colour)
        if self.colours.mode == "port" or spec.hosts is None:
            return self.hosts.app
        return [h for h in self.hosts.app if h.name in spec.hosts]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of an inventory file, generated from these structs."""
    schema: dict[str, Any] = msgspec.json.schema(Inventory)
    return schema


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


def parse_yaml(text: str, *, source: str) -> Any:
    import yaml

    class _NoDuplicates(yaml.SafeLoader):
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


def _keys_at(loc: tuple[int | str, ...]) -> list[str]:
    """The keys a mapping accepts at `loc`, found by walking the structs' type information."""
    from msgspec import inspect

    node: Any = inspect.type_info(Inventory)
    for part in loc:
        node = _unwrap(node)
        if isinstance(part, str) and isinstance(node, inspect.StructType):
            node = next((f.type for f in node.fields if f.encode_name == part), None)
        elif isinstance(node, (inspect.ListType, inspect.DictType)):
            node = node.item_type if isinstance(node, inspect.ListType) else node.value_type
        else:
            return []
    node = _unwrap(node)
    return [f.encode_name for f in node.fields] if isinstance(node, inspect.StructType) else []


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
    if inventory.ssh.trust_on_first_use and not inventory.ssh.strict_host_keys:
        fail(
            "ssh.trust_on_first_use",
            "trust_on_first_use only makes sense with strict_host_keys on.",
            "Remove one of the two settings.",
        )
