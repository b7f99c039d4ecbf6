"""Peak memory of one Compare Decoders run, measured in a fresh process (run by test_compare.py
and bench/compare_memory.py).

    python tests/compare_peak_memory.py CHECKPOINT FRAMES LATENT_HEIGHT LATENT_WIDTH [DECODERS]

As decode_peak_memory.py: the host's modules on the CPU, no server, the checkpoint loaded with
the loader's own function (once per decoder) and its layers swapped for a stand-in of the same
output at almost no compute (stand_in_layers), so that what is measured is how many times
frames are held from the decoders' outputs through the metrics to the side-by-side IMAGE. Runs
the node's execute on a random latent clip (frames as the batch), after a two-frame warm-up
(lazy inits, fonts).

The baseline is taken after the memory the warm-up freed is handed back to the system (glibc's
malloc_trim), as compare() does when it starts: otherwise the baseline would count freed memory
that compare() then gives back, and hide a varying part of the run's growth. compare() resets
the peak RSS before each decoder to measure that decoder's own peak: the peak so far is read
before each of those resets, and the run's peak is the largest.

Prints one JSON object: output_bytes (one decoder's frames, float32), decoders, baseline_rss
(the peak reset there), peak_rss, and the IMAGE's shape.
"""
import ctypes
import json
import sys

import torch

from decode_peak_memory import import_pack  # also puts bench/ on sys.path
from process_memory import peak_rss_bytes, reset_peak_rss


def stand_in_layers(decoder, latent_height: int, latent_width: int):
    """forward_chunk with the real one's contract and output layout at almost no compute: the
    first 3 latent channels upsampled (nearest) through a sigmoid, channels_last frames in (0, 1).

    Each step's frames are written into one buffer the stand-in holds from the start, as a
    decoder holds its working memory: that memory is the decoder's, not Compare's (a real
    decoder's on the CPU is many frames of activations), so the baseline includes it. The engine
    copies a step's frames out before it asks for the next (on the CPU steps are one latent frame).
    """
    scale = decoder.spatial_scale
    frames = torch.empty(1, 3, latent_height * scale, latent_width * scale).contiguous(memory_format=torch.channels_last)

    def forward_chunk(latents, memory):
        n, t = latents.shape[:2]
        if n * t != 1:
            raise ValueError(f"the stand-in decodes one latent frame per step, got {n}x{t}")
        blocks = frames.unflatten(2, (latent_height, scale)).unflatten(4, (latent_width, scale))  # a view
        blocks.copy_(latents[0, :, :3, :, None, :, None].expand_as(blocks)).sigmoid_()
        return frames.unsqueeze(0), memory or []

    decoder.forward_chunk = forward_chunk


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
        stand_in_layers(model.decoder, height, width)
    latents = torch.randn(frames, 4, height, width, generator=torch.Generator().manual_seed(0))
    CompareDecoders.execute({"samples": latents[:2].clone()}, *models)
    peaks = record_peaks_across_resets(compare)
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    baseline = reset_peak_rss()
    image, _table = CompareDecoders.execute({"samples": latents}, *models).result
    peak = max(peaks + [peak_rss_bytes()])
    print(json.dumps({"output_bytes": frames * 3 * height * 8 * width * 8 * 4, "decoders": decoders,
                      "baseline_rss": baseline, "peak_rss": peak, "image_shape": list(image.shape)}))


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:6]))
