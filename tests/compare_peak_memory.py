"""Peak memory of one Compare Decoders run, measured in a fresh process (run by test_compare.py
and bench/compare_memory.py).

    python tests/compare_peak_memory.py CHECKPOINT FRAMES LATENT_HEIGHT LATENT_WIDTH [DECODERS]

As decode_peak_memory.py: the host's modules on the CPU, no server, the checkpoint loaded with
the loader's own function (once per decoder) and its layers swapped for the cheap stand-in of the
same output, so that what is measured is how many times frames are held from the decoders'
outputs through the metrics to the side-by-side IMAGE. Runs the node's execute on a random
latent clip (frames as the batch), after a two-frame warm-up (lazy inits, fonts). compare()
resets the peak RSS before each decoder to measure that decoder's own peak: the peak so far is
read before each of those resets, and the run's peak is the largest.

Prints one JSON object: output_bytes (one decoder's frames, float32), decoders, baseline_rss
(the peak reset there), peak_rss, and the IMAGE's shape.
"""
import json
import sys

import torch

from decode_peak_memory import cheap_layers, import_pack  # also puts bench/ on sys.path
from process_memory import peak_rss_bytes, reset_peak_rss


def record_peaks_across_resets(compare_module) -> list[int]:
    peaks = []
    reset = compare_module._reset_cpu_peak

    def record_then_reset():
        peaks.append(peak_rss_bytes())
        return reset()
    compare_module._reset_cpu_peak = record_then_reset
    return peaks


def main(checkpoint, frames, height, width, decoders=2):
    import_pack()
    from taesdv_pack.nodes.compare import CompareDecoders
    from taesdv_pack.nodes.load import load_managed
    from taesdv_pack.taesdv_core import compare

    models = [load_managed(checkpoint, "fp32") for _ in range(decoders)]
    for model in models:
        cheap_layers(model.decoder)
    latents = torch.randn(frames, 4, height, width, generator=torch.Generator().manual_seed(0))
    CompareDecoders.execute({"samples": latents[:2].clone()}, *models)
    peaks = record_peaks_across_resets(compare)
    baseline = reset_peak_rss()
    image, _table = CompareDecoders.execute({"samples": latents}, *models).result
    peak = max(peaks + [peak_rss_bytes()])
    print(json.dumps({"output_bytes": frames * 3 * height * 8 * width * 8 * 4, "decoders": decoders,
                      "baseline_rss": baseline, "peak_rss": peak, "image_shape": list(image.shape)}))


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:6]))
