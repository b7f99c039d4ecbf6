"""The baseline: TAESDV's parallel decode written the way the reference (madebyollin/taesdv) does it.

The whole clip runs as one batch; before each MemBlock the input is shifted one frame later in
time (zero first frame) and concatenated with itself on channels, then the block's first conv
(128 -> 64) runs on the concatenation. Default memory format (NCHW). Same weights as the pack.
"""
import torch
import torch.nn.functional as F

from taesdv_core.model import MemBlock, TAESDVDecoder


@torch.inference_mode()
def baseline_decode(decoder: TAESDVDecoder, latents: torch.Tensor) -> torch.Tensor:
    """latents (N, T, 4, h, w) -> frames (N, T, 3, 8h, 8w), unclamped."""
    n, t = latents.shape[:2]
    x = latents.reshape(n * t, *latents.shape[2:])
    for layer in decoder:
        if isinstance(layer, MemBlock):
            seq = x.reshape(n, t, *x.shape[1:])
            past = F.pad(seq, (0, 0, 0, 0, 0, 0, 1, 0), value=0)[:, :t].reshape(x.shape)
            x = F.relu(layer.conv(torch.cat([x, past], 1)) + x)
        else:
            x = layer(x)
    return x.reshape(n, t, *x.shape[1:])
