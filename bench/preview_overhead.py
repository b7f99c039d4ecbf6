"""Preview overhead: a real KSampler's wall time with and without TAESDV Latent Preview.

    .venv/bin/python bench/preview_overhead.py [--frames 8] [--size 256] [--steps 8] [--channels 160]

Runs the pinned ComfyUI on loopback with a random-weight SD1.5-format UNet (the test node
TAESDVTest_TinySD15Model; its width sets the cost of a step), alternating runs with and
without the preview node, and prints medians. Writes bench/results/preview-overhead.json.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import torch  # noqa: E402

import graphs  # noqa: E402
from comfy_host import ComfyHost  # noqa: E402
from reference_taesdv import official_layout_state_dict  # noqa: E402


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
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--channels", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    base = tempfile.mkdtemp()
    host = ComfyHost(base, extra_packs={"taesdv_test_nodes": os.path.join(ROOT, "tests", "comfy_test_nodes")})
    torch.save(official_layout_state_dict(), os.path.join(base, "models", "vae_approx", "taesdv.pth"))
    host.start()
    results = {"config": vars(args), "runs": []}
    try:
        settings = [("off", None), ("defaults (5%, 256 px)", {"budget_percent": 5.0, "max_size": 256}),
                    ("5%, 128 px", {"budget_percent": 5.0, "max_size": 128}),
                    ("every step (100%, 256 px)", {"budget_percent": 100.0, "max_size": 256})]
        kw = dict(frames=args.frames, size=args.size, steps=args.steps, channels=args.channels)
        host.run(graphs.sampling_graph(**kw))  # warm-up: model build, allocator
        samples = {name: [] for name, _ in settings}
        previews = {name: [] for name, _ in settings}
        decode_ms = {name: [] for name, _ in settings}
        for _ in range(args.repeats):
            for name, preview in settings:
                seconds, clips = sampler_seconds(host, graphs.sampling_graph(preview=preview, **kw))
                samples[name].append(seconds)
                previews[name].append(len(clips))
                decode_ms[name] += [c["decode_ms"] for c in clips]
        off = statistics.median(samples["off"])
        print(f"KSampler, {args.frames} frames of {args.size}x{args.size} px, {args.steps} steps, tiny UNet width "
              f"{args.channels}, CPU, median of {args.repeats}")
        print(f"{'previews':28s} {'sampler s':>10s} {'overhead':>9s} {'previews/run':>13s} {'ms/preview':>11s}")
        for name, _ in settings:
            med = statistics.median(samples[name])
            row = {"setting": name, "sampler_seconds": med, "overhead": med / off - 1,
                   "previews_per_run": statistics.median(previews[name]),
                   "ms_per_preview": statistics.median(decode_ms[name]) if decode_ms[name] else None, "all": samples[name]}
            results["runs"].append(row)
            ms = f"{row['ms_per_preview']:.0f}" if row["ms_per_preview"] else "-"
            print(f"{name:28s} {med:10.2f} {100 * row['overhead']:+8.1f}% {row['previews_per_run']:13.0f} {ms:>11s}")
    finally:
        host.stop()
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "preview-overhead.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
