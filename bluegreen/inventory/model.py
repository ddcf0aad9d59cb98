"""The inventory model: msgspec structs, one per section, with the checks a value needs on its
own (ranges, patterns, literals). The JSON Schema and docs/inventory.md are generated from it."""

from __future__ import annotations

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
    openssh_uploads: bool = True
    sudo: bool = False
    connect_timeout: Seconds = 10.0
    command_timeout: Seconds = 120.0
    parallelism: Annotated[int, msgspec.Meta(ge=1, le=256)] = 64


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
    access_log: str | None = None


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
    # where the hosts fetch a release themselves (`deploy --release ID --sha256 HEX`):
    # a template with {{ release }} and {{ service }}
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://")] | None = None
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
    via: Literal["host", "ssh", "direct"] = "host"


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
    access_log: str | None = None  # nginx: the log a canary's analysis reads (NGINX_LOG_FORMAT)
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
    # start the target colour this many instances at a time (a count, or a percentage of them),
    # each batch health-checked before the next starts; null: all at once
    batch: Annotated[int, msgspec.Meta(ge=1)] | Annotated[
        str, msgspec.Meta(pattern=r"^(100|[1-9]?[0-9])%$")] | None = None

    def batch_size(self, instances: int) -> int:
        if self.batch is None:
            return max(instances, 1)
        if isinstance(self.batch, int):
            return self.batch
        return max(1, instances * int(self.batch[:-1]) // 100)

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
    pre_step: list[Hook] = []
    post_step: list[Hook] = []
    on_abort: list[Hook] = []
    on_failure: list[Hook] = []


class SecretRef(_Strict, frozen=True):
    env: Text


class CanaryStep(_Strict, frozen=True):
    weight: Annotated[int, msgspec.Meta(ge=1, le=99)]  # per cent of the traffic
    # seconds this step lasts before its analysis and the next step, or "manual": until
    # `bluegreen canary promote`
    pause: NonNegative | Literal["manual"] = "manual"

    @property
    def pause_seconds(self) -> float | None:
        return None if self.pause == "manual" else float(self.pause)


class PrometheusQuery(_Strict, frozen=True):
    # how the analysis names this metric ("error ratio")
    name: Annotated[str, msgspec.Meta(pattern=r"^[^\x00-\x1f\x7f]+$", max_length=64)]
    # PromQL giving one number, a template: {{ canary }}, {{ stable }}, {{ release }},
    # {{ weight }}, {{ service }}, {{ window }} (the time since the step began, "93s")
    query: Text
    max: float | None = None  # above it: a breach
    min: float | None = None  # below it: a breach


class PrometheusSettings(_Strict, frozen=True):
    url: Text  # the server's base URL, e.g. http://prometheus.internal:9090
    queries: Annotated[tuple[PrometheusQuery, ...], msgspec.Meta(min_length=1)]
    timeout: Seconds = 5.0


class CanarySticky(_Strict, frozen=True, kw_only=True):
    # requests carrying this header (or cookie) with `value` always reach the canary
    header: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$",
                                        max_length=64)] | None = None
    cookie: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_]+$", max_length=64)] | None = None
    value: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._~-]*$",
                                       max_length=128)]


class CanarySettings(_Strict, frozen=True):
    # every deploy is a canary through these steps (unless `deploy --canary`/`--no-canary`)
    steps: tuple[CanaryStep, ...] = ()
    # at most this per cent of the canary's requests may be answered 5xx
    max_error_rate: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = None
    # the canary's mean response time at most this many times the stable colour's
    max_latency_ratio: Annotated[float, msgspec.Meta(ge=1, le=1000)] | None = None
    # the canary is judged only once it answered this many requests since its step began
    min_requests: Annotated[int, msgspec.Meta(ge=1)] = 20
    # analyses in a row that may breach a threshold before the canary is aborted; each one
    # within the limit holds the canary at its weight and judges it again on fresh counters
    failure_limit: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    # queries to a Prometheus server, judged at each step beside the balancer's counters
    prometheus: PrometheusSettings | None = None
    # testers' requests (a header or cookie) go to the canary whatever its weight
    sticky: CanarySticky | None = None

    @property
    def analysed(self) -> bool:
        return self.counted or self.prometheus is not None

    @property
    def counted(self) -> bool:
        """Judged from the balancers' own per-server counters."""
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
