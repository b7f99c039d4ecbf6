#!/usr/bin/env bash
# Sets up a local ComfyUI with this pack and starts it with the example workflows ready.
#   bash scripts/start.sh                      # ComfyUI 0.33.0 on CPU, http://127.0.0.1:8188
#   bash scripts/start.sh --host 0.3.75        # the oldest supported ComfyUI instead
#   bash scripts/start.sh --comfyui PATH       # link the pack into an existing ComfyUI instead
#   bash scripts/start.sh --demo-weights       # offline: random demo models and inputs for every example
#                                              # (scripts/make_demo_assets.py; pictures are noise)
#   bash scripts/start.sh --port 8190
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
source scripts/hosts.sh
HOST=$PRIMARY_HOST; COMFYUI_PATH=""; PORT=8188; DEMO=0
while [ $# -gt 0 ]; do
  case "$1" in
    --host) HOST="${2:-}"; shift 2 ;;
    --comfyui) COMFYUI_PATH="${2:-}"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --demo-weights) DEMO=1; shift ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "start: unknown argument '$1' (expected --host VERSION, --comfyui PATH, --port N or --demo-weights; --help)" >&2; exit 2 ;;
  esac
done
# Before minutes of set-up: a port already taken would only fail when ComfyUI binds it
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "start: port $PORT is already in use (another ComfyUI?); stop it, or choose a free port: --port 8190" >&2
  exit 2
fi
if [ -n "$COMFYUI_PATH" ]; then
  bash scripts/setup-host.sh --comfyui "$COMFYUI_PATH"
  base="$COMFYUI_PATH"; python="${PYTHON:-python3}"
else
  bash scripts/setup-host.sh --host "$HOST"
  base="$here/.host/base"; python="$here/.venv/bin/python"; comfyui="$here/$(host_tree "$HOST")"
  # the venv holds the primary host's frontend; an older host is served its own
  frontend_args=()
  [ "$HOST" = "$PRIMARY_HOST" ] || frontend_args=(--front-end-root "$here/$(frontend_root "$(host_frontend "$HOST")")")
fi
models="$base/models/vae_approx"; mkdir -p "$models" "$base/user/default/workflows"
# the user's edits to an earlier copy are kept
cp -n example_workflows/*.json "$base/user/default/workflows/"
if [ "$DEMO" = 1 ]; then
  # the real taesdv.pth when a download works; the demo weights either way
  "$python" scripts/fetch_weights.py "$models" 2>/dev/null \
    || echo "start: taesdv.pth could not be downloaded (offline?); the examples run on the demo weights"
elif ! "$python" scripts/fetch_weights.py "$models"; then
  echo "start: starting without taesdv.pth; the examples need it (or run again with --demo-weights)" >&2
fi
if [ "$DEMO" = 1 ]; then
  [ -z "$COMFYUI_PATH" ] || comfyui="$COMFYUI_PATH"
  "$python" scripts/make_demo_assets.py "$base" --comfyui "$comfyui"
  echo "start: demo assets ready; open Templates -> ComfyUI-TAESDV -> taesdv_demo_live_preview and queue it;"
  echo "start: the other examples run on the demo files as 'NAME (demo files)' in the Workflows menu"
fi
if [ -n "$COMFYUI_PATH" ]; then
  cd "$COMFYUI_PATH"; exec "$python" main.py --listen 127.0.0.1 --port "$PORT"
fi
cd "$comfyui"
echo "start: the command line is $here/.venv/bin/taesdv (taesdv --help)"
echo "start: ComfyUI $HOST on http://127.0.0.1:$PORT (examples: Templates -> ComfyUI-TAESDV, or the Workflows menu: taesdv_*.json)"
exec "$python" main.py --cpu --listen 127.0.0.1 --port "$PORT" --base-directory "$base" --disable-api-nodes "${frontend_args[@]}"
