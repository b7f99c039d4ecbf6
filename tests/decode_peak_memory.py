"""Peak memory of one TAESDV Decode Batch, measured in a fresh process (run by test_survival.py).

    python tests/decode_peak_memory.py CHECKPOINT FRAMES LATENT_HEIGHT LATENT_WIDTH [CV_VAE_FRAMES [FREE_BYTES]]

Imports the host's ComfyUI modules (CPU, no server) and this pack as a package, loads the
checkpoint with the loader's own function, and runs the node's execute on a random latent clip:
the path a queued prompt takes from LATENT to IMAGE (input checks, latent mapping, the managed
model's memory check, the engine's chunks and FrameSink, frames_to_image).

The decoder's layers are swapped for a cheap stand-in of the same output (channels_last frames
of the right shape and range): a real TAESDV decode of the ~600 MB of frames this measures would
take many minutes on a CPU, and what is measured (how many times the output is held) is decided
after the layers, in the layout and hand-over of the frames.

CV_VAE_FRAMES (off, repeat, blend) is the node's cv_vae_frames; FREE_BYTES, when given, is the
free memory ComfyUI reports (comfy.model_management.get_free_memory), to see what the node's
memory check refuses.

Prints one JSON object: output_bytes, baseline_rss (after model load and input creation, the
peak reset there), peak_rss, and the IMAGE's shape and dtype; or {"refused": the message}.
"""
import importlib.util
import json
import os
import sys

import torch
import torch.nn.functional as F

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
HOST = os.environ.get("TAESDV_TEST_COMFYUI", os.path.join(ROOT, ".host", "comfyui-0.33.0", "ComfyUI"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.append(HOST)  # appended: the host's top-level modules must not shadow ours

from process_memory import peak_rss_bytes, reset_peak_rss  # noqa: E402


def import_pack():
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # model_management asks CUDA for a device at import otherwise
    spec = importlib.util.spec_from_file_location("taesdv_pack", os.path.join(ROOT, "__init__.py"),
                                                  submodule_search_locations=[ROOT])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["taesdv_pack"] = pack
    spec.loader.exec_module(pack)
    return pack


def cheap_layers(decoder):
    """forward_chunk with the real one's contract and output layout, at almost no compute."""
    scale = decoder.spatial_scale

    def forward_chunk(latents, memory):
        n, t = latents.shape[:2]
        x = latents.reshape(n * t, *latents.shape[2:])[:, :3]
        x = F.interpolate(x, scale_factor=scale, mode="nearest").contiguous(memory_format=torch.channels_last)
        x = torch.sigmoid_(x)
        return x.reshape(n, t, *x.shape[1:]), memory or []

    decoder.forward_chunk = forward_chunk


def main(checkpoint, frames, height, width, cv_vae_frames="off", free_bytes=None):
    import_pack()
    import comfy.model_management as mm
    from taesdv_pack.nodes.decode import TAESDVDecodeBatch
    from taesdv_pack.nodes.load import load_managed
    from taesdv_pack.taesdv_core.errors import InputError

    if free_bytes is not None:
        mm.get_free_memory = lambda *args, **kwargs: free_bytes

    taesdv = load_managed(checkpoint, "fp32")
    cheap_layers(taesdv.decoder)
    samples = {"samples": torch.randn(frames, 4, height, width, generator=torch.Generator().manual_seed(0))}
    TAESDVDecodeBatch.execute(taesdv, {"samples": samples["samples"][:2].clone()}, 0, 0.0, cv_vae_frames)  # warm-up: lazy inits
    baseline = reset_peak_rss()
    try:
        image = TAESDVDecodeBatch.execute(taesdv, samples, 0, 0.0, cv_vae_frames).result[0]
    except InputError as e:
        print(json.dumps({"refused": str(e)}))
        return
    peak = peak_rss_bytes()
    print(json.dumps({"output_bytes": image.numel() * image.element_size(), "baseline_rss": baseline,
                      "peak_rss": peak, "image_shape": list(image.shape), "image_dtype": str(image.dtype),
                      "finite_in_range": bool(((image >= 0) & (image <= 1)).all())}))


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:5]), *sys.argv[5:6], *map(int, sys.argv[6:7]))
