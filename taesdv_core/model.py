"""TAESDV: Tiny AutoEncoder for Stable Diffusion Videos (2.8M parameters).

The architecture of madebyollin/taesdv with the official state-dict layout, so `taesdv.pth`
loads with `load_state_dict(strict=True)`. Layouts:

- frames:  NTCHW, RGB in [0, 1] (decoder output is roughly [0, 1] and is not clamped here)
- latents: NTCHW, 4 channels, 1/8 of the frame size, in the diffusion model's space
  (the SD VAE latent times 0.18215)

The decoder carries memory from frame to frame: each MemBlock sees its own input of the
previous frame (zeros for the first). How frames are grouped into chunks and how memory is
carried between calls lives in `engine.py`; this file only holds the layers and the math of
one chunk.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

LATENT_CHANNELS = 4
SPATIAL_SCALE = 8
SD_LATENT_SCALE = 0.18215  # SD1.x/SD2.x/SVD VAE: model-space latent = VAE latent x this
WIDTH = 64  # channels of every hidden layer


def conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of latents to (-3, 3): tanh(x / 3) * 3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def _fusable(*tensors: torch.Tensor) -> bool:
    """oneDNN's fused conv kernels apply: CPU, fp32/bf16, channels_last inputs."""
    return all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.bfloat16)
               and t.is_contiguous(memory_format=torch.channels_last) for t in tensors) and torch.backends.mkldnn.is_available()


def conv_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """relu(conv3x3(x)); one fused oneDNN kernel on CPU (about 25% faster than two passes)."""
    if _fusable(x, weight):
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, [1, 1], [1, 1], [1, 1], 1, "relu", [None], "")
    return F.relu_(F.conv2d(x, weight, bias, padding=1))


def conv_add_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, other: torch.Tensor) -> torch.Tensor:
    """relu(conv3x3(x) + other); one fused oneDNN kernel on CPU."""
    if _fusable(x, weight, other):
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, weight, bias, [1, 1], [1, 1], [1, 1], 1, "add", None, "relu", [None], "")
    return F.relu_(F.conv2d(x, weight, bias, padding=1).add_(other))


class Block(nn.Module):
    """conv, ReLU, conv, ReLU, conv, plus an identity skip, then ReLU (64 -> 64 channels)."""

    def __init__(self, n: int = WIDTH):
        super().__init__()
        self.conv = nn.Sequential(conv(n, n), nn.ReLU(inplace=True), conv(n, n), nn.ReLU(inplace=True), conv(n, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        h = conv_relu(x, c[0].weight, c[0].bias)
        h = conv_relu(h, c[2].weight, c[2].bias)
        return conv_add_relu(h, c[4].weight, c[4].bias, x)


class MemBlock(nn.Module):
    """A Block whose first conv also sees memory: conv0(cat[x_t, x_{t-1}]).

    `conv.0.weight` is (64, 128, 3, 3): input channels 0-63 act on the frame's own input,
    64-127 on the memory. A conv is linear, so conv0(cat[x, m]) = conv_x(x) + conv_m(m), and
    conv_m(x_{t-1}) can be computed when x_{t-1} itself passes through. The forward pass runs
    conv_m on every frame, hands each frame's result to the next frame (fused into conv_x's
    add and ReLU), and carries the last frame's conv_m between chunks: no concatenation of
    inputs, and the state is one 64-channel frame per block.
    """

    def __init__(self, n: int = WIDTH):
        super().__init__()
        self.conv = nn.Sequential(conv(2 * n, n), nn.ReLU(inplace=True), conv(n, n), nn.ReLU(inplace=True), conv(n, n))
        # The two halves of conv.0 (derived, not saved): they move and cast with the module and
        # are refreshed whenever a state dict is loaded.
        self.register_buffer("own_weight", torch.empty(n, n, 3, 3), persistent=False)
        self.register_buffer("memory_weight", torch.empty(n, n, 3, 3), persistent=False)
        self.refresh_split()
        self.register_load_state_dict_post_hook(lambda module, _keys: module.refresh_split())

    @torch.no_grad()
    def refresh_split(self) -> None:
        w = self.conv[0].weight
        n = w.shape[0]
        self.own_weight = w[:, :n].contiguous(memory_format=torch.channels_last)
        self.memory_weight = w[:, n:].contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None, n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One chunk of frames through the block.

        x: (N*T, 64, H, W) channels_last, frames of N clips in time order, T = n_frames per clip.
        memory: (N, 64, H, W), conv_m of each clip's frame before this chunk, or None at the
            start of a clip (zero memory contributes nothing).
        Returns (output (N*T, 64, H, W), new memory (N, 64, H, W) for the next chunk).
        """
        c = self.conv
        nt, ch, h, w = x.shape
        mem = F.conv2d(x, self.memory_weight, None, padding=1)  # each frame's contribution to the next
        frames = mem.view(nt // n_frames, n_frames, ch, h, w)
        new_memory = mem if n_frames == 1 else frames[:, -1].contiguous(memory_format=torch.channels_last)
        if n_frames == 1:
            previous = memory
        else:  # frame t gets conv_m of frame t-1; frame 0 the carried memory
            first = memory.unsqueeze(1) if memory is not None else torch.zeros_like(frames[:, :1])
            previous = torch.cat([first, frames[:, :-1]], 1).view(nt, ch, h, w).contiguous(memory_format=torch.channels_last)
        if previous is None:
            h1 = conv_relu(x, self.own_weight, c[0].bias)
        else:
            h1 = conv_add_relu(x, self.own_weight, c[0].bias, previous)
        h1 = conv_relu(h1, c[2].weight, c[2].bias)
        return conv_add_relu(h1, c[4].weight, c[4].bias, x), new_memory


class TAESDVEncoder(nn.Sequential):
    """Frames (B, 3, H, W) in [0, 1] -> latents (B, 4, H/8, W/8), each frame on its own."""

    def __init__(self):
        super().__init__(
            conv(3, WIDTH), Block(),
            conv(WIDTH, WIDTH, stride=2, bias=False), Block(), Block(), Block(),
            conv(WIDTH, WIDTH, stride=2, bias=False), Block(), Block(), Block(),
            conv(WIDTH, WIDTH, stride=2, bias=False), Block(), Block(), Block(),
            conv(WIDTH, LATENT_CHANNELS),
        )


class TAESDVDecoder(nn.Sequential):
    """Latents -> frames with memory; see `forward_chunk`."""

    def __init__(self):
        super().__init__(
            Clamp(), conv(LATENT_CHANNELS, WIDTH), nn.ReLU(inplace=True),
            MemBlock(), MemBlock(), MemBlock(), nn.Upsample(scale_factor=2), conv(WIDTH, WIDTH, bias=False),
            MemBlock(), MemBlock(), MemBlock(), nn.Upsample(scale_factor=2), conv(WIDTH, WIDTH, bias=False),
            MemBlock(), MemBlock(), MemBlock(), nn.Upsample(scale_factor=2), conv(WIDTH, WIDTH, bias=False),
            MemBlock(), conv(WIDTH, 3),
        )

    @property
    def n_memory_blocks(self) -> int:
        return sum(isinstance(layer, MemBlock) for layer in self)

    def forward_chunk(
        self, latents: torch.Tensor, memory: list[torch.Tensor] | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Decode T consecutive frames of N clips.

        latents: (N, T, 4, h, w) in model space.
        memory: one tensor per MemBlock as returned by the previous chunk of the same clips,
            or None for the first chunk of a clip.
        Returns frames (N, T, 3, 8h, 8w), roughly [0, 1] and unclamped, and the memory for the
        next chunk. Inputs are not modified.
        """
        n, t = latents.shape[:2]
        x = latents.reshape(n * t, *latents.shape[2:]).contiguous(memory_format=torch.channels_last)
        new_memory: list[torch.Tensor] = []
        layers = list(self)
        x = conv_relu(layers[0](x), layers[1].weight, layers[1].bias)  # Clamp, conv 4->64, ReLU
        for layer in layers[3:]:
            if isinstance(layer, MemBlock):
                x, m = layer(x, None if memory is None else memory[len(new_memory)], t)
                new_memory.append(m)
            else:
                x = layer(x)
        return x.reshape(n, t, *x.shape[1:]), new_memory


class TAESDV(nn.Module):
    """Encoder and decoder; either may be None when a checkpoint holds only one of them."""

    def __init__(self, encoder: bool = True, decoder: bool = True):
        super().__init__()
        self.encoder = TAESDVEncoder() if encoder else None
        self.decoder = TAESDVDecoder() if decoder else None


def decoder_flops_per_frame(height: int, width: int) -> float:
    """Multiply-adds x2 of one decoded frame of height x width pixels (44.9 GFLOP at 256x256)."""
    total, res = 0.0, (height // 8) * (width // 8)
    k = 9 * 2  # 3x3 kernel, multiply + add
    total += res * LATENT_CHANNELS * WIDTH * k
    for stage, blocks in enumerate((3, 3, 3, 1)):
        if stage > 0:
            res *= 4
            total += res * WIDTH * WIDTH * k  # conv after upsample
        total += blocks * res * (2 * WIDTH * WIDTH + 2 * WIDTH * WIDTH) * k
    total += res * WIDTH * 3 * k
    return total
