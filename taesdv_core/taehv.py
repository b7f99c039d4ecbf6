"""TAEHV: Tiny AutoEncoder for video models with temporal compression (madebyollin/taehv).

One file, plain PyTorch, the official state-dict layout (`encoder.N...`, `decoder.N...` in one
file; `decoder.22` is the final conv in every variant). Layouts:

- frames:  NTCHW, RGB in [0, 1] (decoder output roughly [0, 1], unclamped here; the engine
  clamps)
- latents: NTCHW, `latent_channels` wide, 1/spatial_scale of the frame size, in the space the
  diffusion model produces (TAEHV uses no scale or shift; see README of madebyollin/taehv)

Time: the decoder turns each latent frame into `time_scale` frames (TGrow layers, one per
stage) and the engine drops the first `frames_to_trim = time_scale - 1` frames of a clip, so
T latents give time_scale * T - (time_scale - 1) frames (4T - 3 for Wan and HunyuanVideo,
8T - 7 for LTX-2). The encoder pools `time_scale` frames into one latent (TPool layers); the
engine pads T at the end with copies of the last frame, as the reference does.

Variants, all told apart by tensors alone (`taehv_from_state_dict`):
- base: Clamp, conv, 3 MemBlocks x 3 stages (256, 128, 64 wide) with nearest upsampling and
  a TGrow each, conv, ReLU, final conv to 3 * patch^2 channels, pixel_shuffle(patch).
- patch 1 (Wan 2.1, HunyuanVideo, CogVideoX), 2 (Wan 2.2 5B, HunyuanVideo 1.5), 4 (LTX-2).
- LTX-2: time x2 on all three stages (decoder) and TPool x2 on all three (encoder).
- super (`*_super` files): 1x1 conv to 512, SuperMemBlocks 512/256/128, each stage upsampled
  by conv + ReLU + PixelShuffle(2), then TGrow; no Clamp.
- lighttae (lightx2v's 32-channel HunyuanVideo 1.5 file): LeakyReLU(0.2) everywhere instead of
  ReLU and output in [-1, 1] (ComfyUI 0.3.75 maps it with (x + 1) / 2). The tensors are those
  of madebyollin's taehv1_5, so only a file name can tell them apart.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import CheckpointError
from .family import Family, LatentSpace, Match, NoMatch, StateDict, TinyAutoencoder, load_strict, tensor_shape
from .fused_ops import conv_relu
from .layers import ChunkDecoder, ChunkEncoder, Clamp, MemBlock, conv, shift_in_time

DECODER_WIDTHS = (256, 128, 64, 64)
SUPER_WIDTHS = (512, 256, 128, 64)
ENCODER_WIDTH = 64
BASE_TIME = (1, 2, 2)   # decoder TGrow strides per stage (HunyuanVideo, Wan, CogVideoX, ...)
LTX_TIME = (2, 2, 2)    # LTX-2: 8x time
BASE_POOL = (2, 2, 1)   # encoder TPool strides per stage
LTX_POOL = (2, 2, 2)
LEAKY_SLOPE = 0.2
# Where the official files keep the tensors the variant is read from (layer indices of the
# Sequentials below): the final conv, the TGrow convs (base, super) and the encoder's TPool convs.
FINAL = 22
TGROW_BASE = (7, 13, 19)
TGROW_SUPER = (7, 14, 21)
TPOOL = (2, 7, 12)


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------

class TGrow(nn.Module):
    """Time upscale: 1x1 conv n -> n*s (no bias); each frame becomes s consecutive frames.

    Input (N*T, n, H, W) -> output (N*T*s, n, H, W): output channels [k*n, (k+1)*n) of frame t
    are frame t*s + k. `time_scale = s` tells run_with_memory the clip got s times longer.
    A 1x1 conv acts on each pixel alone (`pointwise_in_space`), so the fast path runs it before
    the nearest upsampling that precedes it here, on 4x fewer pixels.
    """

    pointwise_in_space = True

    def __init__(self, n: int, s: int):
        super().__init__()
        self.n, self.time_scale = n, s
        self.conv = nn.Conv2d(n, n * s, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, n = self.time_scale, self.n
        if s == 1:
            return self.conv(x)
        nt, c, h, w = x.shape
        # A 1x1 conv is a matmul over pixels: each output frame's is written straight into its
        # place of a channels_last output (the layout the fused CPU convs after it take).
        out = torch.empty((nt * s, n, h, w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
        pixels = x.permute(0, 2, 3, 1).reshape(nt, h * w, c)  # a view of a channels_last x
        weights = self.conv.weight.view(s, n, c).transpose(1, 2)
        frames = out.permute(0, 2, 3, 1).view(nt, s, h * w, n)
        for t in range(nt):
            for k in range(s):
                torch.mm(pixels[t], weights[k], out=frames[t, k])
        return out


class TPool(nn.Module):
    """Time downscale: s consecutive frames concatenated on channels, 1x1 conv n*s -> n (no bias).

    Input (N*T, n, H, W), T a multiple of s per clip -> (N*T/s, n, H, W). `time_pool = s`.
    """

    def __init__(self, n: int, s: int):
        super().__init__()
        self.n, self.time_pool = n, s
        self.conv = nn.Conv2d(n * s, n, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        x = x.reshape(nt // self.time_pool, self.time_pool * c, h, w)
        return self.conv(x.contiguous(memory_format=torch.channels_last))


class LeakyMemBlock(MemBlock):
    """MemBlock with LeakyReLU(0.2) instead of ReLU (lighttae files). Same keys, same memory:
    the past half of conv.0 applied to the previous frame's input (see layers.MemBlock)."""

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None, n_frames: int):
        first, _, second, _, third = self.conv
        n_in = x.shape[1]
        contribution = first._conv_forward(x, first.weight[:, n_in:], None)
        from_past, new_memory = shift_in_time(contribution, memory, n_frames)
        h = first._conv_forward(x, first.weight[:, :n_in], first.bias)
        if from_past is not None:
            h = h + from_past
        h = F.leaky_relu(h, LEAKY_SLOPE)
        h = F.leaky_relu(second(h), LEAKY_SLOPE)
        return F.leaky_relu(third(h) + self.skip(x), LEAKY_SLOPE), new_memory


class SuperMemBlock(MemBlock):
    """Super variant's block: 7x7 depthwise conv (no bias) on cat[x_t, x_{t-1}], 1x1 conv
    2n -> 4n, ReLU, 1x1 conv 4n -> n (no bias), + x. No activation after the sum.

    A MemBlock subclass only so run_with_memory hands it memory; here the memory is the
    block's raw input of the previous frame (n channels), zeros at a clip's start.
    """

    def __init__(self, n: int):
        nn.Module.__init__(self)  # not MemBlock's convs: a different layout
        self.conv = nn.Sequential(
            nn.Conv2d(2 * n, 2 * n, 7, padding=3, groups=2 * n, bias=False),
            nn.Conv2d(2 * n, 4 * n, 1), nn.ReLU(inplace=True),
            nn.Conv2d(4 * n, n, 1, bias=False),
        )

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None, n_frames: int):
        depthwise, expand, _, project = self.conv
        past, new_memory = shift_in_time(x, memory, n_frames)
        if past is None:  # a clip's first frame: its past is zeros
            past = torch.zeros_like(x)
        both = torch.cat([x, past], 1).contiguous(memory_format=torch.channels_last)
        y = project(conv_relu(expand, depthwise(both)))
        return y + x, new_memory


class UnitRange(nn.Module):
    """[-1, 1] -> [0, 1]: (x + 1) / 2, for decoders trained to output [-1, 1] (lighttae)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.add(1).mul_(0.5)


# ---------------------------------------------------------------------------------------------
# Decoders and encoder
# ---------------------------------------------------------------------------------------------

class _TAEHVDecoderBase(ChunkDecoder):
    """What the base and super decoders share: time/space options and memory estimates."""

    patch: int = 1
    stage_time: tuple[int, ...] = BASE_TIME
    cogvideox: bool = False  # taecvx: clips of an even number of latent frames keep their start

    def _setup(self, latent_channels: int, patch: int, stage_time, time_upscale: bool,
               space_upscale: bool, family: str | None):
        if patch not in (1, 2, 4):
            raise ValueError(f"patch must be 1, 2 or 4, got {patch}")
        self.latent_channels, self.patch = latent_channels, patch
        self.checkpoint_time = tuple(stage_time)  # what the file's TGrow convs hold
        self.stage_time = tuple(stage_time) if time_upscale else (1, 1, 1)
        self.time_scale = math.prod(self.stage_time)
        self.frames_to_trim = self.time_scale - 1
        self.spatial_scale = (8 if space_upscale else 1) * patch
        if family is not None:
            self.family = family

    def start_trim(self, clip_latent_frames: int) -> int:
        """time_scale - 1 frames, except for CogVideoX clips of an even number of latent frames,
        which the reference (and CogVideoX 1.5's even latent counts) decodes untrimmed. A stream
        decides at its first piece, from that piece's length."""
        if self.cogvideox and clip_latent_frames % 2 == 0:
            return 0
        return self.frames_to_trim

    def tgrow_layers(self) -> list[tuple[int, TGrow]]:
        return [(i, layer) for i, layer in enumerate(self) if isinstance(layer, TGrow)]

    def cut_tgrow(self, sd: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
        """A copy of `sd` whose TGrow convs keep only the LAST n*s output channels this model
        uses (the reference's patch_tgrow_layers: a file with more time upscale than wanted,
        e.g. time_upscale=False for a cheaper preview, keeps its last-frame outputs)."""
        sd = dict(sd)
        for i, layer in self.tgrow_layers():
            key = f"{prefix}{i}.conv.weight"
            want = layer.conv.weight.shape[0]
            if key in sd and sd[key].ndim == 4 and sd[key].shape[0] > want:
                sd[key] = sd[key][-want:]
        return sd

    def cheaper_variants(self) -> list[ChunkDecoder]:
        """Cheaper decoders from these weights, for previews: one frame per latent frame (time
        upscaling off; each TGrow keeps its last-frame outputs, so frame k is the full decode's
        frame time_scale * k after the trim), then also without the nearest upsamplings (frames
        at latent size x patch; not the super variant, whose upsampling is learned). Same
        device, dtype and latent tags as this decoder; [] when time upscaling is already off."""
        if self.time_scale == 1:
            return []
        options = [(False, True)] + ([] if isinstance(self, TAEHVSuperDecoder) else [(False, False)])
        weights = self.state_dict()
        param = next(self.parameters())
        variants = []
        for time_upscale, space_upscale in options:
            variant = self.rebuilt(time_upscale, space_upscale)
            load_strict(variant, variant.cut_tgrow(weights), "state dict", "decoder")
            variant.latent_space = self.latent_space
            variant.allow_tf32, variant.cogvideox = self.allow_tf32, self.cogvideox
            variants.append(variant.to(device=param.device, dtype=param.dtype))
        return variants

    def working_bytes_per_frame(self, height: int, width: int, element_size: int) -> int:
        """Peak working memory per OUTPUT frame at height x width (estimate, bytes).

        The last stage holds, per output frame at (H/patch) x (W/patch) pixels: the last
        TGrow's low-resolution input (64 / s2 / 4, rounded up to 64 / s2 here), the upsampled
        input of the conv after it (on CPUs instead its four phase outputs at the low
        resolution, as large) and that conv's output (64 + 64), an activation's output (64) and
        the final conv (3 * patch^2). The super variant adds its PixelShuffle copy (64).
        """
        px = (height // self.patch) * (width // self.patch)
        last = DECODER_WIDTHS[3]
        per_px = last / self.stage_time[2] + 3 * last + 3 * self.patch ** 2
        if isinstance(self, TAEHVSuperDecoder):
            per_px += last
        return int(px * per_px * element_size)

    def state_bytes(self, height: int, width: int, element_size: int) -> int:
        """A stream's memory at output size height x width: one frame per memory block."""
        px = (height // self.spatial_scale) * (width // self.spatial_scale)  # latent pixels
        total, scale = 0, 1
        for layer in self:
            if isinstance(layer, SuperMemBlock):
                total += layer.conv[3].out_channels * px * scale
            elif isinstance(layer, MemBlock):
                total += layer.conv[0].out_channels * px * scale
            elif isinstance(layer, nn.Upsample):
                scale *= int(layer.scale_factor) ** 2
            elif isinstance(layer, nn.PixelShuffle):
                scale *= layer.upscale_factor ** 2
        return int(total * element_size)


class TAEHVDecoder(_TAEHVDecoderBase):
    """Latents (N, T, C, h, w) -> frames (N, time_scale*T, 3, s*h, s*w), s = 8 * patch.

    latent_channels: C (16 Wan 2.1 / HunyuanVideo, 48 Wan 2.2 5B, 32 HunyuanVideo 1.5,
      128 LTX-2). patch: 1, 2 or 4 (pixel_shuffle after the final conv).
    stage_time: TGrow stride per stage, (1, 2, 2) default, (2, 2, 2) LTX-2 (as in the file).
    time_upscale: False gives one frame per latent frame (TGrow keeps the last-frame outputs;
      cheaper previews). space_upscale: False skips the nearest upsamplings (1/8 size).
    leaky: LeakyReLU(0.2) and output mapped from [-1, 1] to [0, 1] (lighttae files).
    """

    family = "TAEHV"

    def __init__(self, latent_channels: int = 16, patch: int = 1, stage_time=BASE_TIME,
                 time_upscale: bool = True, space_upscale: bool = True, leaky: bool = False,
                 family: str | None = None):
        self._setup(latent_channels, patch, stage_time, time_upscale, space_upscale, family)
        self.leaky = leaky
        n0, n1, n2, n3 = DECODER_WIDTHS
        t0, t1, t2 = self.stage_time
        block = LeakyMemBlock if leaky else MemBlock
        act = (lambda: nn.LeakyReLU(LEAKY_SLOPE, inplace=True)) if leaky else (lambda: nn.ReLU(inplace=True))
        up = lambda: nn.Upsample(scale_factor=2 if space_upscale else 1)
        layers = [
            Clamp(), conv(latent_channels, n0), act(),
            block(n0, n0), block(n0, n0), block(n0, n0), up(), TGrow(n0, t0), conv(n0, n1, bias=False),
            block(n1, n1), block(n1, n1), block(n1, n1), up(), TGrow(n1, t1), conv(n1, n2, bias=False),
            block(n2, n2), block(n2, n2), block(n2, n2), up(), TGrow(n2, t2), conv(n2, n3, bias=False),
            act(), conv(n3, 3 * patch ** 2),
        ]
        if patch > 1:
            layers.append(nn.PixelShuffle(patch))
        if leaky:
            layers.append(UnitRange())
        super().__init__(*layers)

    def rebuilt(self, time_upscale: bool, space_upscale: bool) -> "TAEHVDecoder":
        """An untrained decoder of this layout with other time/space options."""
        return TAEHVDecoder(self.latent_channels, self.patch, self.checkpoint_time, time_upscale,
                            space_upscale, self.leaky, self.family)


class TAEHVSuperDecoder(_TAEHVDecoderBase):
    """The super variant (taew2_2_super, taehv1_5_super): widths 512, 256, 128, 64.

    Latents (N, T, C, h, w) -> frames (N, time_scale*T, 3, 8*patch*h, 8*patch*w); arguments as
    TAEHVDecoder. space_upscale=False is not offered: the upsampling lives in learned convs
    whose widths depend on it, so the official weights would not fit.
    """

    family = "TAEHV Super"

    def __init__(self, latent_channels: int = 48, patch: int = 2, stage_time=BASE_TIME,
                 time_upscale: bool = True, space_upscale: bool = True, family: str | None = None):
        if not space_upscale:
            raise ValueError("the super decoder has no space_upscale=False mode (its upsampling convs are learned)")
        self._setup(latent_channels, patch, stage_time, time_upscale, space_upscale, family)
        n0, n1, n2, n3 = SUPER_WIDTHS
        t0, t1, t2 = self.stage_time

        def upsample(n_in, n_out):  # conv to 4x the channels, ReLU, PixelShuffle(2)
            return [conv(n_in, n_out * 4), nn.ReLU(inplace=True), nn.PixelShuffle(2)]

        layers = [
            nn.Conv2d(latent_channels, n0, 1, bias=False),                              # 0
            SuperMemBlock(n0), SuperMemBlock(n0), SuperMemBlock(n0), *upsample(n0, n1), TGrow(n1, t0),  # 1-7
            SuperMemBlock(n1), SuperMemBlock(n1), SuperMemBlock(n1), *upsample(n1, n2), TGrow(n2, t1),  # 8-14
            SuperMemBlock(n2), SuperMemBlock(n2), SuperMemBlock(n2), *upsample(n2, n3), TGrow(n3, t2),  # 15-21
            conv(n3, 3 * patch ** 2),                                                   # 22 final
        ]
        if patch > 1:
            layers.append(nn.PixelShuffle(patch))
        super().__init__(*layers)

    def rebuilt(self, time_upscale: bool, space_upscale: bool) -> "TAEHVSuperDecoder":
        """An untrained decoder of this layout with other time options (space stays on)."""
        return TAEHVSuperDecoder(self.latent_channels, self.patch, self.checkpoint_time, time_upscale,
                                 space_upscale, self.family)


class TAEHVEncoder(ChunkEncoder):
    """Frames (N, T, 3, H, W) in [0, 1], T a multiple of time_scale -> latents
    (N, T / time_scale, C, H / (8*patch), W / (8*patch)).

    pixel_unshuffle(patch), conv(3*patch^2 -> 64), ReLU, then 3 stages of TPool(64, s),
    stride-2 conv, 3 MemBlocks; conv(64 -> C). stage_pool: (2, 2, 1) default, (2, 2, 2) LTX-2.
    """

    family = "TAEHV"

    def __init__(self, latent_channels: int = 16, patch: int = 1, stage_pool=BASE_POOL,
                 family: str | None = None):
        n = ENCODER_WIDTH
        p0, p1, p2 = stage_pool
        self.latent_channels, self.patch = latent_channels, patch
        self.spatial_scale, self.time_scale = 8 * patch, p0 * p1 * p2
        if family is not None:
            self.family = family
        super().__init__(
            conv(3 * patch ** 2, n), nn.ReLU(inplace=True),                              # 0-1
            TPool(n, p0), conv(n, n, stride=2, bias=False), MemBlock(n, n), MemBlock(n, n), MemBlock(n, n),  # 2-6
            TPool(n, p1), conv(n, n, stride=2, bias=False), MemBlock(n, n), MemBlock(n, n), MemBlock(n, n),  # 7-11
            TPool(n, p2), conv(n, n, stride=2, bias=False), MemBlock(n, n), MemBlock(n, n), MemBlock(n, n),  # 12-16
            conv(n, latent_channels),                                                  # 17
        )

    def forward_chunk(self, frames: torch.Tensor, memory):
        """frames (N, T, 3, H, W) in [0, 1] -> (latents (N, T / time_scale, C, h, w), memory);
        patch > 1 folds patch x patch pixels into channels first (pixel_unshuffle)."""
        if self.patch > 1:
            frames = F.pixel_unshuffle(frames, self.patch)
        return super().forward_chunk(frames, memory)


# ---------------------------------------------------------------------------------------------
# Loading: variant from tensors, strict checks
# ---------------------------------------------------------------------------------------------

def _sub(sd: StateDict, prefix: str) -> StateDict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _stride(shape: tuple[int, ...] | None, n: int, axis: int) -> int | None:
    if shape is None or shape[axis] % n:
        return None
    return shape[axis] // n


def _patch(channels: int) -> int | None:
    """The patch p of a conv with 3 * p^2 channels (final decoder conv, first encoder conv), or None."""
    patch = round(math.sqrt(channels / 3))
    return patch if patch in (1, 2, 4) and 3 * patch * patch == channels else None


def _name(latent_channels: int, patch: int, super_: bool, ltx: bool, leaky: bool, cogvideox: bool = False) -> str:
    known = {(16, 1): "Wan 2.1 / HunyuanVideo / CogVideoX", (48, 2): "Wan 2.2 5B",
             (32, 2): "HunyuanVideo 1.5", (128, 4): "LTX-2", (24, 2): "MiniMax H3"}
    what = "CogVideoX" if cogvideox else known.get((latent_channels, patch), f"{latent_channels} latent channels, patch {patch}")
    if leaky:
        what = "lighttae " + what
    return f"TAEHV{' Super' if super_ else ''} ({what})"


def _conv_shape(sd: StateDict, half: str, key: str) -> tuple[int, ...]:
    """The shape of the conv weight sd[half + key], or ValueError naming it: absent, not 4-D, or
    with an empty dimension (a 0-channel or "patch 0" layout)."""
    shape = tensor_shape(sd, half + key, 4)
    if shape is None:
        value = sd.get(half + key)
        if value is None:
            raise ValueError(f"{half}{key} is missing: not a TAEHV {half[:-1]} (looks like {_describe_unknown(sd)})")
        raise ValueError(f"{half}{key} has shape {tuple(value.shape)}; TAEHV has a 4-D conv weight there, "
                         "no dimension 0")
    return shape


def _describe_unknown(sd: StateDict) -> str:
    keys = sorted(sd)
    if any(k.startswith("decoder.conv_in") or k.startswith("quant_conv") for k in keys):
        return "a full (KL) VAE, not a tiny autoencoder"
    if "decoder.19.weight" in sd and "decoder.22.weight" not in sd:
        return "TAESDV (load it as TAESDV)"
    if "3.conv.0.weight" in sd or "taesd_decoder.1.weight" in sd:
        return "an image TAESD decoder/encoder"
    return f"{len(keys)} tensors, first keys {keys[:4]}"


def taehv_from_state_dict(sd: StateDict, filename: str | None = None, *,
                          time_upscale: bool = True, space_upscale: bool = True, build: bool = True):
    """Build (encoder or None, decoder or None, description) from a TAEHV-family state dict.

    The variant comes from the tensors: latent channels from decoder.1.weight (super:
    decoder.0.weight) or encoder.17.weight, patch from the final conv's 3*patch^2 channels,
    super from its SuperMemBlock keys, time strides from the TGrow/TPool conv shapes (LTX-2:
    all 2). `filename` only settles what tensors cannot: "lighttae" in it selects LeakyReLU
    and [-1, 1] output for 32-channel files (ComfyUI treats every 32-channel file so), "taecvx"
    CogVideoX's untrimmed even clips. Raises ValueError (CheckpointError for bad values) saying
    what the file looks like when it fits no variant. Weights are loaded strictly (every key,
    every shape, finite floats). build=False only describes.
    """
    if not isinstance(sd, dict) or not sd:
        raise ValueError("the checkpoint is empty or not a state dict")
    dec, enc = _sub(sd, "decoder."), _sub(sd, "encoder.")
    other = [k for k in sd if not k.startswith(("decoder.", "encoder."))]
    if other:
        raise ValueError(f"not a TAEHV file: keys outside encoder./decoder. such as {other[:3]} "
                         f"(looks like {_describe_unknown(sd)})")
    if not dec and not enc:
        raise ValueError(f"not a TAEHV file: looks like {_describe_unknown(sd)}")
    name_hint = (filename or "").lower()
    label = filename or "state dict"
    decoder = encoder = None
    parts = []
    latent_channels = patch = None
    super_ = ltx = leaky = cogvideox = False

    if dec:
        super_ = (tensor_shape(dec, "1.conv.0.weight", 4) or (0, 0))[1] == 1
        final = _conv_shape(sd, "decoder.", f"{FINAL}.weight")
        first = _conv_shape(sd, "decoder.", "0.weight" if super_ else "1.weight")
        latent_channels, patch = first[1], _patch(final[0])
        if patch is None:
            raise ValueError(f"decoder.22 has {final[0]} outputs; TAEHV has 3 * patch^2 with patch 1, 2 or 4")
        widths = SUPER_WIDTHS[1:] if super_ else DECODER_WIDTHS[:3]
        tgrows = TGROW_SUPER if super_ else TGROW_BASE
        strides = tuple(_stride(tensor_shape(dec, f"{i}.conv.weight", 4), n, 0) for i, n in zip(tgrows, widths))
        if strides not in (BASE_TIME, LTX_TIME):
            raise ValueError(f"decoder TGrow convs {tgrows} give time strides {strides}; TAEHV has "
                             f"{BASE_TIME} or {LTX_TIME} (LTX-2)")
        ltx, stage_time = strides == LTX_TIME, strides
        if (latent_channels, patch) == (24, 2):
            raise ValueError("MiniMax H3 (taeh3): its 17-frame chunking and per-chunk trims are not supported")
        leaky = latent_channels == 32 and not super_ and "lighttae" in name_hint
        cogvideox = (latent_channels, patch, super_, ltx) == (16, 1, False, False) and _names_cogvideox(name_hint)
        family = _name(latent_channels, patch, super_, ltx, leaky, cogvideox)
        parts.append(f"decoder {latent_channels} ch, {8 * patch}x space, {math.prod(stage_time)}x time"
                     + (", super" if super_ else "") + (", LeakyReLU, [-1, 1] output" if leaky else "")
                     + (", CogVideoX: an even number of latent frames is not trimmed" if cogvideox else ""))
        if build:
            if super_:
                decoder = TAEHVSuperDecoder(latent_channels, patch, stage_time, time_upscale, space_upscale, family)
            else:
                decoder = TAEHVDecoder(latent_channels, patch, stage_time, time_upscale, space_upscale, leaky, family)
            decoder.cogvideox = cogvideox
            load_strict(decoder, decoder.cut_tgrow(dec), label, "decoder")

    if enc:
        first, last = _conv_shape(sd, "encoder.", "0.weight"), _conv_shape(sd, "encoder.", "17.weight")
        e_channels, e_patch = last[0], _patch(first[1])
        if e_patch is None:
            raise ValueError(f"encoder.0 takes {first[1]} channels; TAEHV takes 3 * patch^2 with patch 1, 2 or 4")
        pools = tuple(_stride(tensor_shape(enc, f"{i}.conv.weight", 4), ENCODER_WIDTH, 1) for i in TPOOL)
        if pools not in (BASE_POOL, LTX_POOL):
            raise ValueError(f"encoder TPool convs {TPOOL} give time strides {pools}; TAEHV has {BASE_POOL} or {LTX_POOL}")
        if latent_channels is not None and (e_channels, e_patch) != (latent_channels, patch):
            raise ValueError(f"encoder ({e_channels} ch, patch {e_patch}) and decoder ({latent_channels} ch, "
                             f"patch {patch}) do not belong together")
        latent_channels, patch = e_channels, e_patch
        ltx = ltx or pools == LTX_POOL
        family = _name(latent_channels, patch, super_, ltx, leaky, cogvideox)
        if leaky:
            parts.append("encoder not offered for lighttae files (input range unknown; ComfyUI refuses it too)")
        else:
            parts.append(f"encoder {latent_channels} ch, {math.prod(pools)}x time")
            if build:
                encoder = TAEHVEncoder(latent_channels, patch, pools, family)
                load_strict(encoder, enc, label, "encoder")
    description = f"{_name(latent_channels, patch, super_, ltx, leaky, cogvideox)}: " + "; ".join(parts)
    return encoder, decoder, description


# ---------------------------------------------------------------------------------------------
# The family record
# ---------------------------------------------------------------------------------------------

# The latents of each variant, as ComfyUI's VAE Decode feeds these files (comfy/sd.py: Wan files
# get the LATENT as is, HunyuanVideo ones its process_in); CogVideoX has no latent format there.
SPACES = {
    "Wan 2.1": LatentSpace("Wan21", "vae"),
    "Wan 2.2 5B": LatentSpace("Wan22", "vae"),
    "HunyuanVideo": LatentSpace("HunyuanVideo", "model", 0.476986),
    "HunyuanVideo 1.5": LatentSpace("HunyuanVideo15", "model", 1.03682),
    "LTX-2": LatentSpace("LTXV", "model", 1.0),
    "CogVideoX": LatentSpace("LatentFormat", "vae"),
    "other": LatentSpace("LatentFormat", "vae"),
}
_BY_CHANNELS = {16: "Wan 2.1", 48: "Wan 2.2 5B", 32: "HunyuanVideo 1.5", 128: "LTX-2"}


def _names_cogvideox(file_name: str) -> bool:
    """CogVideoX's file has Wan 2.1's tensors: only its name (taecvx) tells it apart, as in the reference."""
    return "taecvx" in file_name.lower()


def _variant(sd: StateDict, file_name: str) -> str:
    """Which latents a file that fits TAEHV decodes: from its latent channels, and for 16 channels
    (taehv and taew2_1 share every tensor) from its name or, as ComfyUI does, taehv.pth's fp16
    storage."""
    lowered = file_name.lower()
    if "decoder.22.weight" in sd:
        super_ = (tensor_shape(sd, "decoder.1.conv.0.weight", 4) or (0, 0))[1] == 1
        first = sd["decoder.0.weight" if super_ else "decoder.1.weight"]
        channels = first.shape[1]
    else:
        first, channels = sd["encoder.0.weight"], sd["encoder.17.weight"].shape[0]
    if channels != 16:
        return _BY_CHANNELS.get(channels, "other")
    if _names_cogvideox(file_name):
        return "CogVideoX"
    hunyuan = ("taehv" in lowered and "taehv1_5" not in lowered) or ("w2" not in lowered and first.dtype == torch.float16)
    return "HunyuanVideo" if hunyuan else "Wan 2.1"


def match(sd: StateDict, file_name: str) -> Match | NoMatch:
    """A TAEHV-family file: `decoder.22.*` (final conv) and/or `encoder.17.*` with TPool convs at
    `encoder.{2,7,12}.conv.weight` (TAESDV's decoder stops at index 19, TAESD has no prefix)."""
    if "decoder.22.weight" not in sd and not ("encoder.17.weight" in sd and "encoder.2.conv.weight" in sd):
        return NoMatch("no decoder.22 or encoder.17 tensors (TAEHV's final convs)")
    try:
        description = taehv_from_state_dict(sd, file_name, build=False)[2]
    except ValueError as e:
        first = tensor_shape(sd, "decoder.1.weight", 4)
        channels = f" for {first[1]}-channel latents" if first else ""
        return NoMatch(f"{e} (a TAEHV-family file{channels} that fits no known TAEHV layout)", claimed=True)
    variant = _variant(sd, file_name)
    return Match(variant, SPACES[variant], description)


def build(sd: StateDict, file_name: str, found: Match) -> TinyAutoencoder:
    try:
        encoder, decoder, _ = taehv_from_state_dict(sd, file_name)
    except CheckpointError:
        raise
    except ValueError as e:
        raise CheckpointError(f"checkpoint '{file_name}': {e}") from None
    found.space.tag(encoder, decoder)
    return TinyAutoencoder(encoder, decoder, found.description, family="TAEHV")


FAMILY = Family(
    name="TAEHV", match=match, build=build, spaces=SPACES,
    latent_sources={
        12: ("Mochi 1", "taem1"),
        16: ("Wan 2.1, Wan 2.2 14B, HunyuanVideo, CogVideoX", "taew2_1 / taehv / taecvx (video)"),
        24: ("MiniMax H3", "taeh3"),
        32: ("HunyuanVideo 1.5", "taehv1_5 (video)"),
        48: ("Wan 2.2 5B", "taew2_2"),
        128: ("LTX-2", "taeltx_2"),
    },
    sources={prefix: "https://github.com/madebyollin/taehv"
             for prefix in ("taehv", "taew", "taecvx", "taeos", "taeltx", "taeh3", "taem1")}
            | {"lighttae": "https://huggingface.co/lightx2v/Autoencoders"},
)
