"""Image TAESD (madebyollin/taesd): one latent frame -> one image, no memory between frames.

The architecture of taesd / taesdxl / taesd3 / taef1 (base) and taef2 (base + "midblock GN"
pools) with the official state-dict layout: files hold no prefix (`1.weight`,
`3.conv.0.weight`, ...); ComfyUI's combined form (Load VAE of a `taesd` pair) prefixes
`taesd_decoder.` / `taesd_encoder.`. Both load here with strict key and shape checks.

Layouts (as model.py):

- latents: NTCHW in TAESD's own input space, 1/8 of the frame size; see `VARIANTS` for how a
  ComfyUI LATENT becomes that input.
- frames:  NTCHW, RGB in [0, 1] (decoder output is roughly [0, 1] and unclamped here)

The decoder is a `layers.ChunkDecoder` without MemBlocks: its memory is an empty list, so the
engine decodes N latent frames into N independent images however it chunks them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .errors import CheckpointError
from .family import Family, LatentSpace, Match, NoMatch, StateDict, TinyAutoencoder, load_strict, tensor_shape
from .layers import Block, ChunkDecoder, ChunkEncoder, Clamp, conv

WIDTH = 64  # channels of every hidden layer
SPATIAL_SCALE = 8
POOL_WIDTH = 4 * WIDTH  # hidden width of the flux_2 "midblock GN" pools


class PooledBlock(Block):
    """A Block that first adds a pooled context: x = x + pool(x), then Block(x).

    pool = 1x1 conv (64 -> 256, no bias), GroupNorm(4, 256), ReLU, 1x1 conv (256 -> 64, no bias);
    keys `pool.0.weight`, `pool.1.weight/bias`, `pool.3.weight` (taef2, "midblock GN").
    """

    def __init__(self, n: int):
        super().__init__(n, n)
        self.pool = nn.Sequential(nn.Conv2d(n, POOL_WIDTH, 1, bias=False), nn.GroupNorm(4, POOL_WIDTH),
                                  nn.ReLU(inplace=True), nn.Conv2d(POOL_WIDTH, n, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + self.pool(x)).contiguous(memory_format=torch.channels_last)
        return super().forward(x)


@dataclass(frozen=True)
class Variant:
    """One published TAESD file pair."""

    name: str            # file stem: taesd_decoder.pth / taesd_encoder.pth
    latent_channels: int
    pooled: bool         # the flux_2 "midblock GN" pools
    family: str          # named in messages
    space: LatentSpace

    @property
    def latents(self) -> str:
        """What its latents are, for descriptions: their channels, and the LATENT's where it folds them."""
        own, fold = f"{self.latent_channels}-channel latents", self.space.fold
        if fold == 1:
            return own
        return f"{own} (a LATENT of {self.space.latent_channels(self.latent_channels)} channels, folded {fold}x{fold})"


# TAESD eats the diffusion model's latents: ComfyUI's VAE Decode with a TAESD pair
# (comfy/taesd/taesd.py) feeds taesd_decoder((LATENT - vae_shift) * vae_scale), with the numbers
# nodes.VAELoader.load_taesd sets per file, which equal the latent format's scale_factor and
# shift_factor (its process_in); encoding is the inverse, LATENT = encoder(image) / scale + shift.
# The decoded image is the decoder's output clamped to [0, 1]. TAESD's scale_latents /
# unscale_latents only quantise latents to images for storage; no decode path uses them.
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("taesd", 4, False, "TAESD (SD1.x/SD2.x)", LatentSpace("SD15", "model", 0.18215)),
    Variant("taesdxl", 4, False, "TAESD-XL (SDXL)", LatentSpace("SDXL", "model", 0.13025)),
    Variant("taesd3", 16, False, "TAESD3 (SD3)", LatentSpace("SD3", "model", 1.5305, 0.0609)),
    Variant("taef1", 16, False, "TAEF1 (FLUX.1)", LatentSpace("Flux", "model", 0.3611, 0.1159)),
    # FLUX.2's LATENT (the Flux2 format: identity process_in) is taef2's latent folded 2x2 into
    # 128 channels; core's taef2 (DecoderFlux2 / EncoderFlux2) unfolds it, unscaled.
    Variant("taef2", 32, True, "TAEF2 (FLUX.2)", LatentSpace("Flux2", "vae", fold=2)),
)}


class TAESDDecoder(ChunkDecoder):
    """Latents (N, T, C, h, w) -> images (N, T, 3, 8h, 8w), each frame on its own."""

    spatial_scale = SPATIAL_SCALE

    def __init__(self, latent_channels: int = 4, pooled: bool = False, family: str = "TAESD"):
        n = WIDTH
        mid = PooledBlock if pooled else (lambda n: Block(n, n))
        super().__init__(
            Clamp(), conv(latent_channels, n), nn.ReLU(inplace=True),
            mid(n), mid(n), mid(n), nn.Upsample(scale_factor=2), conv(n, n, bias=False),
            Block(n, n), Block(n, n), Block(n, n), nn.Upsample(scale_factor=2), conv(n, n, bias=False),
            Block(n, n), Block(n, n), Block(n, n), nn.Upsample(scale_factor=2), conv(n, n, bias=False),
            Block(n, n), conv(n, 3),
        )
        self.latent_channels, self.pooled, self.family = latent_channels, pooled, family

    @staticmethod
    def working_bytes_per_frame(height: int, width: int, element_size: int) -> int:
        """Peak working memory of one output frame of height x width.

        The last stage holds at full size: its input (64 ch), two conv outputs (64 each), the
        upsampled input (64, plus its 1/4-size source) and the 3-channel image. The flux_2 pools
        run at 1/8 size (256 channels there are 4 per output pixel) and fit in that margin.
        """
        return int(height * width * element_size * (WIDTH * 4 + WIDTH // 4 + 3))


class TAESDEncoder(ChunkEncoder):
    """Images (N, T, 3, H, W) in [0, 1] -> latents (N, T, C, H/8, W/8), each frame on its own."""

    spatial_scale = SPATIAL_SCALE

    def __init__(self, latent_channels: int = 4, pooled: bool = False, family: str = "TAESD"):
        n = WIDTH
        mid = PooledBlock if pooled else (lambda n: Block(n, n))
        super().__init__(
            conv(3, n), Block(n, n),
            conv(n, n, stride=2, bias=False), Block(n, n), Block(n, n), Block(n, n),
            conv(n, n, stride=2, bias=False), Block(n, n), Block(n, n), Block(n, n),
            conv(n, n, stride=2, bias=False), mid(n), mid(n), mid(n),
            conv(n, latent_channels),
        )
        self.latent_channels, self.pooled, self.family = latent_channels, pooled, family


# --- recognising files -----------------------------------------------------------------------

DECODER_PREFIXES = ("taesd_decoder.", "decoder.")
ENCODER_PREFIXES = ("taesd_encoder.", "encoder.")


def _kind_from_name(name: str | None) -> str | None:
    """The variant a file name names: longest matching stem first (taesdxl before taesd)."""
    if not name:
        return None
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1].lower()
    for kind in sorted(VARIANTS, key=len, reverse=True):
        if base == kind or base.startswith((kind + "_", kind + ".")):
            return kind
    return None


def _split(sd: dict[str, torch.Tensor]) -> tuple[dict | None, dict | None]:
    """(decoder tensors, encoder tensors) without prefixes; None for a half that is absent."""
    dec = {k[len(p):]: v for k, v in sd.items() for p in DECODER_PREFIXES if k.startswith(p)}
    enc = {k[len(p):]: v for k, v in sd.items() for p in ENCODER_PREFIXES if k.startswith(p)}
    if dec or enc:
        return dec or None, enc or None
    if "1.weight" in sd and "3.conv.0.weight" in sd:  # a bare decoder file
        return dict(sd), None
    if "0.weight" in sd and "14.weight" in sd:  # a bare encoder file
        return None, dict(sd)
    return None, None


def _arch(dec: dict | None, enc: dict | None) -> tuple[int, bool] | None:
    """(latent channels, pooled) from the tensors, or None when they are not image TAESD."""
    if dec is not None:
        first, block = tensor_shape(dec, "1.weight", 4), tensor_shape(dec, "3.conv.0.weight", 4)
        # a Block's conv is (64, 64, 3, 3); TAESDV's MemBlock has (64, 128, 3, 3)
        if first is None or (first[0], *first[2:]) != (WIDTH, 3, 3) or block is None or block[1] != WIDTH:
            return None
        return first[1], "3.pool.0.weight" in dec
    if enc is not None:
        last = tensor_shape(enc, "14.weight", 4)
        if last is None or last[1:] != (WIDTH, 3, 3):
            return None
        return last[0], "11.pool.0.weight" in enc
    return None


def taesd_from_state_dict(sd: dict[str, torch.Tensor], name: str | None = None
                          ) -> tuple[TAESDEncoder | None, TAESDDecoder | None, str]:
    """(encoder or None, decoder or None, description) of an image TAESD state dict, in eval mode.

    sd: a bare decoder or encoder file, or the combined form with `taesd_decoder.` /
    `taesd_encoder.` (or `decoder.` / `encoder.`) prefixes.
    name: the file name or variant ("taesdxl_decoder.pth", "taef1"); it chooses among variants
    of the same shape (taesd/taesdxl, taesd3/taef1) and sets `family`; it must agree with the
    tensors. Without it the shape's first variant is assumed and the description says so.
    Raises CheckpointError on anything else.
    """
    label = name or "state dict"
    dec, enc = _split(sd)
    arch = _arch(dec, enc)
    if arch is None:
        raise CheckpointError(f"checkpoint '{label}' is not an image TAESD decoder or encoder "
                              f"(e.g. keys {', '.join(sorted(sd)[:4])})")
    if dec is not None and enc is not None and _arch(None, enc) != _arch(dec, None):
        raise CheckpointError(f"checkpoint '{label}' holds an encoder and a decoder of different latent spaces "
                              f"({_arch(None, enc)} vs {_arch(dec, None)})")
    channels, pooled = arch
    kind = _kind_from_name(name)
    same_shape = [v.name for v in VARIANTS.values() if (v.latent_channels, v.pooled) == arch]
    if not same_shape:
        raise CheckpointError(f"checkpoint '{label}' is a TAESD-style file for {channels}-channel latents"
                              f"{' with pools' if pooled else ''}, which no known variant has")
    if kind is not None and kind not in same_shape:
        v = VARIANTS[kind]
        raise CheckpointError(f"checkpoint '{label}' is named {kind} ({v.latent_channels}-channel latents) but its "
                              f"tensors are for {channels}-channel latents{' with pools' if pooled else ''} "
                              f"({' or '.join(same_shape)})")
    guessed = kind is None
    variant = VARIANTS[kind or same_shape[0]]
    encoder = TAESDEncoder(channels, pooled, variant.family) if enc is not None else None
    decoder = TAESDDecoder(channels, pooled, variant.family) if dec is not None else None
    for half, model, what in ((enc, encoder, "encoder"), (dec, decoder, "decoder")):
        if model is not None:
            load_strict(model, half, label, what)
    parts = " and ".join(w for w, m in (("encoder", encoder), ("decoder", decoder)) if m is not None)
    description = f"{variant.family} image {parts}, {variant.latents}"
    if guessed and len(same_shape) > 1:
        description += f" ({' or '.join(same_shape)}: the file name did not say; {variant.name} assumed)"
    return encoder, decoder, description


# ---------------------------------------------------------------------------------------------
# The family record
# ---------------------------------------------------------------------------------------------

def _variant_of(sd: StateDict, file_name: str) -> Variant | NoMatch:
    arch = _arch(*_split(sd))
    if arch is None:
        return NoMatch("no image TAESD decoder (1.weight, 3.conv.0.weight) or encoder (14.weight) layout")
    same_shape = [v for v in VARIANTS.values() if (v.latent_channels, v.pooled) == arch]
    if not same_shape:
        return NoMatch(f"it is a TAESD-style file for {arch[0]}-channel latents{' with pools' if arch[1] else ''}, "
                       "which no known variant has", claimed=True)
    named = VARIANTS.get(_kind_from_name(file_name) or "")
    return named if named in same_shape else same_shape[0]  # a name of another shape: build says so


def match(sd: StateDict, file_name: str) -> Match | NoMatch:
    """Image TAESD: bare decoder/encoder files, or the prefixed combined form. Files of the same
    shape (taesd/taesdxl, taesd3/taef1) are told apart by their names; the first is assumed."""
    variant = _variant_of(sd, file_name)
    if isinstance(variant, NoMatch):
        return variant
    dec, enc = _split(sd)
    halves = " and ".join(h for h, t in (("encoder", enc), ("decoder", dec)) if t is not None)
    return Match(variant.name, variant.space, f"{variant.family} image {halves}, {variant.latents}")


def build(sd: StateDict, file_name: str, found: Match) -> TinyAutoencoder:
    encoder, decoder, description = taesd_from_state_dict(sd, file_name)
    found.space.tag(encoder, decoder)
    return TinyAutoencoder(encoder, decoder, description, "the matching _encoder/_decoder file", FAMILY_NAME)


FAMILY_NAME = "image TAESD"
FAMILY = Family(
    name=FAMILY_NAME, match=match, build=build, spaces={v.name: v.space for v in VARIANTS.values()},
    latent_sources={4: ("SD1.x, SD2.x, SDXL", "taesd_decoder / taesdxl_decoder (images)"),
                    16: ("SD3, FLUX.1", "taesd3_decoder / taef1_decoder (images)"),
                    128: ("FLUX.2", "taef2_decoder (images)")},
    sources={prefix: "https://github.com/madebyollin/taesd"
             for prefix in ("taesd_", "taesdxl_", "taesd3_", "taef1_", "taef2_", "taesana_")},
)
