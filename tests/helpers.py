"""Small helpers shared by the test modules (test modules never import each other)."""
import os
import subprocess
import sys
import uuid

import pytest
import torch
from safetensors.torch import load_file

import graphs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unique(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def saved(comfy, name):
    """The tensors a TAESDVTest_SaveTensor node wrote under this name."""
    return load_file(os.path.join(comfy.base, "output", f"{name}.safetensors"))


def clip_latents(frames, height=4, width=4, seed=0):
    """The model-space latents TAESDVTest_LatentClip makes (its LATENT is these / 0.18215)."""
    return torch.randn(frames, 4, height, width, generator=torch.Generator().manual_seed(seed))[None]


def assert_still_serving(comfy):
    name = unique("alive")
    run = comfy.run(graphs.decode_graph(name, frames=2, seed=int.from_bytes(os.urandom(3), "big")))
    assert run.succeeded, run.error_text()


class RunsCode:
    """A pickle payload that would create `marker` if it were ever unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def image_taesd_decoder():
    """An image-TAESD decoder state dict (no prefix, no memory), zeros."""
    sd = {"1.weight": torch.zeros(64, 4, 3, 3), "1.bias": torch.zeros(64)}
    for i in (3, 4, 5, 8, 9, 10, 13, 14, 15, 18):
        for j in (0, 2, 4):
            sd[f"{i}.conv.{j}.weight"], sd[f"{i}.conv.{j}.bias"] = torch.zeros(64, 64, 3, 3), torch.zeros(64)
    return sd


def random_image_taesd(part="decoder", latent_channels=4, seed=0):
    """An image-TAESD decoder or encoder state dict in the official file layout (no prefix),
    with PyTorch's default random initialisation."""
    from taesdv_core.taesd import TAESDDecoder, TAESDEncoder

    torch.manual_seed(seed)
    return (TAESDDecoder if part == "decoder" else TAESDEncoder)(latent_channels).state_dict()


def set_frame_by_frame(monkeypatch, on: bool) -> None:
    """Choose how chunks run: frame by frame (the CPU path: one latent frame per step, and the
    frames TAEHV's TGrow makes one at a time) or as one batch (the GPU path)."""
    import taesdv_core.engine as engine
    import taesdv_core.layers as layers

    monkeypatch.setattr(engine, "runs_frame_by_frame", lambda device: on)
    monkeypatch.setattr(layers, "runs_frame_by_frame", lambda device: on)


# How far a chunked or streamed decode may be from the frames it must give, relative to their
# largest value: in fp32 the reference's; in bf16 the bf16 parallel decode's (equal bit for bit
# on the CPUs measured; the margin is for kernels chosen by batch size, far below a wrong frame).
SAME_FRAMES = {torch.float32: 1e-5, torch.bfloat16: 5e-3}


def frames_to_match(dtype, decoder, latents, reference):
    """What every chunking and stream split must decode `latents` to: the fp32 reference in fp32;
    in bf16, the bf16 decoder's parallel decode, itself checked near the reference (bf16 holds
    ~3 significant digits: 1-2% apart on random weights)."""
    from taesdv_core import decode

    if dtype == torch.float32:
        return reference
    parallel = decode(decoder, latents, chunk_frames=latents.shape[1], clamp=False)
    assert ((parallel - reference).abs().max() / reference.abs().max()).item() < 0.05
    return parallel


def cli(*args, timeout=600):
    """`taesdv ARGS` in a fresh process; decode, encode and roundtrip in exact fp32 unless ARGS name
    a --dtype (auto is bf16 on CPUs with native bf16, and the tests compare with fp32 at 1e-5)."""
    args = [str(a) for a in args]
    if args[0] in ("decode", "encode", "roundtrip") and "--dtype" not in args:
        args += ["--dtype", "fp32"]
    return subprocess.run([sys.executable, "-m", "taesdv_core", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def pip_install_apart(target, *requirements, timeout=900) -> str:
    """Installs `requirements` with `pip --target` into the folder `target` (used through
    PYTHONPATH only, so the venv never sees them), under the venv's constraints; skips the test
    with pip's last line when that fails (no package index reachable?). Returns the folder."""
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(target), *requirements]
    constraints = os.path.join(ROOT, ".host", "constraints.txt")
    if os.path.exists(constraints):
        cmd[5:5] = ["-c", constraints]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        pytest.skip(f"`pip install --target ... {' '.join(requirements)}` failed (no package index reachable?): "
                    f"{(r.stderr.strip().splitlines() or ['no output'])[-1]}")
    return str(target)
