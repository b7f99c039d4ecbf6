"""Makes every example workflow runnable offline: random demo models and the inputs they load.

    python scripts/make_demo_assets.py BASE --comfyui COMFYUI_DIR

BASE is a ComfyUI base folder (the one with models/ and input/). Writes, each only if missing:

- models/checkpoints/taesdv-demo-sd15-random.safetensors: an SD1.5-format checkpoint with random
  fp16 weights that the stock *Load Checkpoint* node loads. CLIP-L and the VAE have their real
  shapes (ComfyUI's own classes build them); the UNet is SD1.5's at its narrowest (320 channels
  and 768-wide cross-attention, which ComfyUI's detection requires, but one level and one block
  per level), so a KSampler runs on a CPU. About 450 MB; pictures are noise, the plumbing is real.
- models/vae_approx/taesdv-random-demo.pth: TAESDV with random weights of the official layout.
- models/vae_approx/taesd-random-demo.pth: an image TAESD decoder with random weights (the second
  decoder of the Compare Decoders example; not named taesd_decoder*, so ComfyUI's own previewer
  never picks it over a real file).
- models/vae_approx/random-demo-taew2_1.pth: a TAEHV encoder and decoder of the Wan 2.1 layout
  with random weights (16-channel video latents, 4x time; pick it in the roundtrip example or
  give it to the CLI; its name starts with no prefix ComfyUI's previewer looks for). Its clip is
  mid-grey with colours that change from frame to frame, not the input's pictures.
- input/example.png (256x256), input/example.mp4 (16 frames, 256x256, 12 fps),
  input/next_piece.latent (a ComfyUI Save Latent file, 4 frames of 32x32 latents).
- user/default/workflows/NAME (demo files).json: a copy of each example with the demo files picked
  in place of the real ones it names (the shipped examples keep naming the real files), so it
  runs offline as opened. An example that loads a file no demo can stand in for (the SVD
  checkpoint: an SVD model cannot be made small) gets no copy.

Needs torch and the ComfyUI tree (for its model classes); run it with ComfyUI's Python.
This is a set-up script: the shipped nodes never import it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINT = "taesdv-demo-sd15-random.safetensors"
TAESDV_DEMO = "taesdv-random-demo.pth"
TAESD_DEMO = "taesd-random-demo.pth"
TAEHV_DEMO = "random-demo-taew2_1.pth"
DEMO_INPUTS = ("example.png", "example.mp4", "next_piece.latent")
# The files the examples name -> the demo file that stands in for each (each example's Note says so)
DEMO_FILES = {"taesdv.pth": TAESDV_DEMO, "taesd_decoder.pth": TAESD_DEMO, "v1-5-pruned-emaonly.safetensors": CHECKPOINT}
DEMO_COPY = "{name} (demo files).json"
# Nodes whose first widget names a file the example needs
FILE_LOADERS = ("CheckpointLoaderSimple", "ImageOnlyCheckpointLoader", "TAESDVLoader", "LoadImage", "LoadVideo", "LoadLatent")
# SD1.5 as ComfyUI detects it (model_channels 320, context_dim 768), at its smallest.
DEMO_UNET = {"use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320,
             "num_res_blocks": [1], "channel_mult": [1], "transformer_depth": [1], "transformer_depth_output": [1, 1],
             "transformer_depth_middle": 1, "context_dim": 768, "num_heads": 8, "num_head_channels": -1,
             "use_spatial_transformer": True, "use_linear_in_transformer": False, "legacy": False,
             "adm_in_channels": None, "dims": 2}
SD_VAE = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
          "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def _shapes(comfyui: str) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Checkpoint key -> (shape, is a norm/bias-like 1-D tensor), from ComfyUI's classes on the meta device."""
    sys.path.insert(0, comfyui)
    import torch

    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # shapes only: keep ComfyUI's device manager off any GPU
    import comfy.ops
    import comfy.sd1_clip
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from comfy.ldm.models.autoencoder import AutoencoderKL

    ops = comfy.ops.disable_weight_init
    with torch.device("meta"):  # shapes only: nothing is allocated
        parts = {
            "model.diffusion_model.": UNetModel(**DEMO_UNET, device="meta", operations=ops),
            "cond_stage_model.": comfy.sd1_clip.SDClipModel(device="meta"),
            "first_stage_model.": AutoencoderKL(ddconfig=SD_VAE, embed_dim=4),
        }
    shapes = {}
    for prefix, module in parts.items():
        for key, t in module.state_dict().items():
            if prefix == "cond_stage_model." and key in ("transformer.text_projection.weight", "logit_scale"):
                continue  # ComfyUI drops these when it saves an SD1.5 checkpoint
            shapes[prefix + key] = tuple(t.shape)
    return shapes


def make_checkpoint(path: str, comfyui: str, seed: int = 0) -> None:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, shape in _shapes(comfyui).items():
        if len(shape) <= 1 and key.endswith("weight"):  # norms: identity scale
            t = torch.ones(shape)
        elif len(shape) <= 1:
            t = torch.zeros(shape)
        else:
            t = torch.randn(shape, generator=g).mul_(0.02)
        tensors[key] = t.to(torch.float16)
    save_file(tensors, path + ".part", metadata={"taesdv_demo": "random weights: pictures are noise"})
    os.replace(path + ".part", path)


def _save_random(path: str, make_module) -> None:
    """A module of this pack (`make_module()`: a class or factory) with PyTorch's random
    initialisation, saved as a .pth state dict."""
    import torch

    torch.manual_seed(0)
    torch.save(make_module().state_dict(), path + ".part")
    os.replace(path + ".part", path)


def make_taesdv(path: str) -> None:
    sys.path.insert(0, ROOT)
    from taesdv_core import TAESDV

    _save_random(path, TAESDV)


def make_taesd(path: str) -> None:
    sys.path.insert(0, ROOT)
    from taesdv_core.taesd import TAESDDecoder

    _save_random(path, TAESDDecoder)


def make_taehv(path: str) -> None:
    sys.path.insert(0, ROOT)
    from taesdv_core.family import TinyAutoencoder
    from taesdv_core.taehv import TAEHVDecoder, TAEHVEncoder

    def visible_demo():  # encoder.*, decoder.*
        import numpy as np
        import torch

        from taesdv_core import decode, encode

        model = TinyAutoencoder(TAEHVEncoder(), TAEHVDecoder(), "demo")
        # PyTorch's initialisation shrinks the signal through 30 layers: the clip would decode to
        # near-black frames differing by under 1/255, which WebP encoders merge into one still.
        # A gain on the final conv and a bias that centres a round trip of the test picture at
        # mid-grey make a visible clip that changes from frame to frame (colours, not pictures).
        final = model.decoder[22]
        frames = torch.from_numpy(np.stack(_frames(8, 64))).float().div(255).permute(0, 3, 1, 2)[None]
        with torch.no_grad():
            final.weight.mul_(80)
            raw = decode(model.decoder, encode(model.encoder, frames), clamp=False)
            final.bias.sub_(raw.mean((0, 1, 3, 4)) - 0.5)
        return model

    _save_random(path, visible_demo)


def _frames(count: int, size: int = 256):
    """A moving test picture (gradient, checker, a disc travelling across), uint8 HWC frames."""
    import numpy as np

    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    frames = []
    for i in range(count):
        t = i / max(count, 1)
        cx, cy = 0.2 + 0.6 * t, 0.5 + 0.25 * np.sin(2 * np.pi * t)
        disc = ((x - cx) ** 2 + (y - cy) ** 2) < 0.02
        checker = ((np.floor(x * 8) + np.floor(y * 8)) % 2) * 0.25
        r, g, b = x * 0.8 + checker, y * 0.8 + checker, 0.5 + 0.3 * np.sin(6 * x + 4 * t)
        rgb = np.stack([np.where(disc, 1.0, r), np.where(disc, 0.9, g), np.where(disc, 0.1, b)], -1)
        frames.append((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    return frames


def make_image(path: str) -> None:
    from PIL import Image

    Image.fromarray(_frames(1)[0]).save(path)


def make_video(path: str, frames: int = 16, fps: int = 12) -> None:
    import av

    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = 256
        stream.pix_fmt = "yuv420p"
        for a in _frames(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
        container.mux(stream.encode())


def make_latent(path: str, frames: int = 4) -> None:
    """What ComfyUI's Save Latent writes: unscaled latents, frames as the batch, a format marker."""
    import torch
    from safetensors.torch import save_file

    latents = torch.randn(frames, 4, 32, 32, generator=torch.Generator().manual_seed(1)) / 0.18215
    save_file({"latent_tensor": latents.contiguous(), "latent_format_version_0": torch.tensor([])}, path)


def demo_copy(workflow: dict) -> tuple[dict | None, str]:
    """(the workflow with the demo files picked, "") or (None, why it cannot run on demo files)."""
    copy = json.loads(json.dumps(workflow))
    changed = False
    for node in copy["nodes"]:
        values = node.get("widgets_values")
        if node["type"] not in FILE_LOADERS or not values:
            continue
        if values[0] in DEMO_FILES:
            values[0], changed = DEMO_FILES[values[0]], True
        named = node.get("widgets_values_named", {})  # frontends 1.49+ save the values by name too
        for key, value in named.items():
            named[key] = DEMO_FILES.get(value, value)
        if values[0] not in (*DEMO_FILES.values(), *DEMO_INPUTS):
            return None, f"it loads {values[0]}, which no demo file stands in for"
    return (copy, "") if changed else (None, "it already runs on the demo files")


def write_demo_copies(workflows_dir: str) -> None:
    """NAME (demo files).json in the user's workflows for each example that can run on demo files."""
    examples = os.path.join(ROOT, "example_workflows")
    os.makedirs(workflows_dir, exist_ok=True)
    for file in sorted(f for f in os.listdir(examples) if f.endswith(".json")):
        name = file[:-5]
        path = os.path.join(workflows_dir, DEMO_COPY.format(name=name))
        with open(os.path.join(examples, file)) as f:
            copy, why_not = demo_copy(json.load(f))
        if copy is None:
            print(f"demo assets: no demo copy of {name}: {why_not}")
        elif os.path.exists(path):  # the user's edits to an earlier copy are kept
            print(f"demo assets: {path} present")
        else:
            with open(path, "w") as f:
                json.dump(copy, f, indent=1)
            print(f"demo assets: wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="ComfyUI base folder holding models/ and input/")
    parser.add_argument("--comfyui", default=os.path.join(ROOT, ".host", "comfyui-0.33.0", "ComfyUI"),
                        help="the ComfyUI tree whose model classes give the checkpoint's shapes (default: the primary test host, .host/comfyui-0.33.0/ComfyUI)")
    args = parser.parse_args(argv)
    jobs = [
        (os.path.join(args.base, "models", "checkpoints", CHECKPOINT), lambda p: make_checkpoint(p, args.comfyui)),
        (os.path.join(args.base, "models", "vae_approx", TAESDV_DEMO), make_taesdv),
        (os.path.join(args.base, "models", "vae_approx", TAESD_DEMO), make_taesd),
        (os.path.join(args.base, "models", "vae_approx", TAEHV_DEMO), make_taehv),
        (os.path.join(args.base, "input", "example.png"), make_image),
        (os.path.join(args.base, "input", "example.mp4"), make_video),
        (os.path.join(args.base, "input", "next_piece.latent"), make_latent),
    ]
    for path, make in jobs:
        if os.path.exists(path):
            print(f"demo assets: {path} present")
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        started = time.perf_counter()
        make(path)
        print(f"demo assets: wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB, {time.perf_counter() - started:.1f}s)")
    write_demo_copies(os.path.join(args.base, "user", "default", "workflows"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
