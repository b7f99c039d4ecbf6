"""The CPU speed path, in one place: oneDNN kernels that fuse a conv with its add and ReLU,
and the 3x3 conv after a nearest 2x upsampling run at the lower resolution.

On CPUs (fp32/bf16, channels_last tensors) `torch.ops.mkldnn._convolution_pointwise` runs
conv+ReLU and conv+add+ReLU in one pass, about 25% faster than a conv followed by separate
element-wise passes (bench/). `upsampled_conv` computes conv(upsample(x)) as four 2x2 convs on x
(4/9 of the multiply-adds, no upsampled copy). Everywhere else these functions are the plain
PyTorch ops, so the layers call them unconditionally and read like the architecture.

Also decided here: whether a chunk runs frame by frame (CPUs: oneDNN's batch-1 convolutions
are the fastest per frame and a frame's activations stay in cache) or as one batch (GPUs).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _fusable(conv: nn.Conv2d, *tensors: torch.Tensor) -> bool:
    return (torch.backends.mkldnn.is_available() and isinstance(conv.padding, tuple)
            and all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.bfloat16)
                    and t.is_contiguous(memory_format=torch.channels_last) for t in tensors))


def _conv_args(conv: nn.Conv2d) -> tuple:
    return (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)


def conv_relu(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """relu(conv(x)); `weight` replaces conv.weight (e.g. one half of a split MemBlock conv)."""
    weight = conv.weight if weight is None else weight
    if _fusable(conv, x, weight):
        return torch.ops.mkldnn._convolution_pointwise(x, weight, conv.bias, *_conv_args(conv), "relu", [None], "")
    return F.relu_(conv._conv_forward(x, weight, conv.bias))


def conv_add_relu(conv: nn.Conv2d, x: torch.Tensor, other: torch.Tensor,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """relu(conv(x) + other); `weight` as in conv_relu."""
    weight = conv.weight if weight is None else weight
    if _fusable(conv, x, weight, other):
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, weight, conv.bias, *_conv_args(conv), "add", None, "relu", [None], "")
    return F.relu_(conv._conv_forward(x, weight, conv.bias).add_(other))


def _phase_kernels(weight: torch.Tensor) -> torch.Tensor:
    """(K, C, 3, 3) -> (4K, C, 2, 2): the kernel each output phase of a nearest 2x upsampled
    input sees, on the low-resolution input. An even output row 2i reads upsampled rows
    2i-1, 2i, 2i+1 = input rows i-1, i, i, so its kernel rows are (w0, w1 + w2) on rows
    (i-1, i); an odd row 2i+1 reads rows i, i, i+1: (w0 + w1, w2) on rows (i, i+1). Columns
    likewise. Output channels in phase order (row phase, column phase), K each."""
    def split(w: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        w0, w1, w2 = w.unbind(dim)
        return torch.stack([w0, w1 + w2], dim), torch.stack([w0 + w1, w2], dim)

    return torch.cat([col for row in split(weight, 2) for col in split(row, 3)], 0)


def upsampled_conv(conv: nn.Conv2d, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """conv(nearest 2x upsampling of x), then ReLU if `relu`: (N, C, h, w) -> (N, K, 2h, 2w).

    For a plain 3x3 conv (padding 1 with zeros, stride 1) on CPUs: one oneDNN conv of the four
    phase kernels (padding 1, so output (h+1) x (w+1)) on x itself, then each phase is copied
    into its rows and columns of the output: output pixel (2i + a, 2j + b) is phase (a, b) at
    [i + a, j + b]. That output is channels_last; elsewhere it keeps PyTorch's layout.
    """
    if (conv.kernel_size == (3, 3) and conv.padding == (1, 1) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and _fusable(conv, x)):
        n, _, h, w = x.shape
        k = conv.out_channels
        kernels = _phase_kernels(conv.weight).contiguous(memory_format=torch.channels_last)
        bias = None if conv.bias is None else conv.bias.repeat(4)
        out = torch.empty((n, k, 2 * h, 2 * w), dtype=x.dtype, device=x.device,
                          memory_format=torch.channels_last)
        grid = out.view(n, k, h, 2, w, 2)
        for i in range(n):  # one image at a time: a batch's phase outputs would be as large as `out`
            phases = torch.ops.mkldnn._convolution_pointwise(
                x[i:i + 1], kernels, bias, [1, 1], [1, 1], [1, 1], 1, "relu" if relu else "none", [None], "")
            for a in (0, 1):
                for b in (0, 1):
                    p = 2 * a + b
                    grid[i:i + 1, :, :, a, :, b].copy_(phases[:, p * k:(p + 1) * k, a:a + h, b:b + w])
        return out
    y = conv._conv_forward(F.interpolate(x, scale_factor=2, mode="nearest"), conv.weight, conv.bias)
    return F.relu_(y) if relu else y


def runs_frame_by_frame(device: torch.device) -> bool:
    """True where a chunk is fastest decoded one latent frame at a time (CPUs, measured by bench/)."""
    return device.type == "cpu"
