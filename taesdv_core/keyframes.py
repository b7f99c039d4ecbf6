"""CV-VAE latents read as keyframes by an image (SD-latent) decoder, and their expansion in time.

CV-VAE keeps its latent space compatible with the SD image VAE and compresses time 4x: a clip
of 1 + 4k frames has k + 1 latent frames, latent 0 standing for frame 0 and latent i >= 1 for
frames 4i-3 .. 4i. Decoding each latent frame with an SD decoder (TAESD, TAESDV) gives one
keyframe per latent frame; `expand_keyframes` spreads them back over the clip's frame count.

Limits: a keyframe is an image decoder's reading of a latent that summarises 4 frames, so
motion within those frames is lost; "blend" is a cross-fade, not motion interpolation (moving
objects ghost between keyframes); the compatibility with SD's latent space is approximate
(CV-VAE's regularisation), so keyframes look like a softer SD decode; and the SD decoder needs
its own input scale (SD latent x 0.18215, the TAESDV and taesd records' latent space).
"""
from __future__ import annotations

import torch

MODES = ("keyframes", "repeat", "blend")


def expanded_length(latent_frames: int, factor: int = 4) -> int:
    """1 + factor (T - 1): the frames a clip of T latent frames stands for."""
    return 1 + factor * (latent_frames - 1)


def expand_keyframes(frames: torch.Tensor, mode: str = "blend", factor: int = 4) -> torch.Tensor:
    """Keyframes (N, T, C, H, W), one per latent frame -> frames (N, T', C, H, W).

    "keyframes": unchanged, T' = T.
    "repeat":    T' = 1 + factor (T - 1); frame 0 is keyframe 0 and frames factor(i-1)+1 ..
                 factor*i show keyframe i (each latent frame's group of frames holds it).
    "blend":     T' = 1 + factor (T - 1); keyframe i sits at frame factor*i and frame
                 factor*i + r (0 < r < factor) is (1 - r/factor) k_i + (r/factor) k_{i+1}.
    Keyframe i is frame factor*i in both expanded modes.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if frames.ndim != 5:
        raise ValueError(f"frames must be NTCHW, got shape {tuple(frames.shape)}")
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    n, t = frames.shape[:2]
    if mode == "keyframes" or t == 1 or factor == 1:
        return frames
    if mode == "repeat":
        index = (torch.arange(expanded_length(t, factor), device=frames.device) + factor - 1) // factor
        return frames[:, index]
    r = torch.arange(factor, dtype=frames.dtype, device=frames.device) / factor  # 0, 1/f, ...
    r = r.view(1, 1, factor, *([1] * (frames.ndim - 2)))
    start, end = frames[:, :-1].unsqueeze(2), frames[:, 1:].unsqueeze(2)
    between = (start + (end - start) * r).flatten(1, 2)  # (N, factor (T-1), C, H, W)
    return torch.cat([between, frames[:, -1:]], 1)
