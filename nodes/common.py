"""What the node files share: the socket type of a loaded tiny autoencoder ("TAESDV", the id saved
workflows use) and LATENT/IMAGE layout conversions."""
from __future__ import annotations

import torch
from comfy_api.latest import io

from ..taesdv_core.errors import InputError
from ..taesdv_core.loading import check_latent_channels
from ..taesdv_core.media import crop_to_encoder
from . import latent_spaces

TAESDVModel = io.Custom("TAESDV")
CATEGORY = "TAESDV"


def latent_scale_input() -> io.Float.Input:
    return io.Float.Input(
        "latent_scale", default=0.0, min=0.0, max=10.0, step=0.00001,
        tooltip="0 = auto: ComfyUI's LATENT values are mapped to what the loaded decoder eats, as the host's own "
                "VAE Decode does for that model. Any other value multiplies the LATENT by it instead (0.18215 is "
                "the SD scale older TAESDV workflows saved; it gives the same as auto for TAESDV).",
    )


def chunk_input() -> io.Int.Input:
    return io.Int.Input(
        "chunk_frames", default=0, min=0, max=4096,
        tooltip="Frames decoded together. 0 = auto: the fastest length for the device, capped by its free memory. "
                "Any value gives the same frames; smaller uses less memory.",
    )


def latent_to_clips(samples: dict, decoder, latent_scale: float) -> torch.Tensor:
    """LATENT {"samples": [B, C, h, w] (frames as batch) or [B, C, T, h, w]} -> NTCHW clips, mapped to
    the decoder's input (latent_scale 0) or multiplied by latent_scale; unfolded where the LATENT
    folds the decoder's latents (FLUX.2: 128 channels -> taef2's 32 at twice the size)."""
    if not isinstance(samples, dict) or "samples" not in samples:
        raise InputError("samples must be a LATENT (a dict with 'samples')")
    x = samples["samples"]
    if not isinstance(x, torch.Tensor):
        raise InputError(f"samples must be a LATENT whose 'samples' is a tensor, got {type(x).__name__}")
    if getattr(x, "is_nested", False):
        raise InputError("samples is a nested (multi-shape) latent; decode one video latent at a time")
    if not isinstance(x, torch.Tensor) or x.ndim not in (4, 5):
        raise InputError(f"samples has shape {tuple(getattr(x, 'shape', ()))}; expected [frames, C, h, w] or "
                         "[batch, C, frames, h, w]")
    check_latent_channels(decoder, x, name="samples")
    x = x.float()
    x = latent_spaces.unfold(decoder, x * latent_scale) if latent_scale else latent_spaces.to_decoder(decoder, x)
    return x.unsqueeze(0) if x.ndim == 4 else x.movedim(1, 2)


def clips_to_latent(latents: torch.Tensor, encoder, latent_scale: float) -> dict:
    """Encoder output (1, T, C, h, w) -> LATENT: frames as the batch [T, C, h, w] for image-latent
    models (SD video), [1, C, T, h, w] for video-latent ones; mapped back to LATENT values (latent_scale 0)
    or divided by latent_scale; folded where the LATENT folds them (taef2: 32 -> FLUX.2's 128 channels)."""
    import comfy.latent_formats

    video = getattr(comfy.latent_formats, encoder.latent_format)().latent_dimensions == 3
    x = latents.movedim(1, 2) if video else latents[0]
    x = latent_spaces.fold_back(encoder, x / latent_scale) if latent_scale else latent_spaces.from_encoder(encoder, x)
    return {"samples": x}


def frames_to_image(frames: torch.Tensor) -> torch.Tensor:
    """Frames (N, T, H, W, 3), as ManagedAutoencoder.decode lays them out -> IMAGE [N*T, H, W, 3] (a view)."""
    return frames.flatten(0, 1)


def image_to_frames(image: torch.Tensor, encoder) -> torch.Tensor:
    """ComfyUI IMAGE [B, H, W, C] -> one clip (1, B, 3, H', W') cropped (centred) to the sizes `encoder` takes."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        raise InputError(f"pixels must be an IMAGE [frames, height, width, channels], got {getattr(image, 'shape', type(image))}")
    if image.shape[-1] not in (3, 4):
        raise InputError(f"pixels have {image.shape[-1]} channels; expected RGB (3) or RGBA (4)")
    return crop_to_encoder(image[..., :3].movedim(-1, 1), encoder, "pixels").unsqueeze(0).float()
