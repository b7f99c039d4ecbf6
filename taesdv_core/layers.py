"""Layers shared by the tiny autoencoders (TAESD, TAESDV, TAEHV): layouts as in madebyollin's
reference files, so their checkpoints load with strict key and shape checks.

Activations are (N*T, C, H, W): the frames of N clips, in time order within each clip. The
models list their layers as the papers do; `fused_ops.fast_path` turns such a list into the
faster equivalent it runs, and the blocks here run their conv and activation pairs through
`fused_ops` (one oneDNN kernel on CPUs, plain PyTorch elsewhere).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .family import LatentSpace
from .fused_ops import conv_add_relu, conv_relu, fast_path, runs_frame_by_frame


def conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    """3x3 conv, padding 1 (every conv of the family unless said)."""
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of latents to (-3, 3): tanh(x / 3) * 3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def _skip(n_in: int, n_out: int) -> nn.Module:
    return nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()


class Block(nn.Module):
    """conv, ReLU, conv, ReLU, conv, + skip, ReLU. The skip is a 1x1 conv when widths differ.

    The ReLU modules sit in the Sequential to keep the official key indices (conv.0/2/4); the
    forward applies them fused with the convs.
    """

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(conv(n_in, n_out), nn.ReLU(inplace=True), conv(n_out, n_out),
                                  nn.ReLU(inplace=True), conv(n_out, n_out))
        self.skip = _skip(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, _, second, _, third = self.conv
        h = conv_relu(first, x)
        h = conv_relu(second, h)
        return conv_add_relu(third, h, self.skip(x))


def shift_in_time(contribution: torch.Tensor, memory: torch.Tensor | None, n_frames: int):
    """What each frame of a chunk hands the next -> (what each frame gets from the frame before,
    or None for a lone first frame without memory; the memory for the next chunk).

    contribution: (N*T, C, H, W), T = n_frames per clip. memory: (N, C, H, W) from the previous
    chunk, or None at a clip's start (zeros). Both results are channels_last; the memory is a
    copy, since a view of the last frame would keep the whole chunk's contribution alive.
    """
    if n_frames == 1:
        return memory, contribution
    nt, ch, h, w = contribution.shape
    per_clip = contribution.view(nt // n_frames, n_frames, ch, h, w)
    start = torch.zeros_like(per_clip[:, :1]) if memory is None else memory.unsqueeze(1)
    from_past = torch.cat([start, per_clip[:, :-1]], 1).view(nt, ch, h, w)
    return (from_past.contiguous(memory_format=torch.channels_last),
            per_clip[:, -1].clone(memory_format=torch.channels_last))


class MemBlock(nn.Module):
    """A Block whose first conv also sees the past: conv0(cat[x_t, x_{t-1}]), x_{-1} = 0.

    `conv.0.weight` is (n_out, 2*n_in, 3, 3): input channels [0, n_in) act on the frame itself,
    [n_in, 2*n_in) on the block's input of the frame before. A conv is linear, so
    conv0(cat[x, past]) = conv_own(x) + conv_past(past), and conv_past(x_t) is computed once
    when x_t passes through, then added to frame t+1. That contribution of the last frame is
    this block's memory between chunks: no concatenation copies, one frame of state per block.
    """

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(conv(2 * n_in, n_out), nn.ReLU(inplace=True), conv(n_out, n_out),
                                  nn.ReLU(inplace=True), conv(n_out, n_out))
        self.skip = _skip(n_in, n_out)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None, n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N*T, n_in, H, W), T = n_frames per clip. memory: (N, n_out, H, W) from the
        previous chunk of the same clips, or None at a clip's start.
        Returns (output (N*T, n_out, H, W), memory for the next chunk)."""
        first, _, second, _, third = self.conv
        n_in = x.shape[1]
        own_weight = first.weight[:, :n_in].contiguous(memory_format=torch.channels_last)
        past_weight = first.weight[:, n_in:].contiguous(memory_format=torch.channels_last)
        contribution = first._conv_forward(x, past_weight, None)  # what each frame adds to the next
        # frame t gets the contribution of frame t-1; the first frame the carried memory
        from_past, new_memory = shift_in_time(contribution, memory, n_frames)
        if from_past is None:  # a clip's first frame: zero past contributes nothing
            h1 = conv_relu(first, x, weight=own_weight)
        else:
            h1 = conv_add_relu(first, x, from_past, weight=own_weight)
        h1 = conv_relu(second, h1)
        return conv_add_relu(third, h1, self.skip(x)), new_memory


def run_with_memory(layers, x: torch.Tensor, memory: list[torch.Tensor] | None, n_frames: int,
                    grown_frames_one_by_one: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run a decoder's layers over one chunk, handing each MemBlock its memory.

    x: (N*T, C, h, w), T = n_frames per clip. memory: one tensor per MemBlock, in layer order,
    from the previous chunk of the same clips (None at a clip's start). A layer with a
    `time_scale` attribute (TAEHV's TGrow) multiplies the frames per clip after it, one with
    `time_pool` divides them. With `grown_frames_one_by_one` the frames such a layer makes go
    through the layers after it one at a time, in order (CPUs: batch-1 oneDNN convs are faster,
    a frame's activations stay in cache, and a MemBlock's past is the frame before, uncopied).
    Layers may be plain callables (a decoder's fused group of layers). Returns the output (clips
    in order, frames in time order within each) and the memory for the next chunk.
    """
    layers = list(layers)
    slots, blocks = {}, 0  # layer index -> its MemBlock's place in the memory list
    for i, layer in enumerate(layers):
        if isinstance(layer, MemBlock):
            slots[i], blocks = blocks, blocks + 1
    state = list(memory) if memory is not None else [None] * blocks
    return _run_from(0, layers, slots, state, x, n_frames, grown_frames_one_by_one), state


def _run_from(first: int, layers: list, slots: dict[int, int], state: list, x: torch.Tensor,
              n_frames: int, grown_frames_one_by_one: bool) -> torch.Tensor:
    """run_with_memory from layers[first] on, updating `state` (the MemBlocks' memory) in place.
    (A function of its own: a closure that called itself would be a reference cycle holding
    every step's memory until the garbage collector ran.)"""
    for i in range(first, len(layers)):
        layer = layers[i]
        if isinstance(layer, MemBlock):
            x, state[slots[i]] = layer(x, state[slots[i]], n_frames)
            continue
        x = layer(x)
        grown = getattr(layer, "time_scale", 1)
        n_frames = n_frames * grown // getattr(layer, "time_pool", 1)
        if grown_frames_one_by_one and grown > 1 and n_frames > 1:
            clips = x.shape[0] // n_frames
            by_time = x.view(clips, n_frames, *x.shape[1:])
            del x
            outs = [_run_from(i + 1, layers, slots, state, by_time[:, t].contiguous(memory_format=torch.channels_last),
                              1, True) for t in range(n_frames)]
            return torch.stack([o.view(clips, -1, *o.shape[1:]) for o in outs], 1).flatten(0, 2)
    return x


def _in_order(layers: nn.Sequential):
    """The layers of a Sequential in order, nested Sequentials (DecoderTiny's `layers`) opened."""
    for layer in layers.children():
        if isinstance(layer, nn.Sequential):
            yield from _in_order(layer)
        else:
            yield layer


UNKNOWN_SPACE = LatentSpace("LatentFormat", "vae")  # no known latent format: a LATENT is taken as it is


class ChunkDecoder(nn.Sequential):
    """A decoder the engine (engine.py) runs in chunks: what every family's decoder provides.

    Subclasses set the class attributes and list their layers; `forward_chunk` decodes T
    consecutive latent frames of N clips from the memory the previous chunk returned.
    """

    family: str = "this decoder"  # named in messages: "TAESDV", "TAEHV (Wan 2.1)", ...
    latent_space: LatentSpace = UNKNOWN_SPACE  # the latents it was made for (set by its family)
    latent_channels: int = 4
    spatial_scale: int = 8    # output pixels per latent pixel, each side
    time_scale: int = 1       # output frames per latent frame, before the start trim
    frames_to_trim: int = 0   # frames dropped at a clip's start (TAEHV: time_scale - 1)
    allow_tf32: bool = False  # fp32 weights may use TF32 on CUDA (engine.fp32_precision)
    chunk_multiple: int = 1   # chunks start and end at multiples of this (a temporal window)
    # What live previews measured of this decoder: seconds per FLOP of a preview (the decode and
    # the work charged after it), kept with the decoder across sampling runs (the loader's preview
    # copies live with the loaded file), so a run's first previews are predicted at the speed this
    # machine showed for it in its dtype, not at a guess. None until its first preview.
    preview_seconds_per_flop: float | None = None

    @property
    def latent_format(self) -> str:
        return self.latent_space.format

    @property
    def input_space(self) -> str:
        return self.latent_space.input_space

    def working_bytes_per_frame(self, height: int, width: int, element_size: int) -> int:
        """Peak working memory of one output frame of height x width (a 64-channel last stage:
        its input, memory contribution and shifted copy, two conv outputs, upsampled input)."""
        return height * width * element_size * (64 * 6 + 64 // 4 + 3)

    def start_trim(self, clip_latent_frames: int) -> int:
        """Frames dropped at the start of a clip whose first piece has `clip_latent_frames`."""
        return self.frames_to_trim

    def cheaper_variants(self) -> list["ChunkDecoder"]:
        """Cheaper decoders made from these weights for previews the full one cannot afford,
        costliest first (TAEHV: without time, then also without space upscaling). None here."""
        return []

    def forward_chunk(self, latents: torch.Tensor,
                      memory: list[torch.Tensor] | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """latents (N, T, C, h, w) -> (frames (N, T * time_scale, 3, H, W), roughly [0, 1] and
        unclamped, untrimmed; memory for the next chunk). memory None starts new clips."""
        n, t = latents.shape[:2]
        x = latents.reshape(n * t, *latents.shape[2:]).contiguous(memory_format=torch.channels_last)
        x, memory = self.run_layers(x, memory, t)
        return x.reshape(n, x.shape[0] // n, *x.shape[1:]), memory

    def run_layers(self, x: torch.Tensor, memory: list[torch.Tensor] | None,
                   n_frames: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """run_with_memory over the layers' fast path; where a chunk runs frame by frame (CPUs),
        so do the frames a layer multiplies into (TAEHV's TGrow)."""
        return run_with_memory(fast_path(self), x, memory, n_frames,
                               grown_frames_one_by_one=runs_frame_by_frame(x.device))

    def flops_per_frame(self, height: int, width: int) -> float:
        """Multiply-adds x2 per output frame of height x width pixels, counted over the 2-D convs
        of the layers as listed (upsamplings, pixel shuffles and time-scaling layers followed);
        what previews estimate a decode's cost from before they have measured one."""
        h, w = height // self.spatial_scale, width // self.spatial_scale
        frames, total = 1.0, 0.0  # frames per latent frame at this layer
        for layer in _in_order(self):
            if isinstance(layer, nn.Upsample):
                h, w = int(h * layer.scale_factor), int(w * layer.scale_factor)
            for c in (m for m in layer.modules() if isinstance(m, nn.Conv2d)):
                per_px = 2 * c.in_channels * c.out_channels * c.kernel_size[0] * c.kernel_size[1] / c.groups
                total += per_px * h * w * frames
            if isinstance(layer, nn.PixelShuffle):
                h, w = h * layer.upscale_factor, w * layer.upscale_factor
            frames *= getattr(layer, "time_scale", 1)
        return total / frames


class ChunkEncoder(nn.Sequential):
    """An encoder the engine runs in chunks; `time_scale` frames make one latent frame."""

    family: str = "this encoder"
    latent_space: LatentSpace = UNKNOWN_SPACE  # of its output latents, as ChunkDecoder's input
    latent_channels: int = 4
    spatial_scale: int = 8
    time_scale: int = 1
    allow_tf32: bool = False

    latent_format = ChunkDecoder.latent_format
    input_space = ChunkDecoder.input_space

    def working_bytes_per_frame(self, height: int, width: int, element_size: int) -> int:
        """Peak working memory of one input frame of height x width: the first stage holds a few
        64-channel activations at full size."""
        return height * width * element_size * (64 * 4 + 3)

    def forward_chunk(self, frames: torch.Tensor,
                      memory: list[torch.Tensor] | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """frames (N, T, 3, H, W) in [0, 1], T a multiple of time_scale -> (latents
        (N, T / time_scale, C, H / s, W / s), memory for the next chunk)."""
        n, t = frames.shape[:2]
        x = frames.reshape(n * t, *frames.shape[2:]).contiguous(memory_format=torch.channels_last)
        x, memory = run_with_memory(fast_path(self), x, memory, t)
        return x.reshape(n, x.shape[0] // n, *x.shape[1:]), memory
