"""Compare Decoders' peak memory: 2 decoders on 24, 48 and 96 frames of 512 px (the node, CPU).

    OMP_NUM_THREADS=1 .venv/bin/python bench/compare_memory.py [--frames 24 48 96] [--size 512] [--decoders 2]

Each row is one fresh process running tests/compare_peak_memory.py: the node's execute on random
latents, the decoders' layers swapped for a stand-in of the same output that holds its working
memory from the start (so the figures are what Compare itself holds, not a decoder's working
memory), the baseline taken after freed memory is handed back. Prints, per frame count, one
decoder's output, the side-by-side IMAGE, the peak over the baseline, and the peak above the
decoders' own outputs as a share of one output (the issue's goal: at most 25%, flat in the frame
count; the label strips above the panels are ~10 points of that share, the latents ~2 and a piece
of frames 3-4). Writes bench/results/compare-memory.json.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from reference_taesdv import official_layout_state_dict  # noqa: E402

MIB = 2 ** 20


def measure(checkpoint: str, frames: int, size: int, decoders: int) -> dict:
    script = os.path.join(ROOT, "tests", "compare_peak_memory.py")
    r = subprocess.run([sys.executable, script, checkpoint, str(frames), str(size // 8), str(size // 8), str(decoders)],
                       capture_output=True, text=True, check=True)
    m = json.loads(r.stdout.strip().splitlines()[-1])
    t, height, width, _ = m["image_shape"]
    output, growth = m["output_bytes"], m["peak_rss"] - m["baseline_rss"]
    return {"frames": frames, "size": size, "decoders": decoders, "output_mib": output / MIB,
            "side_by_side_mib": t * height * width * 3 * 4 / MIB, "peak_over_baseline_mib": growth / MIB,
            "above_outputs_share_of_one": (growth - decoders * output) / output}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[24, 48, 96])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--decoders", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = os.path.join(folder, "taesdv.pth")
        torch.save(official_layout_state_dict(seed=0), checkpoint)
        rows = [measure(checkpoint, t, args.size, args.decoders) for t in args.frames]
    print("| frames | one output MiB | side-by-side MiB | peak over baseline MiB | above the outputs, share of one |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['frames']} | {r['output_mib']:.1f} | {r['side_by_side_mib']:.1f} | {r['peak_over_baseline_mib']:.1f} "
              f"| {100 * r['above_outputs_share_of_one']:.1f}% |")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "compare-memory.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
