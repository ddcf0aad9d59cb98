"""What every inventory key means, kept apart from the model so that inventory/model.py stays
readable: `inventory_schema()` merges these into the JSON Schema (editors show them on hover)
and so into docs/inventory.md. Keyed by the schema's `$defs` names, then by key."""

from __future__ import annotations

APP_VARIABLES = ", ".join(f"`{name}`" for name in (
    "service", "colour", "port", "address", "host", "release", "release_dir", "current_dir",
    "app_root"))

# Descriptions of the objects the model gives none (a docstring there wins).
OBJECTS: dict[str, str] = {
    "HostSpec": "A host written as a mapping: its name, how to reach it, and its own overrides.",
    "SSHSettings": (
        "How hosts are reached. What is left out here comes from `~/.ssh/config` "
        "(`ssh.config_file`), then from ssh's defaults; per-host keys under `hosts` win over "
        "these."),
    "Colours": "Where the two colours run, and on which ports.",
    "ColourSpec": "One colour: its port and, in host mode, its app hosts.",
    "ReleaseSettings": (
        "What is deployed: a release is uploaded to `<app root>/releases/<release>/` on every "
        "app host of the target colour."),
    "AppSettings": (
        "How a colour's server is started, stopped, checked and reloaded on an app host. "
        "Commands are jinja2 templates run by `/bin/sh` on the app host, with the variables "
        f"{APP_VARIABLES} (every substituted value is shell-quoted)."),
    "HealthSettings": (
        "The health check every instance of the target colour must pass before it gets "
        "traffic."),
    "BalancerSettings": (
        "The load balancer in front of the colours, the same on every host under "
        "`hosts.balancer` unless that host overrides it."),
    "VerifySettings": "Verification of a flip through the public URL(s).",
    "CanarySettings": (
        "A canary's steps, and how it is judged: thresholds the analysis checks at each step, "
        "from the balancer's own per-server counters and from Prometheus queries."),
    "CanaryStep": "One step of a canary: its share of the traffic and how long it lasts.",
    "PrometheusSettings": (
        "A Prometheus server the canary's analysis asks, at each step, from the machine "
        "running bluegreen (its HTTP API's instant queries)."),
    "PrometheusQuery": "One metric of a canary's analysis: a PromQL query and its bounds.",
    "CanarySticky": (
        "Testers' requests — marked by a header or a cookie — reach the canary whatever its "
        "weight (the live colour when no canary runs). nginx: the managed file adds an "
        "upstream `<upstream>_testers` and a `map` setting `$bluegreen_<upstream>` "
        "(non-word characters as `_`), which the site's `proxy_pass` must name: "
        "`proxy_pass http://$bluegreen_shop;`. HAProxy: `use-server` rules in the backend, "
        "which the runtime API cannot change, so with `flip: runtime` every flip that changes "
        "the servers testers reach reloads: a canary's start and abort, and — testers "
        "following the live colour when no canary runs — every deploy, rollback or switch "
        "to the other colour, and a worker reload's hold-outs; a canary's weight steps and "
        "its final promote stay on the runtime API. A change of `canary.sticky` itself "
        "reaches a running HAProxy at its next reload. Each canary step is verified through "
        "`verify.urls` as a tester: every request must reach the canary, else the step is "
        "undone (exit 7). A `balancer.template` of your own must render the `sticky` part as "
        "the shipped ones do."),
    "DeploySettings": (
        "How a deploy treats its target's unhealthy instances and an idle colour that still "
        "holds connections."),
    "LockSettings": "The operation lock, kept in the state directory of the first balancer.",
    "Hooks": (
        "Commands run inside the lock at fixed points of an operation, each point a list run in "
        "order. They see `BLUEGREEN_SERVICE`, `BLUEGREEN_COMMAND`, `BLUEGREEN_HOOK`, "
        "`BLUEGREEN_RELEASE`, `BLUEGREEN_FROM`, `BLUEGREEN_TO`, `BLUEGREEN_APP_HOSTS`, "
        "`BLUEGREEN_BALANCER_HOSTS`, `BLUEGREEN_CI_JOB` and, after the operation, "
        "`BLUEGREEN_RESULT` (ok/failed) and `BLUEGREEN_ERROR`. A failing `pre_*` hook stops the "
        "operation at that point (exit 10); a failing `post_*` or `on_failure` hook is reported "
        "and recorded, and undoes nothing."),
    "SecretRef": "Where a secret's value comes from.",
}


def _override(key: str) -> str:
    return f"This balancer host's own `balancer.{key}`; unset, the `balancer:` section's applies."


FIELDS: dict[str, dict[str, str]] = {
    "Inventory": {
        "service": (
            "The service's name: letters, digits, `.`, `_` and `-`. It names files and headers, "
            "the default upstream (`balancer.upstream_name`) and the default state directory."),
        "hosts": "The hosts, by role: app hosts run the colours, balancer hosts the load balancer.",
        "ssh": "How hosts are reached over SSH.",
        "colours": "Where the two colours run, and on which ports.",
        "release": "What is deployed, and how many releases each app host keeps.",
        "app": (
            "How a colour's server is started, stopped, checked and reloaded; `deploy`, "
            "`retire`, `reload` and `rollback --restart` need it."),
        "health": "The health check of every instance before it gets traffic.",
        "balancer": "The load balancer in front of the colours: nginx, HAProxy or Caddy.",
        "verify": "Verification of a flip through the public URL(s).",
        "deploy": "How a deploy treats unhealthy instances and an idle colour's connections.",
        "canary": ("Canary deploys: their steps and the thresholds of their automatic "
                   "analysis."),
        "lock": "When an operation's lock counts as stale.",
        "hooks": "Commands run at fixed points of an operation.",
        "secrets": (
            "Secrets passed to `app.start` as environment variables: each key is the variable's "
            "name there, read from the variable its `env` names on the machine running bluegreen. "
            "Their values are never printed or logged."),
    },
    "Hosts": {
        "app": (
            "The app hosts, which run the colours: each a name (resolved through `~/.ssh/config` "
            "or DNS) or a mapping, each host listed once."),
        "balancer": (
            "The balancer hosts: every flip validates on all of them, then activates them all at "
            "once. Each keeps the state and history, and the first also the lock. A host that is "
            "also an app host must be written the same in both lists."),
    },
    "HostSpec": {
        "name": (
            "The host's name, unique in its list: it is shown in output, referred to by "
            "`colours.*.hosts`, and connected to (through `~/.ssh/config` or DNS) when `address` "
            "is not set."),
        "address": (
            "The address to connect to (default: the name); also the address the balancer sends "
            "traffic to, unless `balancer.upstream_address` is set."),
        "port": "This host's SSH port, instead of `ssh.port`.",
        "user": "This host's SSH user, instead of `ssh.user`.",
        "jump": (
            "This host's jump host(s), instead of `ssh.jump`: `[user@]host[:port]`, "
            "comma-chained; `none` for no jump host."),
        "sudo": "Whether this host's commands run through `sudo -n`; null: as `ssh.sudo`.",
        "connection": (
            "`ssh`, or `local`: run this host's commands on the machine running bluegreen, "
            "without SSH."),
        "app_root": "This app host's own app root (an absolute path), instead of `app.root`.",
        "balancer": (
            "This balancer host's overrides of the `balancer:` section, for mixed balancers or "
            "other paths (read for hosts under `hosts.balancer`)."),
    },
    "BalancerOverride": {
        key: _override(key)
        for key in ("kind", "managed_file", "main_config", "prefix", "pid_file", "binary",
                    "template", "reload", "state_dir", "flip", "admin_socket", "admin_address",
                    "access_log")
    },
    "SSHSettings": {
        "user": "The SSH user. Default: `~/.ssh/config`'s User, else your local user name.",
        "port": "The SSH port. Default: `~/.ssh/config`'s Port, else 22.",
        "identity_file": (
            "The private key to log in with. Default: `~/.ssh/config`'s IdentityFile, else ssh's "
            "usual keys."),
        "known_hosts": (
            "The known_hosts file host keys are checked against (and where "
            "`ssh.trust_on_first_use` records new ones)."),
        "strict_host_keys": (
            "true: a host key that is unknown or differs from `ssh.known_hosts` stops the "
            "operation (exit 3); false: host keys are not checked at all."),
        "trust_on_first_use": (
            "true: the keys of hosts not yet in `ssh.known_hosts` are recorded there on the first "
            "connection (a changed key is still refused). Needs `ssh.strict_host_keys: true`."),
        "config_file": (
            "The ssh config whose HostName, User, Port, IdentityFile and ProxyJump fill what the "
            "inventory leaves out; null: ignore it."),
        "jump": (
            "A jump host for every host: `[user@]host[:port]`, comma-chained for several hops; "
            "`none` for none. Default: `~/.ssh/config`'s ProxyJump. The hosts behind a jump "
            "host share one connection to it."),
        "use_agent": "Offer the keys held by ssh-agent.",
        "openssh_uploads": (
            "Send a release of 16 MiB or more through the system's OpenSSH client (`ssh`), "
            "over a second connection that trusts only the host key already verified: several "
            "times less CPU here than the built-in client, which matters when uploading to many "
            "hosts at once. Not used through jump hosts; when `ssh` is missing or cannot "
            "connect, the built-in client sends it."),
        "sudo": (
            "Run every command on the hosts through `sudo -n` (passwordless sudo needed); "
            "`hosts.*[].sudo` overrides it per host."),
        "connect_timeout": (
            "Seconds allowed for each of the TCP connect, the SSH banner and the "
            "authentication."),
        "command_timeout": (
            "Seconds any one command on a host may take, unless its step has a limit of its own "
            "(such as `app.start_timeout`); past it the command is killed and the operation fails "
            "(exit 3)."),
        "parallelism": (
            "How many hosts are worked on at once. Most of a deploy's time on a host is spent "
            "waiting for it (stopping, starting, health), so more at once finish sooner; to "
            "limit how many instances start at the same time, use `deploy.batch`."),
    },
    "Colours": {
        "mode": (
            "`port`: both colours run on every app host, on different ports; `host`: each "
            "colour runs on its own app hosts (`colours.*.hosts`), and the ports may be equal."),
        "blue": "The blue colour's port (and, in host mode, its hosts).",
        "green": "The green colour's port (and, in host mode, its hosts).",
    },
    "ColourSpec": {
        "port": (
            "The port this colour's instances listen on (`{{ port }}` in the app commands); in "
            "port mode blue and green need different ports."),
        "hosts": (
            "Host mode only, and required there: the names of the `hosts.app` entries that run "
            "this colour; a host runs one colour."),
    },
    "ReleaseSettings": {
        "source": (
            "The release a deploy uploads when `--source` is not given: a local directory or "
            "`.tar.gz`, relative to the inventory's directory unless absolute. Null: `--source` "
            "is required."),
        "url": (
            "Where each app host fetches a release itself (with `curl`, credentials from its "
            "`~/.netrc`), instead of receiving it through the machine running bluegreen: a "
            "template with `{{ release }}` and `{{ service }}`, e.g. "
            "`https://artifacts.example.com/shop/{{ release }}.tar.gz`. Used unless `--source` "
            "is given; `deploy --release ID --sha256 HEX` names the release and the checksum "
            "of its `.tar.gz`, verified on every host."),
        "keep": (
            "Releases kept on each app host: this many of the newest, plus any a colour points "
            "at; a deploy deletes the older ones once the host has started the new release (in "
            "the same command)."),
    },
    "AppSettings": {
        "root": (
            "Absolute path on the app hosts holding `releases/` and each colour's pointer "
            "(`<root>/blue`, `<root>/green`); `hosts.app[].app_root` overrides it per host."),
        "start": (
            "Command template that starts the colour, run in the release directory with its "
            "output captured; the server must daemonize (or be backgrounded), since bluegreen "
            "waits for the command to exit. Its environment holds `app.env`, the secrets and "
            "`BLUEGREEN_SERVICE`, `BLUEGREEN_COLOUR`, `BLUEGREEN_PORT`, `BLUEGREEN_RELEASE` and "
            "`BLUEGREEN_CURRENT` (the colour's pointer)."),
        "stop": (
            "Command template that stops the colour, run only when it is running; bluegreen "
            "then waits for its port to be free (and `app.status` to say stopped)."),
        "status": (
            "Command template that exits 0 while the colour runs. Null: the colour counts as "
            "running while something listens on its address and port."),
        "log": (
            "Command template that prints the tail of the colour's log, shown when a health "
            "check or a reload fails (a reload also reads Swoole's forced worker exits in it). "
            "Null: no log is shown."),
        "env": (
            "Extra environment variables for `app.start`, as plain values (secret ones belong "
            "under `secrets`)."),
        "start_timeout": "Seconds `app.start` may take.",
        "stop_timeout": (
            "Seconds `app.stop` may take, and then again for the stopped colour to go away."),
        "pid_file": (
            "Path template of the master's pid file (Swoole: master or manager), with the same "
            "variables as the commands. `bluegreen reload` needs it, and so does `{{ pid }}` in "
            "`app.drain`."),
        "reload_signal": (
            "The signal `bluegreen reload` sends the master, with or without SIG: gunicorn HUP, "
            "Swoole USR1. `reload --signal` overrides it."),
        "task_reload_signal": (
            "The signal `bluegreen reload --task-workers` sends the master (Swoole's task "
            "workers)."),
        "reload_timeout": (
            "Seconds for every old worker to be replaced by as many new ones after the reload "
            "signal (Swoole: at least max_wait_time plus boot time)."),
        "signal": (
            "Command template that signals the master, with the variables of the app commands plus "
            "`{{ signal }}` (a name without SIG, or 0 to test the right to) and `{{ pid }}`. "
            "A service running as another user than the deploy user needs e.g. "
            "`sudo -n -u shop kill -s {{ signal }} {{ pid }}`."),
        "worker_pattern": (
            "Regex searched in the command lines of the master's processes, matching those a "
            "reload replaces; a Swoole user process (addProcess) is never replaced, so must not "
            "match. Null: every process under the master that has no children."),
        "task_worker_pattern": (
            "The same as `app.worker_pattern`, for `reload --task-workers`. Null: the reload "
            "completes once some of the master's leaf processes are replaced."),
        "reload_settle": (
            "Seconds the new workers must keep running after a reload; workers that keep dying "
            "within it are a crash loop and fail the reload."),
        "drain": (
            "Command template that asks an instance to let its long-lived connections go (a "
            "signal, an HTTP call), run before `retire` or a deploy stops a colour that still "
            "holds connections. It has the variables of the app commands, plus `{{ pid }}` (the "
            "master's pid, read from `app.pid_file`, which must then be set). Null: bluegreen "
            "only waits."),
        "drain_timeout": (
            "Seconds a deploy waits for the idle colour's connections to end before stopping it "
            "(none with `deploy.drain: false` or `deploy --no-drain`; `retire` takes "
            "`--drain-timeout` instead)."),
        "server_mode": (
            "A Swoole server's mode, `process` or `base`; with `base`, `bluegreen reload` warns "
            "that the reload closes every client connection. Null: no such warning."),
    },
    "HealthSettings": {
        "path": (
            "The URL path requested from each instance; it starts with `/` and holds no spaces or "
            "control characters (percent-encode them)."),
        "expect_status": "The HTTP status a healthy answer has (redirects are not followed).",
        "expect_body": (
            "Text a healthy answer's body must contain, a template that may use "
            "`{{ release }}`, `{{ colour }}` and `{{ service }}`. Null: any body."),
        "timeout": "Seconds per request.",
        "interval": "Seconds between attempts.",
        "retries": (
            "Attempts before an instance counts as unhealthy (the quick check before a `switch` or "
            "`rollback` flip makes at most 3)."),
        "successes": "Consecutive successful attempts an instance needs to count as healthy.",
        "via": (
            "`host`: on the app host (bash sends the requests, or curl where there is no "
            "bash), run over its SSH connection, one command for a whole wait (a host with "
            "neither is checked as with `ssh`); `ssh`: through a port "
            "forwarded over the SSH connection (the host's sshd must allow TCP forwarding), "
            "one round trip per probe; `direct`: from the machine running bluegreen to the "
            "instance's address and port."),
    },
    "BalancerSettings": {
        "managed_file": (
            "The file bluegreen owns entirely on the balancer host: nginx's upstream block, "
            "HAProxy's backend or a Caddyfile snippet, included from your own configuration."),
        "kind": "The balancer: `nginx`, `haproxy` or `caddy`.",
        "main_config": (
            "The main configuration the managed file is validated with (`nginx -c`, `haproxy -f`, "
            "`caddy --config`). Default: nginx's own, `/etc/haproxy/haproxy.cfg`, "
            "`/etc/caddy/Caddyfile`."),
        "prefix": "nginx's prefix (`nginx -p`), for an nginx with a prefix of its own.",
        "pid_file": (
            "The pid file of nginx's or HAProxy's master, through which bluegreen confirms that a "
            "reload took (and HAProxy's default reload signals it). Default: `/run/nginx.pid` or "
            "`/run/haproxy.pid`."),
        "binary": "The balancer's executable. Default: `nginx`, `haproxy` or `caddy` on PATH.",
        "template": (
            "Your own jinja2 template of the managed file (a file on the machine running "
            "bluegreen), instead of the shipped one. Variables: `service`, `upstream_name`, "
            "`colour`, `generation`, `weights` and `servers` (each with `host`, `name`, "
            "`address`, `port`, `dial`, `colour`, `weight`)."),
        "upstream_name": (
            "The nginx upstream, HAProxy backend or Caddy snippet (`<name>_upstream`) the "
            "managed file defines. Default: the service's name."),
        "reload": (
            "A command template run instead of the default reload (nginx: `nginx -s reload`, "
            "with `balancer.prefix` and `balancer.main_config`; HAProxy: SIGUSR2 to the master), "
            "e.g. `systemctl reload haproxy`; `{{ pid_file }}` is available. Not used by Caddy."),
        "state_dir": (
            "Directory on each balancer host holding the state, the history, the lock and the "
            "managed file's backup. Default: `/var/lib/bluegreen/<service>`."),
        "upstream_address": (
            "One address the balancer reaches every app host's instances at (e.g. `127.0.0.1` "
            "when they share a machine), also used for health checks. Default: each app host's "
            "address, else its name."),
        "reload_timeout": (
            "Seconds the balancer's reload (or Caddy's config load) may take to take effect."),
        "flip": (
            "How traffic moves: `reload` the balancer, or `runtime`: through HAProxy's runtime "
            "API on `balancer.admin_socket`, with no reload, so no connection is closed (HAProxy "
            "only)."),
        "admin_socket": (
            "HAProxy's stats socket at level admin, reached with socat on the balancer host: "
            "needed by `flip: runtime`, and read by `status`."),
        "admin_address": (
            "Caddy's admin API, reached with curl on the balancer host. Default: "
            "`localhost:2019`."),
        "access_log": (
            "nginx only: the access log of the service's requests, written in the `bluegreen` "
            "format (`log_format bluegreen '$upstream_addr|$upstream_status|"
            "$upstream_response_time';`), from which a canary's analysis counts each server's "
            "requests, 5xx answers and response times; the log names servers by IP, so the app "
            "hosts (or `balancer.upstream_address`) must be IP addresses. bluegreen reads it "
            "whole at each judgement (about 0.5 s per million lines): keep it to this service "
            "and rotate it; a rotated or truncated log counts from then. Write it unbuffered "
            "and uncompressed (no `buffer=`, `flush=` or `gzip`), or recent requests are not "
            "counted."),
        "drain_timeout": (
            "Seconds the old colour's sessions may take, in a runtime flip, before its servers "
            "go to maintenance anyway; `bluegreen reload` waits as long for a host taken out of "
            "traffic."),
    },
    "VerifySettings": {
        "urls": (
            "Public http(s) URLs fetched after a flip (and after `reload` moves the live colour "
            "to a new release) until each answers 200 with `verify.expect_body` and "
            "`verify.expect_header`; otherwise traffic is flipped back (exit 7). Empty: no "
            "verification."),
        "expect_body": (
            "Text the body must contain, a template that may use `{{ release }}`, "
            "`{{ colour }}` and `{{ service }}`. Null: any body."),
        "expect_header": (
            "A `Header: value` the answer must carry (the header's value must contain `value`), "
            "a template with the same variables as `verify.expect_body`."),
        "timeout": "Seconds per request.",
        "attempts": "Attempts per URL, 0.2 s apart, before the verification fails.",
    },
    "DeploySettings": {
        "max_unhealthy": (
            "How many target instances may fail their health check with the deploy still "
            "flipping (they stay out of traffic, named in the result and history): a count, or "
            "a percentage of the instances such as `\"25%\"` (rounded down). At least one "
            "instance must pass."),
        "drain": (
            "Drain an idle colour that still holds connections before a deploy stops it "
            "(`app.drain`, up to `app.drain_timeout`); false: stop it at once, as "
            "`deploy --no-drain`. The connections its stop cuts are counted either way."),
        "batch": (
            "Start the target colour this many instances at a time — a count, or a percentage "
            "of them such as `\"25%\"` (rounded down, at least one) — each batch health-checked "
            "before the next starts, for apps that must not all boot at once (migrations, cache "
            "warm-up); a batch over `deploy.max_unhealthy` stops the deploy before the next "
            "batch starts. Null: all at once."),
    },
    "CanarySettings": {
        "steps": (
            "Makes every `deploy` a canary through these steps: the new release takes the "
            "first step's share of the traffic, and each next step comes after its pause (and "
            "the analysis), then all the traffic. `deploy --canary` replaces the steps, "
            "`--step-pause` every pause, `--no-canary` deploys straight. Empty: no canary."),
        "max_error_rate": (
            "Automatic analysis of a canary (`deploy --canary`): at most this per cent of the "
            "canary's requests since its step began may be answered 5xx, as HAProxy counts "
            "them per server (`show stat`, through `balancer.admin_socket`) or nginx logs them "
            "(`balancer.access_log`); above it the canary is aborted automatically (exit 13; "
            "see `canary.failure_limit`). Null: not judged."),
        "max_latency_ratio": (
            "Automatic analysis of a canary: its servers' mean response time (HAProxy's "
            "`rtime`, or nginx's `$upstream_response_time` since the step began) at most this "
            "many times the stable colour's; above it the canary is aborted automatically "
            "(exit 13; see `canary.failure_limit`). Null: not judged."),
        "min_requests": (
            "How many requests the canary must have answered since its step began before the "
            "analysis judges it; with fewer, `canary promote` changes nothing and exits 12 "
            "(a step with a timed pause waits up to three more pauses for them)."),
        "failure_limit": (
            "How many analyses in a row may breach a threshold before the canary is aborted. "
            "A breach within the limit keeps the canary at its weight, is recorded in the "
            "history (result `held`), and `canary promote` exits 12 (`canary_held`); the next "
            "analysis judges only the traffic after it, and a step with a timed pause waits "
            "one more pause. A passing analysis starts the count again. 0: the first breach "
            "aborts."),
        "prometheus": (
            "Queries to a Prometheus server, judged at each step together with the counter "
            "thresholds above (or alone): a query over its bounds is a breach like theirs, and "
            "a query without a number (no data yet, NaN, the server not answering) keeps the "
            "canary from being judged yet. Null: none."),
        "sticky": "Routes testers to the canary by a header or cookie. Null: none.",
    },
    "CanarySticky": {
        "header": "The request header that marks a tester (`X-Canary`); or give `cookie`.",
        "cookie": "The cookie that marks a tester (letters, digits, `_`); or give `header`.",
        "value": (
            "The header's or cookie's value that marks a tester, compared ignoring case (as "
            "nginx's `map` does): letters, digits and `._~-`, starting with a letter or digit."),
    },
    "PrometheusSettings": {
        "url": (
            "The Prometheus server's base URL (`http://prometheus.internal:9090`); queries are "
            "POSTed to its `/api/v1/query`. Credentials in it (`https://user:pass@…`) are never "
            "shown in messages."),
        "queries": "The metrics judged at each step; at least one.",
        "timeout": "Seconds to wait for each query's answer.",
    },
    "PrometheusQuery": {
        "name": "How the analysis names this metric in its verdict and breaches (`error ratio`).",
        "query": (
            "PromQL that gives one number (a scalar, or a vector of one sample: aggregate with "
            "`sum(…)`), as a template with `{{ canary }}` and `{{ stable }}` (the colours), "
            "`{{ release }}`, `{{ weight }}`, `{{ service }}` and `{{ window }}` — the time "
            "since the traffic being judged began, as a PromQL duration (`93s`), e.g. "
            "`increase(errors_total{colour=\"{{ canary }}\"}[{{ window }}])`. An empty vector or "
            "NaN means no data yet."),
        "max": "A breach when the query's number is above this.",
        "min": "A breach when the query's number is below this.",
    },
    "CanaryStep": {
        "weight": "The canary's share of the traffic at this step, in per cent (1–99), rising.",
        "pause": (
            "How long this step lasts, in seconds, before its analysis and the next step, taken "
            "by the running `deploy` or `canary promote`; `manual` (the default): until "
            "`bluegreen canary promote`."),
    },
    "LockSettings": {
        "stale_after": (
            "Seconds without a heartbeat after which a lock counts as stale: `lock release` "
            "removes it without `--force`, and `--lock-wait` stops waiting for it."),
    },
    "Hooks": {
        "pre_deploy": "Run before a deploy changes anything.",
        "post_deploy": "Run after a deploy succeeded.",
        "pre_flip": (
            "Run before each flip of traffic (deploy, canary, switch, rollback); a failure "
            "stops the operation before the flip."),
        "post_flip": "Run after each flip, once traffic has moved and the new state is recorded.",
        "post_rollback": "Run after a rollback succeeded.",
        "pre_reload": "Run before `bluegreen reload` changes anything.",
        "post_reload": "Run after `bluegreen reload` succeeded.",
        "pre_retire": "Run before `bluegreen retire` changes anything.",
        "post_retire": "Run after `bluegreen retire` succeeded.",
        "pre_step": (
            "Run before each change of a canary's weight (its first step at `deploy --canary`, "
            "then each `canary promote` to a next step), with `BLUEGREEN_CANARY_WEIGHT` set to "
            "the weight it is about to get; a failure stops the step before the flip."),
        "post_step": (
            "Run after each change of a canary's weight, once recorded "
            "(`BLUEGREEN_CANARY_WEIGHT`: the weight it now has)."),
        "on_abort": (
            "Run after a canary was aborted (`canary abort`, or its analysis), traffic back on "
            "the stable colour, with `BLUEGREEN_REASON` set to why and `BLUEGREEN_CANARY_WEIGHT` "
            "to the weight it had."),
        "on_failure": (
            "Run when an operation fails, with `BLUEGREEN_RESULT=failed` and `BLUEGREEN_ERROR` "
            "set."),
    },
    "Hook": {
        "run": (
            "A shell command, run by `sh -c` (not a template), with the `BLUEGREEN_*` variables "
            "in its environment; a non-zero exit fails the hook. On a host it needs `setsid`."),
        "on": (
            "Where it runs: `local` (the machine running bluegreen), or on every `app` or "
            "`balancer` host."),
        "timeout": (
            "Seconds the hook may take; past it, it is killed (with what it started) and "
            "counts as failed."),
    },
    "SecretRef": {
        "env": (
            "The environment variable, on the machine running bluegreen, that holds the value; "
            "it must be set."),
    },
}
