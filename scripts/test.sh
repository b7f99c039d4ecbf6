#!/usr/bin/env bash
# Sets up the pinned test host if needed (.venv, ComfyUI 0.3.75, test tools) and runs every test.
#   bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh --test
export PYTHONDONTWRITEBYTECODE=1
exec .venv/bin/python -m pytest tests "$@"
