"""The decoders of "Fast Latent Decoders for Diffusion Models" (RedShift51/fast-latent-decoders).

Two diffusers-layout decoders for 4-channel SD-family latents, in plain PyTorch:

- `TAE192Decoder`: diffusers' `AutoencoderTiny(decoder_block_out_channels=(192,)*4)` decoder,
  i.e. TAESD's decoder at width 192 (keys `decoder.layers.N...`, or `layers.N...`), for SDXL.
- `TemporalTAEDecoder` ("DecoderTinyTemporal", for SVD): DecoderTiny with widths (192,)*4,
  blocks (3, 2, 2, 1), bilinear upsampling, plus diffusers' `MidBlockTemporalDecoder`
  (2 spatio-temporal res blocks around one spatial self-attention, 192 channels, head dim 96)
  after layer 6, mixing the frames of each window of `window` frames (keys `layers.N...`,
  `mid_block...`, optionally under `decoder.`).

Input: latents NTCHW in the diffusion model's latent space, like TAESD: the full VAE's latent
times its scaling factor (SDXL 0.13025, SVD 0.18215), which is what the seed's examples feed
(`decoder(latents.mul(vae.config.scaling_factor))` on the pipeline's unscaled latents). In
ComfyUI terms: LATENT["samples"] * scale_factor of the latent format.

Output: frames NTCHW RGB, roughly [0, 1], unclamped. The number returned is exactly the
diffusers module's output (`layers(x) * 2 - 1`): the seed's examples read that as an image in
[0, 1] (they map it to [-1, 1] with `.mul_(2).sub_(1)` before the pipeline's postprocess maps
[-1, 1] back to [0, 1]), so the published weights were trained with it as the [0, 1] image.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import CheckpointError
from .family import Family, LatentSpace, Match, NoMatch, StateDict, TinyAutoencoder, load_strict, tensor_shape
from .fused_ops import fast_path
from .layers import Block, ChunkDecoder, conv

WIDTH = 192
LATENT_CHANNELS = 4
SPATIAL_SCALE = 8


def _tiny_layers(num_blocks: tuple[int, ...], upsample_mode: str) -> nn.Sequential:
    """DecoderTiny's `layers`: conv(4->192), ReLU, then per stage its Blocks, Upsample (not after
    the last) and a conv (no bias; the last one 192->3 with bias)."""
    n = WIDTH
    layers: list[nn.Module] = [conv(LATENT_CHANNELS, n), nn.ReLU(inplace=True)]
    for i, blocks in enumerate(num_blocks):
        last = i == len(num_blocks) - 1
        layers += [Block(n, n) for _ in range(blocks)]
        if last:
            layers.append(conv(n, 3))
        else:
            layers += [nn.Upsample(scale_factor=2, mode=upsample_mode), conv(n, n, bias=False)]
    return nn.Sequential(*layers)


def _clamp(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x / 3) * 3


class TAE192Decoder(ChunkDecoder):
    """TAE-192: latents (N, T, 4, h, w) -> images (N, T, 3, 8h, 8w), each frame on its own.

    DecoderTiny(block_out_channels=(192,)*4, num_blocks=(3, 3, 3, 1), nearest upsampling, ReLU):
    Clamp, conv, ReLU, 3 Blocks, Up, conv, 3 Blocks, Up, conv, 3 Blocks, Up, conv, Block, conv.
    """

    family = "TAE-192 (SDXL)"
    latent_channels = LATENT_CHANNELS
    spatial_scale = SPATIAL_SCALE

    def __init__(self):
        super().__init__()
        self.layers = _tiny_layers((3, 3, 3, 1), "nearest")

    def forward_chunk(self, latents: torch.Tensor, memory=None) -> tuple[torch.Tensor, list]:
        """latents (N, T, 4, h, w) -> (frames (N, T, 3, 8h, 8w), [] : no memory)."""
        n, t = latents.shape[:2]
        x = _clamp(latents.reshape(n * t, *latents.shape[2:])).contiguous(memory_format=torch.channels_last)
        for layer in fast_path(self.layers):
            x = layer(x)
        x = x.mul(2).sub(1)
        return x.reshape(n, t, *x.shape[1:]), []

    @staticmethod
    def working_bytes_per_frame(height: int, width: int, element_size: int) -> int:
        """The last stage at full size: input, two conv outputs and the upsampled input (192 ch
        each), the upsample's 1/4-size source and the image."""
        return int(height * width * element_size * (WIDTH * 4 + WIDTH // 4 + 3))


# --- diffusers' MidBlockTemporalDecoder, with its key names -----------------------------------

class SpatialResBlock(nn.Module):
    """diffusers ResnetBlock2D without time embedding: x + conv2(silu(gn2(conv1(silu(gn1(x))))))."""

    def __init__(self, n: int, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, n, eps=eps)
        self.conv1 = conv(n, n)
        self.norm2 = nn.GroupNorm(32, n, eps=eps)
        self.conv2 = conv(n, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class TemporalResBlock(nn.Module):
    """diffusers TemporalResnetBlock on (B, C, F, H, W): the same residual form with (3, 1, 1)
    convs over time (zero padded at the window's ends). Its GroupNorms take statistics over all
    F frames of the window: every output frame depends on the whole window."""

    def __init__(self, n: int, eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, n, eps=eps)
        self.conv1 = nn.Conv3d(n, n, (3, 1, 1), padding=(1, 0, 0))
        self.norm2 = nn.GroupNorm(32, n, eps=eps)
        self.conv2 = nn.Conv3d(n, n, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class TimeMixer(nn.Module):
    """AlphaBlender("learned", switch_spatial_to_temporal_mix=True): with a = sigmoid(mix_factor),
    out = (1 - a) * spatial + a * temporal."""

    def __init__(self):
        super().__init__()
        self.mix_factor = nn.Parameter(torch.zeros(1))

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(self.mix_factor).to(spatial.dtype)
        return (1 - a) * spatial + a * temporal


class SpatioTemporalResBlock(nn.Module):
    """Spatial res block per frame, then a temporal one over each window, blended."""

    def __init__(self, n: int):
        super().__init__()
        self.spatial_res_block = SpatialResBlock(n)
        self.temporal_res_block = TemporalResBlock(n)
        self.time_mixer = TimeMixer()

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: (B * F, C, H, W), F = num_frames consecutive frames per window."""
        x = self.spatial_res_block(x)
        bf, c, h, w = x.shape
        x5 = x.reshape(bf // num_frames, num_frames, c, h, w).permute(0, 2, 1, 3, 4)
        x5 = self.time_mixer(x5, self.temporal_res_block(x5))
        return x5.permute(0, 2, 1, 3, 4).reshape(bf, c, h, w)


class SpatialSelfAttention(nn.Module):
    """diffusers Attention(query_dim=n, heads=n // head_dim, residual_connection=True,
    norm_num_groups=32, bias=True) on (B, C, H, W): each frame attends over its own H*W
    positions; x + to_out(attention(gn(x)))."""

    def __init__(self, n: int, head_dim: int):
        super().__init__()
        self.heads = n // head_dim
        self.group_norm = nn.GroupNorm(32, n, eps=1e-6)
        self.to_q, self.to_k, self.to_v = nn.Linear(n, n), nn.Linear(n, n), nn.Linear(n, n)
        self.to_out = nn.ModuleList([nn.Linear(n, n), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)  # (B, HW, C)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, h * w, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.to_q(tokens)), heads(self.to_k(tokens)),
                                             heads(self.to_v(tokens)))
        out = self.to_out[0](out.transpose(1, 2).reshape(b, h * w, c))
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class MidBlockTemporalDecoder(nn.Module):
    """resnets[0], attentions[0], resnets[1] (num_layers=2)."""

    def __init__(self, n: int = WIDTH, head_dim: int = WIDTH // 2):
        super().__init__()
        self.resnets = nn.ModuleList([SpatioTemporalResBlock(n), SpatioTemporalResBlock(n)])
        self.attentions = nn.ModuleList([SpatialSelfAttention(n, head_dim)])

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        x = self.resnets[0](x, num_frames)
        x = self.attentions[0](x)
        return self.resnets[1](x, num_frames)


class TemporalTAEDecoder(ChunkDecoder):
    """DecoderTinyTemporal: latents (N, T, 4, h, w) -> frames (N, T, 3, 8h, 8w).

    Layers as DecoderTiny(num_blocks=(3, 2, 2, 1), bilinear): conv, ReLU, 3 Blocks, Up, conv(6),
    then the temporal mid block, 2 Blocks, Up, conv, 2 Blocks, Up, conv, Block, conv.

    Frames are mixed within windows of `window` consecutive frames of a clip (the temporal
    convs and GroupNorms of the mid block see exactly one window); a clip of T frames is cut
    into windows [0, w), [w, 2w), ... and a last shorter one. That is what the seed's SVD
    example does (the pipeline's decode_chunk_size=8, num_frames=min(frames in chunk, 8)), so
    window=8 reproduces it. A chunk handed to `forward_chunk` must therefore start at a
    multiple of `window` in its clip and hold whole windows (except at the clip's end):
    `chunk_multiple` tells the engine. No memory is carried between chunks.
    """

    family = "TAE temporal (SVD)"
    latent_channels = LATENT_CHANNELS
    spatial_scale = SPATIAL_SCALE
    window = 8
    chunk_multiple = 8  # = window: chunks must be whole windows
    MID_AFTER = 6       # the mid block runs after layers[6] (the first conv after upsampling)

    def __init__(self, window: int = 8):
        super().__init__()
        self.window = self.chunk_multiple = int(window)
        self.layers = _tiny_layers((3, 2, 2, 1), "bilinear")
        self.mid_block = MidBlockTemporalDecoder(WIDTH, WIDTH // 2)

    def forward_chunk(self, latents: torch.Tensor, memory=None) -> tuple[torch.Tensor, list]:
        """latents (N, T, 4, h, w), starting at a window boundary -> (frames (N, T, 3, 8h, 8w), [])."""
        n, t = latents.shape[:2]
        x = _clamp(latents.reshape(n * t, *latents.shape[2:]))
        for layer in fast_path(self.layers[:self.MID_AFTER + 1]):
            x = layer(x)
        x = x.reshape(n, t, *x.shape[1:])
        mixed = [self.mid_block(x[:, s:s + self.window].flatten(0, 1), min(self.window, t - s))
                 .unflatten(0, (n, min(self.window, t - s))) for s in range(0, t, self.window)]
        x = torch.cat(mixed, 1).flatten(0, 1)
        for layer in fast_path(self.layers[self.MID_AFTER + 1:]):
            x = layer(x)
        x = x.mul(2).sub(1)
        return x.reshape(n, t, *x.shape[1:]), []

    @staticmethod
    def working_bytes_per_frame(height: int, width: int, element_size: int) -> int:
        """The full-size last stage (as TAE192Decoder) or the mid block's attention at 1/4 size:
        two heads of (HW/16)^2 scores per frame when attention runs unfused; the larger."""
        stage = height * width * (WIDTH * 4 + WIDTH // 4 + 3)
        tokens = (height // 4) * (width // 4)
        attention = 2 * tokens * tokens + 6 * tokens * WIDTH
        return int(element_size * max(stage, attention))


# --- loading ---------------------------------------------------------------------------------------

def _strip(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The decoder's tensors without a `decoder.` prefix; an AutoencoderTiny file's `encoder.*`
    tensors are dropped."""
    if any(k.startswith("decoder.") for k in sd):
        return {k[len("decoder."):]: v for k, v in sd.items() if k.startswith("decoder.")}
    return dict(sd)


def _kind(sd: StateDict) -> str | None:
    """"tae192", "tae_temporal" or None, from the tensors."""
    dec = _strip(sd)
    if tensor_shape(dec, "layers.0.weight", 4) != (WIDTH, LATENT_CHANNELS, 3, 3):
        return None
    return "tae_temporal" if any(k.startswith("mid_block.") for k in dec) else "tae192"


def fast_decoder_from_state_dict(sd: StateDict, name: str = "state dict", window: int = 8) -> ChunkDecoder:
    """A TAE192Decoder or TemporalTAEDecoder in eval mode, strictly checked (keys, shapes, values)."""
    kind = _kind(sd)
    if kind is None:
        raise CheckpointError(f"checkpoint '{name}' is not a TAE-192 / DecoderTinyTemporal decoder "
                              "(expected decoder.layers.0.weight of shape (192, 4, 3, 3))")
    model = TemporalTAEDecoder(window) if kind == "tae_temporal" else TAE192Decoder()
    load_strict(model, _strip(sd), name, "decoder")
    return model


# --- the family record -------------------------------------------------------------------------

SPACES = {"tae192": LatentSpace("SDXL", "model", 0.13025), "tae_temporal": LatentSpace("SD15", "model", 0.18215)}


def match(sd: StateDict, file_name: str) -> Match | NoMatch:
    kind = _kind(sd)
    if kind is None:
        return NoMatch("no decoder.layers.0.weight of shape (192, 4, 3, 3) (diffusers' DecoderTiny at width 192)")
    family = TemporalTAEDecoder.family if kind == "tae_temporal" else TAE192Decoder.family
    return Match(kind, SPACES[kind], family)


def build(sd: StateDict, file_name: str, found: Match) -> TinyAutoencoder:
    decoder = fast_decoder_from_state_dict(sd, file_name)
    found.space.tag(decoder)
    return TinyAutoencoder(None, decoder, found.description, family=FAMILY.name)


FAMILY = Family(
    name="fast latent decoders", match=match, build=build, spaces=SPACES,
    latent_sources={4: ("SDXL, SVD", "a TAE-192 or temporal decoder file (diffusers layout)")},
    sources={prefix: "https://github.com/RedShift51/fast-latent-decoders" for prefix in ("tae192", "tae_temporal")},
)
