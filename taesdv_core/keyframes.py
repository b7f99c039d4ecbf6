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

from .errors import InputError

MODES = ("keyframes", "repeat", "blend")


def expanded_length(latent_frames: int, factor: int = 4) -> int:
    """1 + factor (T - 1): the frames a clip of T latent frames stands for."""
    return 1 + factor * (latent_frames - 1)


def check_keyframe_decoder(decoder, option: str, mode: str) -> None:
    """Refuse filling keyframes (`option` set to `mode`) for a decoder that makes several frames per
    latent frame (TAEHV): its frames are already the clip, not CV-VAE keyframes."""
    if mode in ("off", "keyframes") or decoder.time_scale == 1:
        return
    raise InputError(f"{option} {mode}: {decoder.family} already decodes {decoder.time_scale} frames per latent "
                     f"frame; {option} is for CV-VAE latents read by a one-frame-per-latent decoder (TAESDV, "
                     "image TAESD)")


def expand_keyframes(frames: torch.Tensor, mode: str = "blend", factor: int = 4) -> torch.Tensor:
    """Keyframes (N, T, ...), one per latent frame -> frames (N, T', ...), in any layout after N
    and T (NTCHW, NTHWC).

    "keyframes": unchanged, T' = T.
    "repeat":    T' = 1 + factor (T - 1); frame 0 is keyframe 0 and frames factor(i-1)+1 ..
                 factor*i show keyframe i (each latent frame's group of frames holds it).
    "blend":     T' = 1 + factor (T - 1); keyframe i sits at frame factor*i and frame
                 factor*i + r (0 < r < factor) is (1 - r/factor) k_i + (r/factor) k_{i+1}.
    Keyframe i is frame factor*i in both expanded modes. The frames are written one by one into
    the one output tensor: nothing else of the clip's size is allocated.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if frames.ndim != 5:
        raise ValueError(f"frames must be NTCHW or NTHWC, got shape {tuple(frames.shape)}")
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    n, t = frames.shape[:2]
    if mode == "keyframes" or t == 1 or factor == 1:
        return frames
    out = frames.new_empty((n, expanded_length(t, factor), *frames.shape[2:]))
    out[:, 0] = frames[:, 0]
    for i in range(1, t):
        out[:, factor * i] = frames[:, i]
        for r in range(1, factor):  # the frames between keyframes i - 1 and i
            if mode == "repeat":
                out[:, factor * (i - 1) + r] = frames[:, i]
            else:
                torch.lerp(frames[:, i - 1], frames[:, i], r / factor, out=out[:, factor * (i - 1) + r])
    return out
