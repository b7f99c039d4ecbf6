"""What every model family declares, the one container its files load into, and the one strict
check every family's tensors pass.

A family is one `Family` record in the module that owns its model (TAESDV in model.py, TAEHV in
taehv.py, image TAESD in taesd.py, the fast latent decoders in fast_latent_decoders.py);
families.py lists the records and everything else asks them. Only a record's `match` looks at a
file name, and only for what the tensors cannot tell.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import CheckpointError

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class LatentSpace:
    """The latents a decoder was made for, and how a ComfyUI LATENT (the VAE's latents, as Save
    Latent stores them) becomes its input, as the host's own VAE Decode maps it for that file.

    format: the comfy.latent_formats class name ("LatentFormat": none of the host's).
    input_space: "model" eats the diffusion model's latents, (LATENT - shift) * scale (the
    format's process_in); "vae" eats the LATENT as it is.
    fold: latent pixels the LATENT folds into its channels, per side (1: none). FLUX.2's LATENT
    is taef2's 32-channel latent at 1/8 size folded 2x2 into 128 channels at 1/16 size; the
    decoder eats it unfolded and the encoder's output is folded back (`unfold`, `fold_back`).
    """

    format: str
    input_space: str = "model"
    scale: float = 1.0
    shift: float = 0.0
    fold: int = 1

    def to_input(self, latents: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
        """LATENT values, C * fold^2 channels at `channel_dim` (1: ComfyUI's [B, C, h, w] or
        [B, C, T, h, w]; 2: NTCHW), height and width last -> the decoder's input, same layout,
        C channels at fold x the size."""
        x = latents if self.input_space == "vae" else (latents - self.shift) * self.scale
        return self.unfold(x, channel_dim)

    def latent_channels(self, channels: int) -> int:
        """Channels of a LATENT whose unfolded latents have `channels`."""
        return channels * self.fold ** 2

    def latent_channels_text(self, channels: int) -> str:
        """The LATENT's channels for messages: "16", or "128 (32-channel latents folded 2x2)"."""
        if self.fold == 1:
            return str(channels)
        return f"{self.latent_channels(channels)} ({channels}-channel latents folded {self.fold}x{self.fold})"

    def unfold(self, latents: torch.Tensor, channel_dim: int = -3) -> torch.Tensor:
        """(..., C * fold^2, h, w) -> (..., C, fold * h, fold * w): channel c * fold^2 + i * fold + j
        is pixel (i, j) of each fold x fold patch, as FLUX.2 patchifies (torch's pixel_shuffle).
        channel_dim: where the channels are; the last two dimensions are height and width."""
        if self.fold == 1:
            return latents
        return F.pixel_shuffle(latents.movedim(channel_dim, -3), self.fold).movedim(-3, channel_dim)

    def fold_back(self, latents: torch.Tensor, channel_dim: int = -3) -> torch.Tensor:
        """The inverse of `unfold`: (..., C, fold * h, fold * w) -> (..., C * fold^2, h, w)."""
        if self.fold == 1:
            return latents
        return F.pixel_unshuffle(latents.movedim(channel_dim, -3), self.fold).movedim(-3, channel_dim)

    def tag(self, *modules: nn.Module | None) -> None:
        """Give each half (None skipped) this space: the decoders and encoders carry it."""
        for module in modules:
            if module is not None:
                module.latent_space = self


@dataclass(frozen=True)
class Match:
    """A file of this family: which variant, its latents, and how to describe it."""

    variant: str
    space: LatentSpace
    description: str


@dataclass(frozen=True)
class NoMatch:
    """Not a file of this family, and why. claimed: the tensors have this family's layout but do
    not fit it, so the reason is what the user must hear (no other family is tried)."""

    reason: str
    claimed: bool = False


@dataclass(frozen=True)
class Family:
    """One model family: everything the loader, the CLI, the nodes and the messages ask of it.

    match(state_dict, file_name): Match or NoMatch, from the tensors (the name only where they
      cannot tell variants apart); never raises on odd tensors.
    build(state_dict, file_name, match): a TinyAutoencoder in eval mode, float32, strictly loaded
      (raises CheckpointError naming the tensor).
    latent_sources: latent channels -> (the models that make them, the files of this family
      that decode them), for the "which file fits" messages.
    sources: file name prefix -> where the official files of that name are published.
    spaces: every latent space its variants use (one table: format, input space, scale, shift).
    """

    name: str
    match: Callable[[StateDict, str], Match | NoMatch]
    build: Callable[[StateDict, str, Match], "TinyAutoencoder"]
    latent_sources: dict[int, tuple[str, str]]
    sources: dict[str, str]
    spaces: dict[str, LatentSpace] = field(default_factory=dict)


class TinyAutoencoder(nn.Module):
    """An encoder and/or decoder of one family (either may be None), as one file holds them.

    description: what the file is, for messages; full_file: which file holds the missing half.
    """

    def __init__(self, encoder: nn.Module | None, decoder: nn.Module | None, description: str,
                 full_file: str = "a file that holds both halves", family: str = ""):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.description, self.full_file, self.family = description, full_file, family


def layout_problems(sd: StateDict, expected: StateDict) -> str | None:
    """How a state dict's keys and shapes differ from `expected` ("1 missing (e.g. ...), ..."), or None."""
    missing = sorted(set(expected) - set(sd))
    extra = sorted(set(sd) - set(expected))
    reshaped = [f"{k} {tuple(sd[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
                if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if extra:
        problems.append(f"{len(extra)} unexpected (e.g. {', '.join(extra[:3])})")
    if reshaped:
        problems.append(f"{len(reshaped)} of the wrong shape (e.g. {'; '.join(reshaped[:2])})")
    return ", ".join(problems) or None


def load_strict(module: nn.Module, sd: StateDict, name: str, what: str) -> None:
    """Load `sd` into `module` (a family's encoder or decoder) after the checks every family
    shares: every key and shape as the module has them, floating-point and finite values. A
    failure is a CheckpointError naming the file, the half and the first bad tensor. Conv weights
    are then kept channels_last: the layout fused_ops' CPU kernels take without a copy per call
    (with NCHW weights they fall back to unfused ops)."""
    problems = layout_problems(sd, module.state_dict())
    if problems:
        raise CheckpointError(f"checkpoint '{name}' looks like a {module.family} {what} but its tensors do not "
                              f"match: {problems}")
    for key, value in sd.items():
        if not value.is_floating_point():
            raise CheckpointError(f"checkpoint '{name}': {what} tensor {key} is {value.dtype}, not floating point; "
                                  "the file is damaged or not a tiny autoencoder")
        if not torch.isfinite(value).all():
            raise CheckpointError(f"checkpoint '{name}': {what} tensor {key} holds NaN or infinite weights; "
                                  "download the file again")
    module.load_state_dict(sd, strict=True)
    for conv in (m for m in module.modules() if isinstance(m, nn.Conv2d)):
        conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    module.eval().requires_grad_(False)


def tensor_shape(sd: StateDict, key: str, ndim: int) -> tuple[int, ...] | None:
    """The shape of sd[key] when it is a tensor of `ndim` dimensions, none of them 0; else None.
    What `match` functions read the layout from, so an odd tensor never raises there."""
    value = sd.get(key)
    if not isinstance(value, torch.Tensor) or value.ndim != ndim or 0 in value.shape:
        return None
    return tuple(value.shape)
