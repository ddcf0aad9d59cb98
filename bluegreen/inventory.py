"""Inventory: one YAML file describing one service in one environment, validated into frozen
models. Every error names the file and the key path (``hosts.app[1].port``) and never shows a
traceback. Imports model, shell and errors; never a network library."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bluegreen.errors import InventoryError
from bluegreen.model import Colour
from bluegreen.shell import Secret

Port = int
_PORT = {"ge": 1, "le": 65535}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SSHSettings(_Strict):
    user: str | None = None
    port: int | None = Field(None, **_PORT)
    identity_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    strict_host_keys: bool = True
    trust_on_first_use: bool = False
    config_file: str | None = "~/.ssh/config"
    jump: str | None = None
    use_agent: bool = True
    sudo: bool = False
    connect_timeout: float = Field(10.0, gt=0)
    command_timeout: float = Field(120.0, gt=0)
    parallelism: int = Field(10, ge=1, le=256)


class BalancerOverride(_Strict):
    """Per-balancer-host overrides of the `balancer:` section (mixed drivers, other paths)."""

    kind: Literal["nginx", "haproxy"] | None = None
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


class HostSpec(_Strict):
    name: str = Field(min_length=1)
    address: str | None = None
    port: int | None = Field(None, **_PORT)
    user: str | None = None
    jump: str | None = None
    sudo: bool | None = None
    connection: Literal["ssh", "local"] = "ssh"
    app_root: str | None = None
    balancer: BalancerOverride | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("app_root")
    @classmethod
    def _absolute_root(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must be an absolute path on the app host")
        return value


class Hosts(_Strict):
    app: list[HostSpec] = Field(min_length=1)
    balancer: list[HostSpec] = Field(min_length=1)


class ColourSpec(_Strict):
    port: int = Field(**_PORT)
    hosts: list[str] | None = None


class Colours(_Strict):
    mode: Literal["port", "host"] = "port"
    blue: ColourSpec = ColourSpec(port=9501)
    green: ColourSpec = ColourSpec(port=9502)

    def spec(self, colour: Colour) -> ColourSpec:
        return self.blue if colour is Colour.BLUE else self.green


class ReleaseSettings(_Strict):
    source: str | None = None
    keep: int = Field(5, ge=2)


class AppSettings(_Strict):
    root: str = Field(min_length=1)
    start: str = Field(min_length=1)
    stop: str = Field(min_length=1)
    status: str | None = None
    log: str | None = None
    env: dict[str, str] = {}
    start_timeout: float = Field(60.0, gt=0)
    stop_timeout: float = Field(30.0, gt=0)

    @field_validator("root")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path on the app hosts")
        return value.rstrip("/") or "/"


class HealthSettings(_Strict):
    path: str = "/"
    expect_status: int = Field(200, ge=100, le=599)
    expect_body: str | None = None
    timeout: float = Field(2.0, gt=0)
    interval: float = Field(0.5, ge=0)
    retries: int = Field(30, ge=1)
    successes: int = Field(1, ge=1)
    via: Literal["ssh", "direct"] = "ssh"

    @field_validator("path")
    @classmethod
    def _leading_slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value


class BalancerSettings(_Strict):
    kind: Literal["nginx", "haproxy"] = "nginx"
    managed_file: str = Field(min_length=1)
    main_config: str | None = None
    prefix: str | None = None
    pid_file: str | None = None
    binary: str | None = None
    template: str | None = None
    upstream_name: str | None = None
    reload: str | None = None
    state_dir: str | None = None
    upstream_address: str | None = None
    reload_timeout: float = Field(10.0, gt=0)
    flip: Literal["reload", "runtime"] = "reload"
    admin_socket: str | None = None
    drain_timeout: float = Field(30.0, ge=0)


class VerifySettings(_Strict):
    urls: list[str] = []
    expect_body: str | None = None
    expect_header: str | None = None
    timeout: float = Field(3.0, gt=0)
    attempts: int = Field(5, ge=1)


class LockSettings(_Strict):
    stale_after: float = Field(300.0, gt=0)


class SecretRef(_Strict):
    env: str = Field(min_length=1)


class Inventory(_Strict):
    service: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    ssh: SSHSettings = SSHSettings()
    hosts: Hosts
    colours: Colours = Colours()
    release: ReleaseSettings = ReleaseSettings()
    app: AppSettings | None = None
    health: HealthSettings = HealthSettings()
    balancer: BalancerSettings | None = None
    verify: VerifySettings = VerifySettings()
    lock: LockSettings = LockSettings()
    secrets: dict[str, SecretRef] = {}

    path: Path = Field(Path("<inventory>"), exclude=True)
    resolved_secrets: dict[str, Secret] = Field(default_factory=dict, exclude=True)

    def balancer_settings(self, host: HostSpec) -> BalancerSettings:
        """The `balancer:` section with this balancer host's own overrides applied."""
        if self.balancer is None:
            raise InventoryError("this command needs a `balancer:` section.",
                                 where=f"{self.path}: balancer",
                                 hint="See inventories/example.yml.")
        if host.balancer is None:
            return self.balancer
        changes = {k: v for k, v in host.balancer.model_dump().items() if v is not None}
        return self.balancer.model_copy(update=changes)

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
            return list(self.hosts.app)
        return [h for h in self.hosts.app if h.name in spec.hosts]


def load_inventory(
    path: str | os.PathLike[str], *, environ: dict[str, str] | None = None
) -> Inventory:
    path = Path(path)
    environ = dict(os.environ) if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(
            "inventory file not found.",
            where=str(path),
            hint="Pass -i PATH or set BLUEGREEN_INVENTORY; see inventories/example.yml.",
        ) from None
    except OSError as exc:
        raise InventoryError(f"cannot read inventory: {exc.strerror}.", where=str(path)) from None
    data = parse_yaml(text, source=str(path))
    return validate_inventory(data, path=path, environ=environ)


def parse_yaml(text: str, *, source: str) -> Any:
    import yaml

    class _NoDuplicates(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            if key in mapping:
                mark = key_node.start_mark
                raise InventoryError(
                    f"key '{key}' appears twice in the same mapping.",
                    where=f"{source}:{mark.line + 1}:{mark.column + 1}",
                    hint="Remove one of them; YAML would silently keep only the last.",
                )
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
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, path) from None
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
    return inventory.model_copy(update={"path": path, "resolved_secrets": secrets})


def key_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _first_error(exc: ValidationError, path: Path) -> InventoryError:
    error = exc.errors(include_url=False)[0]
    loc = tuple(p for p in error["loc"] if p != "function-before[_from_string(), HostSpec]")
    where = f"{path}: {key_path(loc)}"
    kind = error["type"]
    hint = None
    if kind == "extra_forbidden":
        name = str(loc[-1]) if loc else ""
        message = f"unknown key '{name}'."
        valid = _keys_at(loc[:-1])
        close = difflib.get_close_matches(name, valid, n=1)
        if close:
            hint = f"Did you mean '{close[0]}'?"
        elif valid:
            hint = f"Valid keys here: {', '.join(valid)}."
        else:
            hint = "See inventories/example.yml."
    elif kind == "missing":
        message = "this key is required."
        hint = "See inventories/example.yml for what it holds."
    else:
        message = f"{error['msg'][0].lower()}{error['msg'][1:]} (got {error.get('input')!r})."
        hint = "See inventories/example.yml for the expected form."
    more = len(exc.errors()) - 1
    if more:
        hint = f"{hint} ({more} more problem(s) after this one.)"
    return InventoryError(message, where=where, hint=hint)


def _keys_at(loc: tuple[int | str, ...]) -> list[str]:
    """The keys a mapping accepts at `loc`, found by walking the models' annotations."""
    annotation: Any = Inventory
    for part in loc:
        model = _model_in(annotation)
        if isinstance(part, str) and model is not None and part in model.model_fields:
            annotation = model.model_fields[part].annotation
        else:  # a list index or a dict key: step into the element type
            args = [a for a in getattr(annotation, "__args__", ()) or () if a is not type(None)]
            annotation = args[-1] if args else None
    model = _model_in(annotation)
    return [name for name in model.model_fields if name not in _HIDDEN] if model else []


_HIDDEN = {"path", "resolved_secrets"}


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _check_cross_references(inventory: Inventory, path: Path) -> None:
    def fail(key: str, message: str, hint: str) -> None:
        raise InventoryError(message, where=f"{path}: {key}", hint=hint)

    for role in ("app", "balancer"):
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
                fail(key, "flip: runtime needs HAProxy's runtime API; nginx has none.",
                     "Use flip: reload with nginx.")
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
