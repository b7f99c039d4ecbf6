"""What the node files share: the TAESDV socket type and LATENT/IMAGE layout conversions."""
from __future__ import annotations

import torch
from comfy_api.latest import io

from ..taesdv_core import SD_LATENT_SCALE
from ..taesdv_core.errors import InputError
from ..taesdv_core.media import crop_to_multiple_of_8

TAESDVModel = io.Custom("TAESDV")
CATEGORY = "TAESDV"


def latent_scale_input() -> io.Float.Input:
    return io.Float.Input(
        "latent_scale", default=SD_LATENT_SCALE, min=0.0001, max=10.0, step=0.00001,
        tooltip="Factor from ComfyUI's LATENT values (unscaled VAE latents) to the diffusion model's space that "
                "TAESDV eats. 0.18215 for SD1.x, SD2.x, SVD, AnimateDiff and AnimateLCM; change only if you know why.",
    )


def chunk_input() -> io.Int.Input:
    return io.Int.Input(
        "chunk_frames", default=0, min=0, max=4096,
        tooltip="Frames decoded together. 0 = auto: the fastest length for the device, capped by its free memory. "
                "Any value gives the same frames; smaller uses less memory.",
    )


def latent_to_clips(samples: dict, latent_scale: float) -> torch.Tensor:
    """LATENT {"samples": [B,4,h,w] (frames as batch) or [B,4,T,h,w]} -> NTCHW clips in model space."""
    if not isinstance(samples, dict) or "samples" not in samples:
        raise InputError("samples must be a LATENT (a dict with 'samples')")
    x = samples["samples"]
    if not isinstance(x, torch.Tensor):
        raise InputError(f"samples must be a LATENT whose 'samples' is a tensor, got {type(x).__name__}")
    if getattr(x, "is_nested", False):
        raise InputError("samples is a nested (multi-shape) latent; TAESDV decodes one SD video latent at a time")
    if x.ndim == 4:  # AnimateDiff / AnimateLCM / SVD: the batch is the frames of one clip
        clips = x.unsqueeze(0)
    elif x.ndim == 5:  # video latents [B, C, T, h, w]
        clips = x.movedim(1, 2)
    else:
        raise InputError(f"samples has shape {tuple(x.shape)}; expected [frames, 4, h, w] or [batch, 4, frames, h, w]")
    return clips.float() * latent_scale


def frames_to_image(frames: torch.Tensor) -> torch.Tensor:
    """Frames (N, T, H, W, 3), as ManagedAutoencoder.decode lays them out -> IMAGE [N*T, H, W, 3] (a view)."""
    return frames.flatten(0, 1)


def image_to_frames(image: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE [B, H, W, C] -> one clip (1, B, 3, H', W') with H', W' cropped (centred) to multiples of 8."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        raise InputError(f"pixels must be an IMAGE [frames, height, width, channels], got {getattr(image, 'shape', type(image))}")
    if image.shape[-1] not in (3, 4):
        raise InputError(f"pixels have {image.shape[-1]} channels; expected RGB (3) or RGBA (4)")
    return crop_to_multiple_of_8(image[..., :3].movedim(-1, 1), "pixels").unsqueeze(0).float()
