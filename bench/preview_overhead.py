"""Preview overhead: a real KSampler's wall time with and without TAESDV Latent Preview.

    .venv/bin/python bench/preview_overhead.py [--frames 8] [--size 256] [--steps 8] [--channels 160]
    .venv/bin/python bench/preview_overhead.py --model wan [--frames 25] [--size 256] [--steps 8] [--channels 128]
        [--previews defaults 128px every-step] [--out preview-overhead-wan-dim2048-steps20.json]

Runs the pinned ComfyUI on loopback with a random-weight diffusion model built from ComfyUI's own
classes by a test node: an SD1.5-format UNet previewed through TAESDV (`--model sd15`,
TAESDVTest_TinySD15Model; --channels is its width), or a Wan 2.1-format video transformer
previewed through a TAEHV file (`--model wan`, TAESDVTest_TinyWanModel; --channels is its dim,
--frames the video length, so 25 frames are 7 latent frames). Its width sets the cost of a step.
Every preview setting runs twice: previews in fp32 and in dtype auto (what previews always use:
bf16 on CPUs with native bf16, else fp32; the header names the CPU and what auto is there). The
fp32 previews go through a test-only node (TAESDVTest_PreviewDtype), so both run in one server
on the same model; the product has no preview dtype setting. Runs of every setting alternate;
prints medians per dtype: sampler wall time, overhead against no previews, previews per run,
ms per preview, and for TAEHV how many previews (all runs together) were whole clips and how
many the cheaper variants (every 4th frame, then also at latent size). Writes
bench/results/preview-overhead[-wan].json.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import torch  # noqa: E402

import graphs  # noqa: E402
from comfy_host import ComfyHost  # noqa: E402
from taesdv_core.precision import auto_dtype, describe_cpu  # noqa: E402
from reference_taehv import random_state_dict  # noqa: E402
from reference_taesdv import official_layout_state_dict  # noqa: E402

TAEHV_FILE = "taew2_1-random.safetensors"
# --previews option -> (the row's name, the preview node's settings); each runs beside "off"
PREVIEW_SETTINGS = {
    "defaults": ("defaults (5%, 256 px)", {"budget_percent": 5.0, "max_size": 256}),
    "128px": ("5%, 128 px", {"budget_percent": 5.0, "max_size": 128}),
    "every-step": ("every step (100%, 256 px)", {"budget_percent": 100.0, "max_size": 256}),
}


def sampler_seconds(host, graph):
    """Seconds between the sampler's first and last progress messages, plus the preview stats."""
    times, clips = [], []

    def on_message(m):
        if isinstance(m, dict) and m["type"] == "progress" and m["data"].get("node") == "13":
            times.append(time.perf_counter())
        if isinstance(m, dict) and m["type"] == "taesdv.preview":
            clips.append(m["data"])

    ws, client_id = host.connect()
    host.post_json("/taesdv/preview/client", {"client_id": client_id})  # as the UI's extension does
    started = time.perf_counter()
    try:
        run = host.run(graph, on_message=on_message, ws_and_id=(ws, client_id))
    finally:
        ws.close()
    assert run.succeeded, run.error_text()
    # from queueing to the last step: includes step 1 and the last preview
    return times[-1] - started, clips


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("sd15", "wan"), default="sd15",
                        help="sd15: SD1.5 UNet previewed with TAESDV; wan: Wan 2.1 video model previewed with TAEHV")
    parser.add_argument("--frames", type=int, default=None, help="frames of the clip (default 8 sd15, 25 wan)")
    parser.add_argument("--size", type=int, default=256, help="frame width and height, pixels")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--channels", type=int, default=None,
                        help="the tiny model's width (default 160 sd15 UNet channels, 128 wan dim)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--previews", nargs="+", choices=tuple(PREVIEW_SETTINGS), default=tuple(PREVIEW_SETTINGS),
                        help="preview settings to run beside 'off' (default all three)")
    parser.add_argument("--out", default=None, help="file name under bench/results (default "
                        "preview-overhead.json, or preview-overhead-wan.json with --model wan)")
    args = parser.parse_args()
    wan = args.model == "wan"
    args.frames = args.frames or (25 if wan else 8)
    args.channels = args.channels or (128 if wan else 160)
    base = tempfile.mkdtemp()
    host = ComfyHost(base, extra_packs={"taesdv_test_nodes": os.path.join(ROOT, "tests", "comfy_test_nodes")})
    vae_approx = os.path.join(base, "models", "vae_approx")
    if wan:
        from safetensors.torch import save_file

        save_file(random_state_dict("wan2_1", seed=1), os.path.join(vae_approx, TAEHV_FILE))
    else:
        torch.save(official_layout_state_dict(), os.path.join(vae_approx, "taesdv.pth"))
    host.start()
    auto = str(auto_dtype("cpu")).split(".")[-1]
    results = {"config": {**vars(args), "cpu": describe_cpu(), "auto_dtype": auto, "torch": torch.__version__},
               "runs": []}
    try:
        settings = [("off", "-", None)] + [(name, dtype, {**preview, "dtype": dtype})
                                           for option, (name, preview) in PREVIEW_SETTINGS.items()
                                           if option in args.previews for dtype in ("fp32", "auto")]
        if wan:
            def graph(preview=None, steps=args.steps):
                return graphs.wan_sampling_graph(TAEHV_FILE, width=args.size, height=args.size, length=args.frames,
                                                 steps=steps, dim=args.channels, preview=preview)
        else:
            def graph(preview=None, steps=args.steps):
                return graphs.sampling_graph(frames=args.frames, size=args.size, steps=steps,
                                             channels=args.channels, preview=preview)
        # warm-up: model build, allocator, and each dtype's preview decoder timed (its speed carries
        # over to the measured runs, as from one run to the next for users); two steps do all that
        for dtype in ("fp32", "auto"):
            host.run(graph({"budget_percent": 100.0, "dtype": dtype}, steps=min(args.steps, 2)))
        samples = {(name, dtype): [] for name, dtype, _ in settings}
        clips_of = {(name, dtype): [] for name, dtype, _ in settings}
        for _ in range(args.repeats):
            for name, dtype, preview in settings:
                seconds, clips = sampler_seconds(host, graph(preview))
                samples[name, dtype].append(seconds)
                clips_of[name, dtype].append(clips)
        off = statistics.median(samples["off", "-"])
        model = f"tiny Wan 2.1 dim {args.channels} + TAEHV" if wan else f"tiny SD1.5 UNet width {args.channels} + TAESDV"
        print(f"KSampler, {args.frames} frames of {args.size}x{args.size} px, {args.steps} steps, {model}, "
              f"median of {args.repeats}; {describe_cpu()}, preview dtype auto = {auto}")
        print(f"{'previews':28s} {'dtype':>6s} {'sampler s':>10s} {'overhead':>9s} {'previews/run':>13s} "
              f"{'ms/preview':>11s} {'whole/every 4th/small':>22s}")
        for name, dtype, _ in settings:
            med = statistics.median(samples[name, dtype])
            every = [c for run in clips_of[name, dtype] for c in run]
            kinds = [sum(1 for c in every if kind(c) == k) for k in ("whole", "every 4th", "small")]
            row = {"setting": name, "dtype": dtype if dtype != "auto" else f"auto ({auto})", "sampler_seconds": med,
                   "overhead": med / off - 1,
                   "previews_per_run": statistics.median(len(run) for run in clips_of[name, dtype]),
                   "ms_per_preview": statistics.median(c["decode_ms"] for c in every) if every else None,
                   "previews_whole_every4th_small": kinds, "all": samples[name, dtype]}
            results["runs"].append(row)
            ms = f"{row['ms_per_preview']:.0f}" if row["ms_per_preview"] else "-"
            print(f"{name:28s} {dtype:>6s} {med:10.2f} {100 * row['overhead']:+8.1f}% {row['previews_per_run']:13.0f} "
                  f"{ms:>11s} {'/'.join(map(str, kinds)):>22s}")
    finally:
        host.stop()
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    out = args.out or ("preview-overhead-wan.json" if wan else "preview-overhead.json")
    with open(os.path.join(ROOT, "bench", "results", out), "w") as f:
        json.dump(results, f, indent=1)


def kind(clip: dict) -> str:
    """Which decoder made a clip: the whole clip (variant 0), a TAEHV variant without time
    upscaling (every 4th frame), or one without space upscaling too (frames at latent size)."""
    return ("whole", "every 4th", "small")[clip.get("variant", 0)]

if __name__ == "__main__":
    main()
