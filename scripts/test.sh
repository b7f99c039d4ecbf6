#!/usr/bin/env bash
# Sets up the test host if needed (.venv, ComfyUI, test tools, frontends) and runs the tests on it.
#   bash scripts/test.sh                          # every test on ComfyUI 0.33.0 (pyproject's testpaths: tests/)
#   bash scripts/test.sh tests/test_cli.py -k fps # pytest arguments are passed through as given
#   TAESDV_TEST_HOST=0.3.75 bash scripts/test.sh  # the same on the oldest supported host
# Browser tests run on the host's own frontend and on the newest one (scripts/hosts.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/hosts.sh
host=${TAESDV_TEST_HOST:-$PRIMARY_HOST}
bash scripts/setup-host.sh --host "$host" --test
export PYTHONDONTWRITEBYTECODE=1
export TAESDV_TEST_HOST="$host"
export TAESDV_TEST_COMFYUI="$PWD/$(host_tree "$host")"
# label=--front-end-root, ';'-separated; the host's own frontend first (empty: the venv's package)
pin=$(host_frontend "$host")
venv_pin=$(.venv/bin/python -c "from importlib.metadata import version; print(version('comfyui-frontend-package'))")
pin_root=""; [ "$pin" = "$venv_pin" ] || pin_root="$PWD/$(frontend_root "$pin")"
export TAESDV_TEST_FRONTENDS="$pin=$pin_root;$NEWEST_FRONTEND=$PWD/$(frontend_root "$NEWEST_FRONTEND")"
shown=${TAESDV_TEST_FRONTENDS//=;/ (the venv package);}
echo "test: ComfyUI $host, frontends ${shown//;/, }"
# No arguments, or options only: pyproject's testpaths (tests/) applies. Paths given: only those.
exec .venv/bin/python -m pytest "$@"
