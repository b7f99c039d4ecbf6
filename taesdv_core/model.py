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
WIDTH = 64  # channels of every hidden layer


def conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of latents to (-3, 3): tanh(x / 3) * 3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """conv, ReLU, conv, ReLU, conv, plus an identity skip, then ReLU (64 -> 64 channels)."""

    def __init__(self, n: int = WIDTH):
        super().__init__()
        self.conv = nn.Sequential(conv(n, n), nn.ReLU(inplace=True), conv(n, n), nn.ReLU(inplace=True), conv(n, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x) + x)


class MemBlock(nn.Module):
    """A Block whose first conv also sees memory: conv0(cat[x_t, x_{t-1}]).

    `conv.0.weight` is (64, 128, 3, 3): input channels 0-63 act on the frame's own input,
    64-127 on the memory. Because a conv is linear, conv0(cat[x, m]) = conv_x(x) + conv_m(m),
    and conv_m(x_{t-1}) can be computed when x_{t-1} itself passes through. The forward pass
    therefore runs one conv with 128 output channels (the two halves stacked) on each frame
    and adds the memory half of the previous frame: no concatenation copies, and the state
    carried between chunks is that memory half (64 channels) of the last frame.
    """

    def __init__(self, n: int = WIDTH):
        super().__init__()
        self.conv = nn.Sequential(conv(2 * n, n), nn.ReLU(inplace=True), conv(n, n), nn.ReLU(inplace=True), conv(n, n))
        # Derived from conv.0 (not saved): they move and cast with the module, and are refreshed
        # whenever a state dict is loaded.
        self.register_buffer("stacked_weight", torch.empty(2 * n, n, 3, 3), persistent=False)
        self.register_buffer("stacked_bias", torch.empty(2 * n), persistent=False)
        self.refresh_stacked()
        self.register_load_state_dict_post_hook(lambda module, _keys: module.refresh_stacked())

    @torch.no_grad()
    def refresh_stacked(self) -> None:
        """stacked_weight (128, 64, 3, 3) = own-input half then memory half; stacked_bias = (bias, 0)."""
        w, b = self.conv[0].weight, self.conv[0].bias
        n = w.shape[0]
        self.stacked_weight = torch.cat([w[:, :n], w[:, n:]], 0).contiguous(memory_format=torch.channels_last)
        self.stacked_bias = torch.cat([b, torch.zeros_like(b)], 0)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None, n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One chunk of frames through the block.

        x: (N*T, 64, H, W), frames of N clips in time order, T = n_frames per clip.
        memory: (N, 64, H, W), the memory half conv_m(x) of each clip's frame before this chunk,
            or None at the start of a clip (zero memory contributes nothing).
        Returns (output (N*T, 64, H, W), new memory (N, 64, H, W) for the next chunk).
        """
        y = F.conv2d(x, self.stacked_weight, self.stacked_bias, padding=1)
        nt, c2, h, w = y.shape
        n = c2 // 2
        y = y.view(nt // n_frames, n_frames, c2, h, w)
        own, mem = y[:, :, :n], y[:, :, n:]
        # frame t gets the memory half of frame t-1; frame 0 gets the carried memory
        if n_frames > 1:
            own[:, 1:] += mem[:, :-1]
        if memory is not None:
            own[:, 0] += memory
        new_memory = mem[:, -1].clone()
        h1 = own.reshape(nt, n, h, w)
        h1 = F.relu_(h1)
        h1 = F.relu_(self.conv[2](h1))
        h1 = self.conv[4](h1)
        return F.relu_(h1.add_(x)), new_memory


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
        for layer in self:
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
