#!/usr/bin/env bash
# Sets up the pinned test host if needed (.venv, ComfyUI 0.3.75, test tools) and runs the tests.
#   bash scripts/test.sh                          # every test (pytest's testpaths: tests/)
#   bash scripts/test.sh tests/test_cli.py -k fps # pytest arguments are passed through as given
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh --test
export PYTHONDONTWRITEBYTECODE=1
# No arguments, or options only: pyproject's testpaths (tests/) applies. Paths given: only those.
exec .venv/bin/python -m pytest "$@"
