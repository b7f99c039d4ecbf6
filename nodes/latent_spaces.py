"""How ComfyUI's latents map to each tiny decoder's input.

A LATENT between nodes holds the VAE's own latents; a sampler's x0 is in the diffusion model's
space, `latent_format.process_in(LATENT)`. Each decoder of the core carries the latent space its
family's record gave it (`latent_space`): the latent format it was made for (`latent_format`, a
class name of comfy.latent_formats) and which of the two spaces it eats (`input_space`): "model"
(TAESDV, image TAESD, TAEHV for HunyuanVideo) or "vae" (LATENT as is: TAEHV for Wan, as the
host's own VAE Decode feeds those files). Here the host's own format classes map them. Where
the space folds latent pixels into the LATENT's channels (FLUX.2: taef2's 32 channels at 1/8 size
are 128 at 1/16 in the LATENT), the decoder's input is unfolded after the mapping and the
encoder's output folded back before it. The decode nodes and the previews both go through
`to_decoder`, so a preview shows what a decode of the same latents gives.
"""
from __future__ import annotations

import torch

import comfy.latent_formats


def _format(name: str):
    return getattr(comfy.latent_formats, name)()


def latent_channels(module) -> int:
    """Channels of the LATENT a decoder or encoder of the core takes or gives (FLUX.2's: 128)."""
    return module.latent_space.latent_channels(module.latent_channels)


def unfold(decoder, latents: torch.Tensor) -> torch.Tensor:
    """LATENT layout [B, C, h, w] or [B, C, T, h, w] -> the decoder's (its space's unfold)."""
    return decoder.latent_space.unfold(latents, channel_dim=1)


def fold_back(encoder, latents: torch.Tensor) -> torch.Tensor:
    """The encoder's latents, ComfyUI's layout -> the LATENT's (its space's fold_back)."""
    return encoder.latent_space.fold_back(latents, channel_dim=1)


def serves(decoder, latent_format) -> bool:
    """Whether latents of this comfy.latent_formats object are what `decoder` was made for:
    the same format class, or one whose model-space mapping is the same (SVD's and AnimateDiff's
    SD latents, say)."""
    if decoder is None or getattr(latent_format, "latent_channels", None) != latent_channels(decoder):
        return False
    if type(latent_format).__name__ == decoder.latent_format:
        return True
    own = _format(decoder.latent_format)
    same = lambda attr: abs(float(getattr(own, attr, 0.0)) - float(getattr(latent_format, attr, 0.0))) < 1e-6
    return (decoder.input_space == "model" and same("scale_factor") and same("shift_factor")
            and getattr(own, "latents_mean", None) is None and getattr(latent_format, "latents_mean", None) is None)


def _apply(latent_format, fn, x: torch.Tensor) -> torch.Tensor:
    """fn (process_in/out) on latents in ComfyUI's layout, [B, C, h, w] or [B, C, T, h, w],
    reshaped to the layout the format's per-channel constants expect."""
    if latent_format.latent_dimensions == 2 and x.ndim == 5:  # image latents: frame by frame
        b, t = x.shape[0], x.shape[2]
        return fn(x.movedim(2, 1).flatten(0, 1)).unflatten(0, (b, t)).movedim(1, 2)
    if latent_format.latent_dimensions == 3 and x.ndim == 4:  # frames as the batch: one clip
        return fn(x.movedim(0, 1).unsqueeze(0))[0].movedim(0, 1)
    return fn(x)


def to_decoder(decoder, latents: torch.Tensor) -> torch.Tensor:
    """A LATENT (VAE space, ComfyUI's layout) -> the decoder's input, ComfyUI's layout, unfolded."""
    if decoder.input_space == "vae":
        return unfold(decoder, latents)
    fmt = _format(decoder.latent_format)
    return unfold(decoder, _apply(fmt, fmt.process_in, latents))


def from_encoder(encoder, latents: torch.Tensor) -> torch.Tensor:
    """The encoder's output (ComfyUI's layout) -> a LATENT (VAE space), folded."""
    latents = fold_back(encoder, latents)
    if encoder.input_space == "vae":
        return latents
    fmt = _format(encoder.latent_format)
    return _apply(fmt, fmt.process_out, latents)


def x0_to_decoder(decoder, latent_format, x0: torch.Tensor) -> torch.Tensor:
    """A sampler's x0 (model space of `latent_format`, ComfyUI's layout) -> the decoder's input."""
    if decoder.input_space == "model" and type(latent_format).__name__ == decoder.latent_format:
        return unfold(decoder, x0)
    return to_decoder(decoder, _apply(latent_format, latent_format.process_out, x0))
