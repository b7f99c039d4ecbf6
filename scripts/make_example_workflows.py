"""Regenerates example_workflows/*.json (UI format) from API graphs through the real frontend.

    .venv/bin/python scripts/make_example_workflows.py [NAME.json ...]   # all, or the ones named
    .venv/bin/python scripts/make_example_thumbnails.py   # then their template thumbnails (NAME.jpg)

Starts the pinned ComfyUI, loads each API graph into the page with app.loadApiJson, adds a Note
node saying what the example needs and where it comes from, lays the nodes out (LAYOUT), sets the
saved view (extra.ds) so the whole graph shows in a 1280x800 window, and saves
app.graph.serialize(): the files are exactly what the UI itself writes. Needs Chromium and
playwright (as the browser tests).
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
        "taesdv": ["5", 0], "samples": ["7", 0], "chunk_frames": 0, "latent_scale": 0.0}},
    "9": {"class_type": "SaveAnimatedWEBP", "inputs": {
        "images": ["8", 0], "filename_prefix": "taesdv/svd", "fps": 6.0, "lossless": False, "quality": 90,
        "method": "default"}},
}

ROUNDTRIP = {
    "1": {"class_type": "LoadVideo", "inputs": {"file": "example.mp4"}},
    "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
    "3": {"class_type": "TAESDVLoader", "inputs": {"model_name": "taesdv.pth", "dtype": "auto"}},
    "4": {"class_type": "TAESDVEncode", "inputs": {
        "taesdv": ["3", 0], "pixels": ["2", 0], "chunk_frames": 0, "latent_scale": 0.0}},
    "5": {"class_type": "TAESDVDecode", "inputs": {
        "taesdv": ["3", 0], "samples": ["4", 0], "chunk_frames": 0, "latent_scale": 0.0}},
    "6": {"class_type": "CreateVideo", "inputs": {"images": ["5", 0], "fps": ["2", 2]}},  # the input's own fps
    "7": {"class_type": "SaveVideo", "inputs": {
        "video": ["6", 0], "filename_prefix": "taesdv/roundtrip", "format": "auto", "codec": "auto"}},
}

STREAMING = {
    "1": {"class_type": "TAESDVLoader", "inputs": {"model_name": "taesdv.pth", "dtype": "auto"}},
    "2": {"class_type": "LoadLatent", "inputs": {"latent": "next_piece.latent"}},
    "3": {"class_type": "TAESDVStreamingDecode", "inputs": {
        "taesdv": ["1", 0], "samples": ["2", 0], "stream_name": "live", "reset": False, "chunk_frames": 0,
        "latent_scale": 0.0}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "taesdv/stream/live"}},
    "5": {"class_type": "PreviewAny", "inputs": {"source": ["3", 1]}},  # total_frames: the clip so far
}

DEMO_LIVE_PREVIEW = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "taesdv-demo-sd15-random.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a red ball rolling across a checkerboard"}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
    "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 256, "height": 256, "batch_size": 8}},
    "5": {"class_type": "TAESDVLoader", "inputs": {"model_name": "taesdv-random-demo.pth", "dtype": "auto"}},
    "6": {"class_type": "TAESDVLatentPreview", "inputs": {
        "model": ["1", 0], "taesdv": ["5", 0], "max_size": 256, "fps": 8.0, "budget_percent": 100.0}},
    "7": {"class_type": "KSampler", "inputs": {
        "model": ["6", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0], "seed": 0,
        "steps": 6, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
    "8": {"class_type": "TAESDVDecode", "inputs": {
        "taesdv": ["5", 0], "samples": ["7", 0], "chunk_frames": 0, "latent_scale": 0.0}},
    "9": {"class_type": "SaveAnimatedWEBP", "inputs": {
        "images": ["8", 0], "filename_prefix": "taesdv/demo", "fps": 8.0, "lossless": False, "quality": 90,
        "method": "default"}},
}

COMPARE = {
    "1": {"class_type": "LoadLatent", "inputs": {"latent": "next_piece.latent"}},
    "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "3": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["2", 2]}},
    "4": {"class_type": "TAESDVLoader", "inputs": {"model_name": "taesdv.pth", "dtype": "auto"}},
    "5": {"class_type": "TAESDVLoader", "inputs": {"model_name": "taesd_decoder.pth", "dtype": "auto"}},
    "6": {"class_type": "TAESDVCompareDecoders", "inputs": {
        "samples": ["1", 0], "decoder_a": ["4", 0], "decoder_b": ["5", 0], "reference": ["3", 0]}},
    "7": {"class_type": "SaveAnimatedWEBP", "inputs": {
        "images": ["6", 0], "filename_prefix": "taesdv/compare", "fps": 8.0, "lossless": False, "quality": 90,
        "method": "default"}},
    "8": {"class_type": "PreviewAny", "inputs": {"source": ["6", 1]}},
}

TAESDV_WEIGHTS = ("models/vae_approx/taesdv.pth: `python custom_nodes/ComfyUI-TAESDV/scripts/fetch_weights.py "
                  "models/vae_approx` (run in the ComfyUI folder) downloads and verifies it, or download "
                  "https://github.com/madebyollin/taesdv/raw/main/taesdv.pth by hand. ComfyUI-Manager's model list "
                  "does not offer it.")

# What `bash scripts/start.sh --demo-weights` (scripts/make_demo_assets.py) writes, offline.
DEMO = ("Offline, on the demo files: `bash scripts/start.sh --demo-weights` writes random-weight stand-ins "
        "(models/vae_approx/taesdv-random-demo.pth, models/vae_approx/taesd-random-demo.pth, "
        "models/checkpoints/taesdv-demo-sd15-random.safetensors) and the inputs (input/example.png, "
        "input/example.mp4, input/next_piece.latent). ")

NOTES = {
    "taesdv_demo_live_preview.json": (
        "TRY THIS ONE FIRST: runs offline, no downloads.\n\n"
        "Needs what `bash scripts/start.sh --demo-weights` writes: models/checkpoints/"
        "taesdv-demo-sd15-random.safetensors (an SD1.5-format checkpoint with random weights) and "
        "models/vae_approx/taesdv-random-demo.pth (TAESDV with random weights). Both are already picked.\n\n"
        "Queue it: the KSampler node plays the whole 8-frame clip as it is at every step (budget 100% so "
        "every step previews, even on a CPU). The pictures are noise; the plumbing is real.\n\n"
        "With real models: pick an SD1.5 checkpoint and taesdv.pth (`python custom_nodes/ComfyUI-TAESDV/scripts/"
        "fetch_weights.py models/vae_approx`, run in the ComfyUI folder), and lower budget_percent to 5."),
    "taesdv_svd_live_preview_and_decode.json": (
        "Needs:\n- models/checkpoints/svd_xt.safetensors: Stable Video Diffusion XT "
        "(stabilityai/stable-video-diffusion-img2vid-xt on Hugging Face; the demo files have no stand-in for it).\n"
        "- " + TAESDV_WEIGHTS + "\n"
        "- input/example.png: the start picture. Upload your own in Load Image, or use the one "
        "`start.sh --demo-weights` writes.\n\n"
        "Offline this example cannot run (no SVD checkpoint); taesdv_demo_live_preview shows the same live "
        "preview on the demo files. With the SVD checkpoint but without taesdv.pth, `bash scripts/start.sh "
        "--demo-weights` writes taesdv-random-demo.pth: pick it in Load TAESDV (pictures are noise)."),
    "taesdv_video_roundtrip.json": (
        "Needs:\n- " + TAESDV_WEIGHTS + "\n"
        "- input/example.mp4: any video. Upload your own in Load Video, or use the 16-frame 12 fps clip "
        "`start.sh --demo-weights` writes.\n\n"
        + DEMO + "Before queueing, pick taesdv-random-demo.pth in Load TAESDV (random weights: the "
        "plumbing works, the pictures are noise).\n\n"
        "The saved video keeps the input's frame rate: Get Video Components' fps feeds Create Video. "
        "Pick random-demo-taew2_1.pth (or a real TAEHV file such as taew2_1.safetensors) to run the "
        "clip through TAEHV instead: 4 frames make one latent frame, so 16 frames come back as 13."),
    "taesdv_streaming_decode.json": (
        "Needs:\n- " + TAESDV_WEIGHTS + "\n"
        "- input/next_piece.latent: a ComfyUI Save Latent file (save one from any SD sampler with Save "
        "Latent, then move it from output/latents/ to input/), or the 4-frame one `start.sh "
        "--demo-weights` writes.\n\n"
        + DEMO + "Before queueing, pick taesdv-random-demo.pth in Load TAESDV (random weights: the "
        "plumbing works, the pictures are noise).\n\n"
        "Each queue run decodes the next piece and continues the clip where the last run stopped "
        "(stream_name); set reset to start a new clip. Preview Any (Preview as Text) shows total_frames, "
        "the length of the clip so far; Save Image shows this piece and saves every piece's frames, "
        "numbered in order, to output/taesdv/stream/, which so holds the whole clip so far."),
    "taesdv_compare_decoders.json": (
        "Needs:\n- input/next_piece.latent: a ComfyUI Save Latent file of an SD1.5 clip (Save Latent after a "
        "sampler, then move it from output/latents/ to input/), or the 4-frame one `start.sh --demo-weights` writes.\n"
        "- models/checkpoints/v1-5-pruned-emaonly.safetensors: any SD1.5 checkpoint; only its VAE is used, to "
        "decode the reference frames (the full VAE).\n"
        "- " + TAESDV_WEIGHTS + "\n"
        "- models/vae_approx/taesd_decoder.pth: image TAESD, https://github.com/madebyollin/taesd (the file "
        "ComfyUI's own previews use).\n\n"
        + DEMO + "Before queueing, pick them in the loaders: taesdv-demo-sd15-random.safetensors in Load "
        "Checkpoint, taesdv-random-demo.pth in the first Load TAESDV, taesd-random-demo.pth in the second "
        "(otherwise the prompt fails validation on the missing files).\n\n"
        "Compare Decoders decodes the same latents with both tiny decoders and lays them next to the full "
        "VAE's frames, labelled; the table (Preview Any) gives ms per frame, peak memory, and PSNR, SSIM and "
        "flicker against the full VAE. Add decoder_c/decoder_d for more files (TAE-192, ...). With random demo "
        "weights only the timings and the plumbing mean anything."),
}

EXAMPLES = {
    "taesdv_demo_live_preview.json": DEMO_LIVE_PREVIEW,
    "taesdv_svd_live_preview_and_decode.json": SVD_PREVIEW_AND_DECODE,
    "taesdv_video_roundtrip.json": ROUNDTRIP,
    "taesdv_streaming_decode.json": STREAMING,
    "taesdv_compare_decoders.json": COMPARE,
}

# Where each node goes and how big it is ({node id: ([x, y], [w, h])}, "note": the Note), compact
# enough that the whole graph fits a 1280x800 window above LiteGraph's low-quality zoom (0.6, where
# it stops drawing text). Output nodes are big enough to show their results at 100% after a run:
# the sampler plays its 256 px clip, Compare's animated WebP holds three 256 px panels side by side
# with their labels, and its Preview Any a table of three decoders. Every node has room below and
# beside it for the size the frontends (1.49+) give it after a run: Load Video and Load Image grow
# to fit their picture, Get Video Components has five outputs on ComfyUI 0.33, and Nodes 2.0 draws
# nodes taller (a file loader 114, a decoder 162; tests/test_examples.py checks it in the browser).
LAYOUT = {
    "taesdv_demo_live_preview.json": {
        "1": ([0, 0], [300, 98]), "5": ([0, 170], [300, 82]), "4": ([0, 350], [300, 106]),
        "2": ([360, 0], [400, 170]), "3": ([360, 230], [400, 120]), "6": ([360, 410], [300, 126]),
        "7": ([820, 0], [320, 620]), "8": ([820, 680], [300, 126]), "9": ([1200, 0], [320, 480]),
        "note": ([0, 640], [760, 250]),
    },
    "taesdv_svd_live_preview_and_decode.json": {
        "1": ([0, 0], [400, 98]), "2": ([0, 190], [400, 330]), "5": ([0, 580], [300, 82]),
        "4": ([460, 0], [300, 58]), "3": ([460, 120], [300, 218]), "6": ([460, 400], [300, 126]),
        "7": ([820, 0], [320, 620]), "8": ([820, 680], [300, 126]), "9": ([1200, 0], [320, 480]),
        "note": ([0, 780], [760, 180]),
    },
    "taesdv_video_roundtrip.json": {
        "1": ([0, 0], [300, 380]), "3": ([0, 440], [300, 82]), "2": ([360, 0], [270, 106]),
        "4": ([360, 180], [270, 102]), "5": ([360, 380], [270, 126]), "6": ([690, 0], [300, 102]),
        "7": ([690, 170], [320, 420]), "note": ([0, 620], [630, 250]),
    },
    "taesdv_streaming_decode.json": {
        "1": ([0, 0], [300, 82]), "2": ([0, 180], [300, 58]), "3": ([360, 0], [300, 150]),
        "4": ([720, 0], [420, 420]), "5": ([720, 480], [420, 140]), "note": ([0, 310], [660, 320]),
    },
    "taesdv_compare_decoders.json": {
        "1": ([0, 0], [300, 58]), "2": ([0, 120], [300, 98]), "4": ([0, 280], [300, 82]),
        "5": ([0, 460], [300, 82]), "3": ([360, 0], [240, 46]), "6": ([360, 120], [260, 126]),
        "7": ([680, 0], [700, 430]), "8": ([680, 490], [700, 220]), "note": ([0, 640], [620, 260]),
    },
}
# The window the saved view (extra.ds) fits the whole graph into: the free canvas of the pinned
# frontend at 1280x800 (sidebar, tabs and action bar around it), clear of the minimap and zoom
# controls in its bottom right corner.
VIEW = {"width": 1280, "height": 800, "left": 70, "top": 140, "right": 10, "bottom": 10,
        "minimap": [1015, 535, 1280, 800]}
MIN_SCALE = 0.65  # LiteGraph draws no text below 0.6

LOAD_WITH_NOTE = """async ([graph, text, layout, view]) => {
  await app.loadApiJson(graph, 'x');
  const note = LiteGraph.createNode('Note');
  note.title = 'What this example needs';
  note.widgets[0].value = text;
  app.graph.add(note);
  for (const [id, [pos, size]] of Object.entries(layout)) {
    const node = id === 'note' ? note : app.graph.getNodeById(Number(id));
    node.pos = pos;
    node.size = size;
  }
  // The saved view: the whole graph (titles included) in the window, clear of the minimap, at 100% at most.
  const title = LiteGraph.NODE_TITLE_HEIGHT, all = app.graph._nodes;
  const x0 = Math.min(...all.map((n) => n.pos[0])), x1 = Math.max(...all.map((n) => n.pos[0] + n.size[0]));
  const y0 = Math.min(...all.map((n) => n.pos[1] - title)), y1 = Math.max(...all.map((n) => n.pos[1] + n.size[1]));
  const [mx, my] = view.minimap;
  const fits = [];
  for (const [right, bottom] of [[view.width - view.right, view.height - view.bottom],
                                 [mx - 10, view.height - view.bottom], [view.width - view.right, my - 10]]) {
    const w = right - view.left, h = bottom - view.top;
    const scale = Math.min(1, w / (x1 - x0), h / (y1 - y0));
    for (const pad of [(w - (x1 - x0) * scale) / 2, 0]) {  // centred, or against the left edge
      const offset = [(view.left + pad) / scale - x0, view.top / scale - y0];
      const hidden = all.some((n) => (n.pos[0] + n.size[0] + offset[0]) * scale > mx &&
                                     (n.pos[1] + n.size[1] + offset[1]) * scale > my);
      if (!hidden) fits.push({scale, offset});
    }
  }
  const best = fits.sort((a, b) => b.scale - a.scale)[0];
  app.canvas.ds.scale = best.scale;
  app.canvas.ds.offset = best.offset;
  return JSON.stringify(app.graph.serialize());
}"""


def main(names: list[str]) -> None:
    unknown = set(names) - set(EXAMPLES)
    if unknown:
        sys.exit(f"make_example_workflows: no example named {', '.join(sorted(unknown))} (examples: {', '.join(EXAMPLES)})")
    base = tempfile.mkdtemp()
    host = ComfyHost(base).start()
    try:
        with comfy_page(host.url) as (page, _errors):
            for name, graph in EXAMPLES.items():
                if names and name not in names:
                    continue
                workflow = json.loads(page.evaluate(LOAD_WITH_NOTE, [graph, NOTES[name], LAYOUT[name], VIEW]))
                assert workflow["extra"]["ds"]["scale"] >= MIN_SCALE, (name, workflow["extra"]["ds"])
                with open(os.path.join(ROOT, "example_workflows", name), "w") as f:
                    json.dump(workflow, f, indent=1)
                print("wrote", name, len(workflow["nodes"]), "nodes")
    finally:
        host.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
