#!/usr/bin/env bash
# The whole test suite: installs what it needs, lints, then runs unit and integration tests
# (the integration tests start their own sshd, nginx, HAProxy and app servers on 127.x addresses),
# then checks the wheel on its own with scripts/package-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy bluegreen
# pytest exits 5 when it collected no test: that is a failure here, as any non-zero status is.
.venv/bin/python -m pytest "$@"
# The wheel built, installed with pipx, and the demo run against that installed copy.
bash scripts/package-check.sh
