"""Regenerates example_workflows/*.json (UI format) from API graphs through the real frontend.

    .venv/bin/python scripts/make_example_workflows.py

Starts the pinned ComfyUI, loads each API graph into the page with app.loadApiJson and saves
app.graph.serialize(): the files are exactly what the UI itself writes.
"""
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from browser import comfy_page  # noqa: E402
from comfy_host import ComfyHost  # noqa: E402

SVD_PREVIEW_AND_DECODE = {
    "1": {"class_type": "ImageOnlyCheckpointLoader", "inputs": {"ckpt_name": "svd_xt.safetensors"}},
    "2": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
    "3": {"class_type": "SVD_img2vid_Conditioning", "inputs": {
        "clip_vision": ["1", 1], "init_image": ["2", 0], "vae": ["1", 2], "width": 512, "height": 512,
        "video_frames": 25, "motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0}},
    "4": {"class_type": "VideoLinearCFGGuidance", "inputs": {"model": ["1", 0], "min_cfg": 1.0}},
    "5": {"class_type": "TAESDVLoader", "inputs": {"model_name": "taesdv.pth", "dtype": "auto"}},
    "6": {"class_type": "TAESDVLatentPreview", "inputs": {
        "model": ["4", 0], "taesdv": ["5", 0], "max_size": 256, "fps": 6.0, "budget_percent": 5.0}},
    "7": {"class_type": "KSampler", "inputs": {
        "model": ["6", 0], "positive": ["3", 0], "negative": ["3", 1], "latent_image": ["3", 2], "seed": 0,
        "steps": 20, "cfg": 2.5, "sampler_name": "euler", "scheduler": "karras", "denoise": 1.0}},
    "8": {"class_type": "TAESDVDecode", "inputs": {
        "taesdv": ["5", 0], "samples": ["7", 0], "chunk_frames": 0, "latent_scale": 0.18215}},
    "9": {"class_type": "SaveAnimatedWEBP", "inputs": {
        "images": ["8", 0], "filename_prefix": "taesdv/svd", "fps": 6.0, "lossless": False, "quality": 90,
        "method": "default"}},
}

ROUNDTRIP = {
    "1": {"class_type": "LoadVideo", "inputs": {"file": "example.mp4"}},
    "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
    "3": {"class_type": "TAESDVLoader", "inputs": {"model_name": "taesdv.pth", "dtype": "auto"}},
    "4": {"class_type": "TAESDVEncode", "inputs": {
        "taesdv": ["3", 0], "pixels": ["2", 0], "chunk_frames": 0, "latent_scale": 0.18215}},
    "5": {"class_type": "TAESDVDecode", "inputs": {
        "taesdv": ["3", 0], "samples": ["4", 0], "chunk_frames": 0, "latent_scale": 0.18215}},
    "6": {"class_type": "CreateVideo", "inputs": {"images": ["5", 0], "fps": 24.0}},
    "7": {"class_type": "SaveVideo", "inputs": {
        "video": ["6", 0], "filename_prefix": "taesdv/roundtrip", "format": "auto", "codec": "auto"}},
}

STREAMING = {
    "1": {"class_type": "TAESDVLoader", "inputs": {"model_name": "taesdv.pth", "dtype": "auto"}},
    "2": {"class_type": "LoadLatent", "inputs": {"latent": "next_piece.latent"}},
    "3": {"class_type": "TAESDVStreamingDecode", "inputs": {
        "taesdv": ["1", 0], "samples": ["2", 0], "stream_name": "live", "reset": False, "chunk_frames": 0,
        "latent_scale": 0.18215}},
    "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
}

EXAMPLES = {
    "taesdv_svd_live_preview_and_decode.json": SVD_PREVIEW_AND_DECODE,
    "taesdv_video_roundtrip.json": ROUNDTRIP,
    "taesdv_streaming_decode.json": STREAMING,
}


def main() -> None:
    base = tempfile.mkdtemp()
    host = ComfyHost(base).start()
    try:
        with comfy_page(host.url) as (page, _errors):
            for name, graph in EXAMPLES.items():
                workflow = json.loads(page.evaluate(
                    "async (g) => { await app.loadApiJson(g, 'x'); return JSON.stringify(app.graph.serialize()); }", graph))
                with open(os.path.join(ROOT, "example_workflows", name), "w") as f:
                    json.dump(workflow, f, indent=1)
                print("wrote", name, len(workflow["nodes"]), "nodes")
    finally:
        host.stop()


if __name__ == "__main__":
    main()
