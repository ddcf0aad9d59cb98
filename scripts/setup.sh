#!/usr/bin/env bash
# Installs everything bluegreen's demo and tests need on a Debian machine (run as root):
# OpenSSH server and client, nginx, HAProxy, Caddy, Prometheus (the canary tests query it),
# Python's venv, pipx, and a virtualenv in .venv holding bluegreen with its test extras. Safe to
# run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(openssh-server openssh-client nginx haproxy caddy prometheus curl socat iproute2 procps jq python3 python3-venv python3-pip pipx)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps the packages' own services (the system nginx, sshd, haproxy) from starting:
  # the demo and the tests run their own instances on loopback.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
