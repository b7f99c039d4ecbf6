"""One entry for every tiny autoencoder file: which family it holds, and the model it makes.

Families (recognised from the tensors; the file name settles only what tensors cannot):
TAESDV (model.py), TAEHV and its super/LTX variants (taehv.py), image TAESD (taesd.py), and
the fast-latent-decoders TAE-192 / temporal decoder (fast_latent_decoders.py). Each decoder
and encoder gets `latent_format` (a ComfyUI latent_formats class name) and `input_space`
("model" or "vae"), which the ComfyUI side uses to map its latents exactly as its own VAE
Decode does with the same file.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn

from . import taesd
from .checkpoint import DTYPES, MISSING_ADVICE, identify, model_from_state_dict, read_state_dict
from .engine import allow_tf32
from .errors import CheckpointError, InputError
from .fast_latent_decoders import fast_decoder_from_state_dict, identify_fast_decoder
from .taehv import identify_taehv, taehv_from_state_dict


class TinyAutoencoder(nn.Module):
    """An encoder and/or decoder of one family (either may be None), as one file holds them."""

    def __init__(self, encoder: nn.Module | None, decoder: nn.Module | None, description: str,
                 full_file: str = "a file that holds both halves"):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.description, self.full_file = description, full_file


# TAEHV files: (latent channels) -> (latent format, input space), as ComfyUI 0.3.75's VAE Decode
# feeds them (comfy/sd.py: Wan files get the LATENT as is, HunyuanVideo ones its process_in).
_TAEHV_SPACES = {16: ("Wan21", "vae"), 48: ("Wan22", "vae"), 32: ("HunyuanVideo15", "model"), 128: ("LTXV", "model")}
# image TAESD variants -> latent format (all eat the diffusion model's space; taef2 unchecked: identity)
_TAESD_FORMATS = {"taesd": "SD15", "taesdxl": "SDXL", "taesd3": "SD3", "taef1": "Flux"}


# ComfyUI 0.3.75's latent formats of the files above: the diffusion model's latents are
# (LATENT - shift) * scale (comfy/latent_formats.py, process_in). Checked against the host in tests.
MODEL_SPACE = {"SD15": (0.18215, 0.0), "SDXL": (0.13025, 0.0), "SD3": (1.5305, 0.0609), "Flux": (0.3611, 0.1159),
               "HunyuanVideo": (0.476986, 0.0), "HunyuanVideo15": (1.03682, 0.0), "LTXV": (1.0, 0.0)}


def comfy_latent_to_input(module: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """A ComfyUI LATENT's values (the VAE's latents, as Save Latent stores them) -> what this
    decoder eats, as the host's VAE Decode maps them for the same file."""
    if module.input_space == "vae":
        return latents
    if module.latent_format not in MODEL_SPACE:
        raise InputError(f"no ComfyUI latent mapping is known for {module.family} ({module.latent_format}); "
                         "give the latents as .safetensors (key 'latents') in the decoder's own input space")
    scale, shift = MODEL_SPACE[module.latent_format]
    return (latents - shift) * scale


def _taehv_space(channels: int, name: str, sd: dict[str, torch.Tensor]) -> tuple[str, str]:
    lowered = name.lower()
    if "taecvx" in lowered:  # CogVideoX: no latent format in ComfyUI 0.3.75; its latents as they are
        return ("LatentFormat", "vae")
    if channels == 16:
        # taehv (HunyuanVideo) and taew2_1 share every tensor; ComfyUI tells them apart by the
        # fp16 storage of taehv.pth. The file name wins where it says which.
        first = sd.get("decoder.1.weight", sd.get("encoder.0.weight"))
        hunyuan = ("taehv" in lowered and "taehv1_5" not in lowered) or (
            "w2" not in lowered and first is not None and first.dtype == torch.float16)
        return ("HunyuanVideo", "model") if hunyuan else ("Wan21", "vae")
    return _TAEHV_SPACES.get(channels, ("LatentFormat", "vae"))


def _tag(modules, latent_format: str, input_space: str) -> None:
    for m in modules:
        if m is not None:
            m.latent_format, m.input_space = latent_format, input_space


def autoencoder_from_state_dict(sd: dict[str, torch.Tensor], name: str = "state dict") -> nn.Module:
    """The model a checkpoint's tensors hold (CPU, float32, eval mode), strictly checked."""
    taehv = identify_taehv(sd)
    if taehv is None and all(k.startswith(("encoder.", "decoder.")) for k in sd) and (
            identify(sd) == "a TAESDV checkpoint" or all(k.startswith("encoder.") for k in sd)):
        # TAESDV's own (prefixed) layout; its encoder alone is the image TAESD encoder's twin, and a
        # prefixed encoder file is TAESDV's form (image TAESD files carry no prefix)
        return model_from_state_dict(sd, name)
    if taehv is not None:
        try:
            encoder, decoder, description = taehv_from_state_dict(sd, name)
        except ValueError as e:
            raise CheckpointError(f"checkpoint '{name}': {e}") from None
        channels = (decoder or encoder).latent_channels
        _tag((encoder, decoder), *_taehv_space(channels, name, sd))
        model = TinyAutoencoder(encoder, decoder, description)
    elif identify_fast_decoder(sd) is not None:
        decoder = fast_decoder_from_state_dict(sd, name)
        _tag((decoder,), "SDXL" if identify_fast_decoder(sd) == "tae192" else "SD15", "model")
        model = TinyAutoencoder(None, decoder, decoder.family)
    elif taesd.identify_taesd(sd) is not None:
        encoder, decoder, description = taesd.taesd_from_state_dict(sd, name)
        half = decoder or encoder
        kind = taesd._kind_from_name(name) or {4: "taesd", 16: "taesd3", 32: "taef2"}.get(half.latent_channels, "")
        _tag((encoder, decoder), *((_TAESD_FORMATS[kind], "model") if kind in _TAESD_FORMATS else ("LatentFormat", "vae")))
        model = TinyAutoencoder(encoder, decoder, description, "the matching _encoder/_decoder file")
    else:
        return model_from_state_dict(sd, name)  # TAESDV, or a clear error saying what the file is
    return model.float().eval().requires_grad_(False)


def load_autoencoder(path: str, dtype: torch.dtype | str = torch.float32, device: str | torch.device = "cpu",
                     missing_advice: str = MISSING_ADVICE) -> nn.Module:
    """Load any tiny autoencoder file (.pth or .safetensors) in the given dtype ("tf32" allowed) and device."""
    tf32 = dtype == "tf32"
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise CheckpointError(f"dtype '{dtype}' is not one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    model = autoencoder_from_state_dict(read_state_dict(path, missing_advice), os.path.basename(path))
    return allow_tf32(model.to(device=device, dtype=dtype), tf32)
