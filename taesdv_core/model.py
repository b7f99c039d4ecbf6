"""TAESDV: Tiny AutoEncoder for Stable Diffusion Videos (2.8M parameters).

The architecture of madebyollin/taesdv with the official state-dict layout, so `taesdv.pth`
loads with `load_state_dict(strict=True)`. Layouts:

- frames:  NTCHW, RGB in [0, 1] (decoder output is roughly [0, 1] and is not clamped here)
- latents: NTCHW, 4 channels, 1/8 of the frame size, in the diffusion model's space
  (the SD VAE latent times 0.18215)

The decoder carries memory from frame to frame: each MemBlock sees its own input of the
previous frame (zeros for the first). One latent frame gives one frame; nothing is trimmed.
How frames are grouped into chunks and how memory is carried between calls lives in
`engine.py`.
"""
from __future__ import annotations

import torch.nn as nn

from .family import Family, LatentSpace, Match, NoMatch, StateDict, TinyAutoencoder, load_strict, tensor_shape
from .layers import Block, ChunkDecoder, ChunkEncoder, Clamp, MemBlock, conv

LATENT_CHANNELS = 4
SPATIAL_SCALE = 8
SD_LATENT_SCALE = 0.18215  # SD1.x/SD2.x/SVD VAE: model-space latent = VAE latent x this
SPACE = LatentSpace("SD15", "model", SD_LATENT_SCALE)
WIDTH = 64  # channels of every hidden layer


class _TAESDVHalf:
    """What TAESDV's encoder and decoder both declare (ChunkEncoder / ChunkDecoder attributes)."""

    family = "TAESDV"
    latent_space = SPACE
    latent_channels = LATENT_CHANNELS
    spatial_scale = SPATIAL_SCALE


class TAESDVEncoder(_TAESDVHalf, ChunkEncoder):
    """Frames (N, T, 3, H, W) in [0, 1] -> latents (N, T, 4, H/8, W/8), each frame on its own."""

    def __init__(self):
        n = WIDTH
        super().__init__(
            conv(3, n), Block(n, n),
            conv(n, n, stride=2, bias=False), Block(n, n), Block(n, n), Block(n, n),
            conv(n, n, stride=2, bias=False), Block(n, n), Block(n, n), Block(n, n),
            conv(n, n, stride=2, bias=False), Block(n, n), Block(n, n), Block(n, n),
            conv(n, LATENT_CHANNELS),
        )


class TAESDVDecoder(_TAESDVHalf, ChunkDecoder):
    """Latents (N, T, 4, h, w) -> frames (N, T, 3, 8h, 8w), with memory; see ChunkDecoder."""

    def __init__(self):
        n = WIDTH
        super().__init__(
            Clamp(), conv(LATENT_CHANNELS, n), nn.ReLU(inplace=True),
            MemBlock(n, n), MemBlock(n, n), MemBlock(n, n), nn.Upsample(scale_factor=2), conv(n, n, bias=False),
            MemBlock(n, n), MemBlock(n, n), MemBlock(n, n), nn.Upsample(scale_factor=2), conv(n, n, bias=False),
            MemBlock(n, n), MemBlock(n, n), MemBlock(n, n), nn.Upsample(scale_factor=2), conv(n, n, bias=False),
            MemBlock(n, n), conv(n, 3),
        )

    @staticmethod
    def state_bytes(height: int, width: int, element_size: int) -> int:
        """A stream's memory at output size h x w: 10 MemBlocks x 64 channels x 1 frame at 1/8,
        1/4, 1/2 and full size (3, 3, 3 and 1 blocks)."""
        per_pixel = 3 / 64 + 3 / 16 + 3 / 4 + 1
        return int(round(height * width * per_pixel * WIDTH * element_size))


def taesdv_model(encoder: bool = True, decoder: bool = True) -> TinyAutoencoder:
    """An untrained TAESDV (either half may be left out), keys as the official taesdv.pth."""
    return TinyAutoencoder(TAESDVEncoder() if encoder else None, TAESDVDecoder() if decoder else None,
                           "TAESDV", "the full taesdv.pth", FAMILY_NAME)


TAESDV = taesdv_model  # the old name, when TAESDV was a container class of its own

# ---------------------------------------------------------------------------------------------
# The family record
# ---------------------------------------------------------------------------------------------

FAMILY_NAME = "TAESDV"
OFFICIAL_URL = "https://github.com/madebyollin/taesdv/raw/main/taesdv.pth"
MEMBLOCK = (WIDTH, 2 * WIDTH, 3, 3)  # decoder.3.conv.0.weight: a MemBlock's conv sees the frame and its past


def match(sd: StateDict, file_name: str) -> Match | NoMatch:
    """TAESDV's layout: every key under `encoder.` / `decoder.`; a decoder whose first block is
    a MemBlock, or an encoder alone (TAESDV's prefixed form; image TAESD files carry no prefix)."""
    if not all(k.startswith(("encoder.", "decoder.")) for k in sd):
        return NoMatch("TAESDV files hold only encoder.* and decoder.* tensors")
    if any(k.startswith("decoder.") for k in sd):
        if tensor_shape(sd, "decoder.3.conv.0.weight", 4) != MEMBLOCK:
            return NoMatch(f"its decoder.3.conv.0.weight is not TAESDV's MemBlock conv {MEMBLOCK}")
    elif "encoder.17.weight" in sd or tensor_shape(sd, "encoder.14.weight", 4) is None:
        return NoMatch("its encoder does not end at encoder.14 as TAESDV's does")
    halves = " and ".join(h for h in ("encoder", "decoder") if any(k.startswith(h + ".") for k in sd))
    return Match("taesdv", SPACE, f"TAESDV {halves}")


def build(sd: StateDict, file_name: str, found: Match) -> TinyAutoencoder:
    model = taesdv_model(encoder=any(k.startswith("encoder.") for k in sd),
                         decoder=any(k.startswith("decoder.") for k in sd))
    load_strict(model, sd, file_name, "file")
    return model


FAMILY = Family(
    name=FAMILY_NAME, match=match, build=build, spaces={"taesdv": SPACE},
    latent_sources={4: ("SD1.x, SD2.x, SVD, AnimateDiff, AnimateLCM", "taesdv.pth (video)")},
    sources={"taesdv": OFFICIAL_URL},
)
