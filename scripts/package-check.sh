#!/usr/bin/env bash
# Proves the wheel is complete on its own: builds it from this tree, installs it with pipx into a
# throw-away PIPX_HOME, checks `bluegreen --help` and `--version` from that copy, checks that it
# imports bluegreen from its own environment (not this source tree) and holds every file of
# bluegreen/ and templates/, then runs the demo (scripts/demo.sh) with that installed `bluegreen`
# first on PATH — so the nginx include is rendered from the templates inside the wheel. A file
# missing from the wheel fails here. Like scripts/demo.sh itself, it replaces a demo already
# running (its directory and ports); the demo is stopped and the temporary directory removed at
# the end, pass or fail. Beyond that and what scripts/setup.sh installs, nothing changes.
set -euo pipefail
cd "$(dirname "$0")/.."
project=$PWD
bash scripts/setup.sh  # pipx, and the .venv that builds the wheel and provides the demo's gunicorn

work=$(mktemp -d "${TMPDIR:-/tmp}/bluegreen-package-check.XXXXXX")
work=$(realpath "$work")
cleanup() {
  bash "$project/scripts/demo.sh" stop || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "package-check: $*" >&2; exit 1; }

unset PYTHONPATH PYTHONHOME
export PIPX_HOME="$work/pipx" PIPX_BIN_DIR="$work/pipx-bin" PIPX_MAN_DIR="$work/pipx-man"

echo "package-check: building the wheel" >&2
.venv/bin/python -m pip wheel -q --no-deps -w "$work/dist" .
wheels=("$work"/dist/bluegreen-*.whl)
if [ "${#wheels[@]}" -ne 1 ] || [ ! -f "${wheels[0]}" ]; then
  fail "expected one bluegreen wheel in $work/dist"
fi
wheel=${wheels[0]}

echo "package-check: pipx install $(basename "$wheel")" >&2
pipx install "$wheel"
installed="$PIPX_BIN_DIR/bluegreen"
venv_python="$PIPX_HOME/venvs/bluegreen/bin/python"
[ -x "$installed" ] || fail "pipx installed no bluegreen command in $PIPX_BIN_DIR"

# Everything from here runs outside the source tree, so nothing can be imported from it.
cd "$work"
"$installed" --help >/dev/null || fail "bluegreen --help failed"
expected="bluegreen $(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$project/bluegreen/__init__.py")"
version=$("$installed" --version) || fail "bluegreen --version failed"
version=${version%%$'\n'*}  # its first line; then Python, libraries and drivers
[ "$version" = "$expected" ] || fail "bluegreen --version says '$version', expected '$expected'"
module=$("$venv_python" -c 'import bluegreen; print(bluegreen.__file__)')
module=$(realpath "$module")
case "$module" in
  "$PIPX_HOME/venvs/bluegreen/"*) ;;
  *) fail "the installed bluegreen imports $module, not its own copy under $PIPX_HOME" ;;
esac
# Every file of the package and its templates is in the installed copy (templates/ is
# force-included into the wheel as bluegreen/templates).
"$venv_python" - "$project" <<'PY' || fail "the wheel is missing files (listed above)"
import sys
from importlib import resources
from pathlib import Path

project = Path(sys.argv[1])
package = resources.files("bluegreen")
missing = []
trees = ((project / "bluegreen", package), (project / "templates", package / "templates"))
for source, target in trees:
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            relative = path.relative_to(source)
            if not target.joinpath(*relative.parts).is_file():
                missing.append(f"{source.name}/{relative}")
for name in missing:
    print(f"package-check: not in the installed wheel: {name}", file=sys.stderr)
sys.exit(1 if missing else 0)
PY
echo "package-check: $version installed from the wheel, importing $module" >&2

# The demo with the installed bluegreen; gunicorn (the demo app's server, not part of bluegreen)
# comes from .venv.
mkdir "$work/demo-bin"
ln -s "$installed" "$work/demo-bin/bluegreen"
ln -s "$project/.venv/bin/gunicorn" "$work/demo-bin/gunicorn"
BLUEGREEN_BIN_DIR="$work/demo-bin" bash "$project/scripts/demo.sh"
echo "package-check: ok — the demo ran on the wheel installed with pipx" >&2
