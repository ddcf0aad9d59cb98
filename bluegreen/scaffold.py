"""`bluegreen init`: a commented, valid first inventory for one service in one environment —
pure text, from a few choices (balancer, app server, hosts)."""

from __future__ import annotations

from dataclasses import dataclass

BALANCERS = ("nginx", "haproxy")
APPS = ("gunicorn", "swoole", "systemd")

_APP_SECTIONS = {
    "gunicorn": """\
app:
  root: /srv/{service}
  # gunicorn daemonizes; code is imported through the colour's pointer ({{{{ current_dir }}}}),
  # so `bluegreen reload --source` can ship a new release
  start: >-
    gunicorn --daemon --workers 4 --bind {{{{ address }}}}:{{{{ port }}}}
    --pid {{{{ app_root }}}}/{{{{ colour }}}}.pid --log-file {{{{ app_root }}}}/{{{{ colour }}}}.log
    --chdir {{{{ current_dir }}}} app:app
  stop: 'kill -TERM "$(cat {{{{ app_root }}}}/{{{{ colour }}}}.pid)"'
  status: 'kill -0 "$(cat {{{{ app_root }}}}/{{{{ colour }}}}.pid 2>/dev/null)" 2>/dev/null'
  log: tail -n 40 {{{{ app_root }}}}/{{{{ colour }}}}.log
  pid_file: '{{{{ app_root }}}}/{{{{ colour }}}}.pid'
  reload_signal: HUP             # `bluegreen reload`: gunicorn replaces its workers on HUP
""",
    "swoole": """\
app:
  root: /srv/{service}
  # systemd template unit {service}@.service (see examples/swoole/ in bluegreen's sources): its
  # settings go into the environment file the unit reads, then the unit is started
  start: >-
    printf 'COLOUR=%s\\nSHOP_ADDRESS=%s\\nSHOP_PORT=%s\\nSHOP_PID_FILE=%s\\nBLUEGREEN_CURRENT=%s\\n'
    {{{{ colour }}}} {{{{ address }}}} {{{{ port }}}} /run/{service}/{{{{ colour }}}}.pid
    {{{{ current_dir }}}} > {{{{ app_root }}}}/{{{{ colour }}}}.env
    && sudo -n systemctl start {service}@{{{{ colour }}}}
  stop: sudo -n systemctl stop {service}@{{{{ colour }}}}
  status: systemctl is-active --quiet {service}@{{{{ colour }}}}
  log: journalctl -u {service}@{{{{ colour }}}} -n 40 --no-pager
  stop_timeout: 15
  pid_file: /run/{service}/{{{{ colour }}}}.pid
  signal: sudo -n -u {service} kill -s {{{{ signal }}}} {{{{ pid }}}}   # the service's own user
  reload_signal: USR1
  task_reload_signal: USR2
  reload_timeout: 10
  worker_pattern: '{service}-\\w+: (worker|task) #'
  task_worker_pattern: '{service}-\\w+: task #'
  server_mode: process
""",
    "systemd": """\
app:
  root: /srv/{service}
  # a systemd template unit {service}@.service per colour, started from {{{{ current_dir }}}}
  start: sudo -n systemctl start {service}@{{{{ colour }}}}
  stop: sudo -n systemctl stop {service}@{{{{ colour }}}}
  status: systemctl is-active --quiet {service}@{{{{ colour }}}}
  log: journalctl -u {service}@{{{{ colour }}}} -n 40 --no-pager
""",
}

_BALANCER_SECTIONS = {
    "nginx": """\
balancer:
  kind: nginx
  # bluegreen owns this one file (the upstream block); include it from your nginx config and
  # proxy_pass to http://{service}
  managed_file: /etc/nginx/conf.d/{service}-upstream.conf
""",
    "haproxy": """\
balancer:
  kind: haproxy
  # bluegreen owns this one file (the backend); load it with a second -f next to haproxy.cfg
  managed_file: /etc/haproxy/conf.d/{service}.cfg
  main_config: /etc/haproxy/haproxy.cfg
  flip: runtime                  # no reload: the runtime API moves traffic
  admin_socket: /run/haproxy/admin.sock
""",
}


@dataclass(frozen=True)
class Choices:
    service: str
    environment: str
    balancer: str
    app: str
    app_hosts: tuple[str, ...]
    balancer_hosts: tuple[str, ...]
    schema: str  # where the editor finds the schema, relative to the inventory


def inventory_text(choices: Choices) -> str:
    service = choices.service
    hosts = "\n".join(f"    - {host}" for host in choices.app_hosts)
    balancers = "\n".join(f"    - {host}" for host in choices.balancer_hosts)
    return (
        f"# yaml-language-server: $schema={choices.schema}\n"
        f"# bluegreen inventory: {service} in {choices.environment}. Every key is described in\n"
        "# bluegreen's inventories/example.yml; `bluegreen check` tests it against the hosts.\n"
        f"service: {service}\n\n"
        "hosts:\n"
        f"  app:\n{hosts}\n"
        f"  balancer:\n{balancers}\n\n"
        "ssh:\n"
        "  user: deploy                   # strict host-key checking against ~/.ssh/known_hosts\n\n"
        "colours:                         # both colours on every app host, on their own port\n"
        "  blue: {port: 9501}\n"
        "  green: {port: 9502}\n\n"
        "release:\n"
        "  source: ./build                # a directory or .tar.gz; or pass --source\n"
        "  keep: 5\n\n"
        + _APP_SECTIONS[choices.app].format(service=service) + "\n"
        "health:\n"
        "  path: /health\n"
        "  expect_status: 200\n\n"
        + _BALANCER_SECTIONS[choices.balancer].format(service=service) + "\n"
        "verify:\n"
        f"  urls: []                       # e.g. [https://{service}.example.com/]: checked after "
        "every flip\n"
    )
