"""The one loader: any tiny-autoencoder file, whichever family its tensors say it is.

The loader asks each family's record (families.FAMILIES) whether the file is one of its own;
the first that says so builds it. Every family's tensors pass the same strict checks
(family.load_strict). Each decoder and encoder carries its `latent_space`, which the ComfyUI
side and the CLI use to map a LATENT exactly as the host's own VAE Decode does with that file.
"""
from __future__ import annotations

import os

import torch

from .checkpoint import DTYPES, MISSING_ADVICE, describe_other, read_state_dict
from .engine import allow_tf32
from .errors import CheckpointError, InputError
from .families import family_list, family_named, where_to_get, which_family, which_file_fits
from .family import StateDict, TinyAutoencoder


def autoencoder_from_state_dict(sd: StateDict, name: str = "state dict", dtype: torch.dtype = torch.float32,
                                device: str | torch.device = "cpu", family: str | None = None) -> TinyAutoencoder:
    """The model a checkpoint's tensors hold, in eval mode, strictly checked. family: a family's
    name ("TAESDV"): a file of another family is refused, naming what it is."""
    found = which_family(sd, name)
    if found is None:
        raise CheckpointError(f"checkpoint '{name}' is {describe_other(sd)}, not {family_list()} (the families "
                              f"this pack loads; official files: {where_to_get(name)})")
    owner, match = found
    if family is not None and owner.name != family:
        wanted = family_named(family)
        raise CheckpointError(f"checkpoint '{name}' is {match.description} (the {owner.name} family), not {family}; "
                              f"{family} files come from {next(iter(wanted.sources.values()))}")
    model = owner.build(sd, name, match)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def load_autoencoder(path: str, dtype: torch.dtype | str = torch.float32, device: str | torch.device = "cpu",
                     missing_advice: str = MISSING_ADVICE, family: str | None = None) -> TinyAutoencoder:
    """Load a tiny autoencoder file (.pth or .safetensors) in the given dtype ("tf32" allowed:
    float32 weights whose CUDA convs may use TF32) and device; `missing_advice` is what the
    error tells the user to do when the file does not exist; `family` as autoencoder_from_state_dict."""
    tf32 = dtype == "tf32"
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise CheckpointError(f"dtype '{dtype}' is not one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    sd = read_state_dict(path, missing_advice)
    model = autoencoder_from_state_dict(sd, os.path.basename(path), dtype, device, family)
    return allow_tf32(model, tf32)


def check_latent_channels(module, latents: torch.Tensor, channel_dim: int = 1, name: str = "the LATENT") -> None:
    """Refuses latents in a LATENT's layout (channels at `channel_dim`) whose channels are not those
    of this decoder's or encoder's LATENT, naming the file that fits them. The decode nodes, Compare
    and the command line all say it in these words."""
    channels, space = latents.shape[channel_dim], module.latent_space
    if channels != space.latent_channels(module.latent_channels):
        raise InputError(f"{name} has {channels} channels (shape {tuple(latents.shape)}); {module.family} "
                         f"expects {space.latent_channels_text(module.latent_channels)}. {which_file_fits(channels)}")


def comfy_latent_to_input(module, latents: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
    """A ComfyUI LATENT's values (the VAE's latents, as Save Latent stores them; channels at
    `channel_dim`: 1 in ComfyUI's layout, 2 in NTCHW) -> what this decoder eats, as the host's VAE
    Decode maps them for the same file: unfolded where the LATENT folds them (FLUX.2's 128
    channels -> taef2's 32). A LATENT of other channels is refused naming the file that fits."""
    if latents.ndim not in (4, 5):
        return latents  # not a LATENT's layout: the reader refuses it by its shape
    check_latent_channels(module, latents, channel_dim)
    return module.latent_space.to_input(latents, channel_dim)


def raw_latents_to_input(module, latents: torch.Tensor) -> torch.Tensor:
    """NTCHW latents as the command line reads them from .safetensors ('latents'), .npy or .pt
    files: in the decoder's input space, taken as they are; where its LATENT folds them (taef2),
    latents of the LATENT's channels (FLUX.2's 128) are that folded layout and are unfolded."""
    space = module.latent_space
    if space.fold > 1 and latents.ndim == 5 and latents.shape[2] == space.latent_channels(module.latent_channels):
        return space.unfold(latents)
    return latents


# The names of the TAESDV-only API, kept for scripts that use them.

def load_taesdv(path: str, dtype: torch.dtype | str = torch.float32, device: str | torch.device = "cpu",
                missing_advice: str = MISSING_ADVICE) -> TinyAutoencoder:
    """load_autoencoder for TAESDV files only."""
    return load_autoencoder(path, dtype, device, missing_advice, family="TAESDV")


def model_from_state_dict(sd: StateDict, name: str = "state dict", dtype: torch.dtype = torch.float32,
                          device: str | torch.device = "cpu") -> TinyAutoencoder:
    """autoencoder_from_state_dict for TAESDV state dicts only."""
    return autoencoder_from_state_dict(sd, name, dtype, device, family="TAESDV")


def identify(sd: StateDict, name: str = "state dict") -> str:
    """What a state dict is (a short phrase): its family's description, or what else it looks like."""
    try:
        found = which_family(sd, name)
    except CheckpointError as e:
        return str(e)
    return found[1].description if found else describe_other(sd)
