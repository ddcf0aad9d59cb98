#!/usr/bin/env bash
# The bluegreen demo, on this machine only: installs what is missing, starts nginx with its own
# prefix on 127.0.0.1:8480, then runs deploy v1 → deploy v2 → rollback → status with the real CLI,
# fetching a page through nginx after each step. `bash scripts/demo.sh stop` stops what it started.
# BLUEGREEN_BIN_DIR=DIR runs it with the `bluegreen` in DIR (e.g. one installed from the wheel, as
# scripts/package-check.sh does): DIR, an absolute path, goes first on PATH instead of .venv/bin, so
# DIR must also hold the `gunicorn` that serves the demo app.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=/var/tmp/bluegreen-demo
if [ -n "${BLUEGREEN_BIN_DIR:-}" ]; then
  if [ ! -x "$BLUEGREEN_BIN_DIR/bluegreen" ]; then
    echo "demo: BLUEGREEN_BIN_DIR=$BLUEGREEN_BIN_DIR holds no bluegreen command" >&2
    exit 2
  fi
  export PATH="$BLUEGREEN_BIN_DIR:$PATH"
else
  export PATH="$PWD/.venv/bin:$PATH"
fi
export BLUEGREEN_INVENTORY="$PWD/inventories/demo.yml"

stop_demo() {
  for pidfile in "$DEMO/app/blue.pid" "$DEMO/app/green.pid" "$DEMO/nginx/nginx.pid"; do
    if [ -s "$pidfile" ]; then kill -TERM "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  for _ in $(seq 50); do
    ss -Hltn 'sport = :8480 or sport = :9501 or sport = :9502' | grep -q . || break
    sleep 0.1
  done
}

if [ "${1:-}" = "stop" ]; then stop_demo; echo "demo stopped"; exit 0; fi

bash scripts/setup.sh
stop_demo
rm -rf "$DEMO"
mkdir -p "$DEMO/nginx/conf.d" "$DEMO/nginx/logs" "$DEMO/releases"
for version in v1 v2; do
  mkdir -p "$DEMO/releases/$version"
  cp examples/gunicorn/app.py "$DEMO/releases/$version/"
  echo "$version" > "$DEMO/releases/$version/RELEASE"
done
cat > "$DEMO/nginx/nginx.conf" <<NGINX
pid $DEMO/nginx/nginx.pid;
error_log $DEMO/nginx/logs/error.log;
worker_processes 2;
events { worker_connections 512; }
http {
    access_log off;
    include $DEMO/nginx/conf.d/*.conf;
    server {
        listen 127.0.0.1:8480;
        location / {
            proxy_pass http://demo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502;
        }
    }
}
NGINX
# Until the first deploy there is no colour: a placeholder upstream lets nginx start.
echo 'upstream demo { server 127.0.0.1:9 down; }' > "$DEMO/nginx/conf.d/demo-upstream.conf"
nginx -p "$DEMO/nginx" -c "$DEMO/nginx/nginx.conf"

fetch() { python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8480/").read().decode().strip())'; }
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step bluegreen deploy --source "$DEMO/releases/v1" --release v1
echo "through nginx: $(fetch)"
step bluegreen deploy --source "$DEMO/releases/v2" --release v2
echo "through nginx: $(fetch)"
step bluegreen rollback
echo "through nginx: $(fetch)"
step bluegreen status
step bluegreen history
printf '\nThe demo is still running: curl http://127.0.0.1:8480/ — stop it with: bash scripts/demo.sh stop\n'
