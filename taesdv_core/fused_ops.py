"""The CPU speed path, in one place: oneDNN kernels that fuse a conv with its add and ReLU.

On CPUs (fp32/bf16, channels_last tensors) `torch.ops.mkldnn._convolution_pointwise` runs
conv+ReLU and conv+add+ReLU in one pass, about 25% faster than a conv followed by separate
element-wise passes (bench/). Everywhere else these functions are the plain PyTorch ops, so
the layers call them unconditionally and read like the architecture.

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


def runs_frame_by_frame(device: torch.device) -> bool:
    """True where a chunk is fastest decoded one latent frame at a time (CPUs, measured by bench/)."""
    return device.type == "cpu"
