"""The CPU speed path, in one place: oneDNN kernels that fuse a conv with its add and ReLU,
and the 3x3 conv after a nearest 2x upsampling run at the lower resolution.

`fast_path(layers)` applies it to a model: the models list their layers as the papers do
(`conv, ReLU`, `Upsample(2), conv`), and it finds those patterns and returns callables that
compute the same with the kernels below. Blocks call `conv_relu` / `conv_add_relu` themselves.

On CPUs (fp32/bf16, channels_last tensors) `torch.ops.mkldnn._convolution_pointwise` runs
conv+ReLU and conv+add+ReLU in one pass, about 25% faster than a conv followed by separate
element-wise passes (bench/). `upsampled_conv` computes conv(upsample(x)) as four 2x2 convs on x
(4/9 of the multiply-adds, no upsampled copy); `upsampled_conv_pair` also runs the conv after it
on those four phases, so TAEHV's full-size last activation is never built. Everywhere else
these functions are the plain PyTorch ops, so the layers call them unconditionally and read
like the architecture.

Also decided here: whether a chunk runs frame by frame (CPUs: oneDNN's batch-1 convolutions
are the fastest per frame and a frame's activations stay in cache) or as one batch (GPUs).
"""
from __future__ import annotations

import functools
import itertools
from typing import Callable, Iterable

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


def _splits_into_phases(conv: nn.Conv2d) -> bool:
    """A plain 3x3 conv (padding 1 with zeros, stride 1, no dilation or groups)."""
    return (conv.kernel_size == (3, 3) and conv.padding == (1, 1) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def _phase_weights(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The oneDNN kernels and bias of conv's four phases, for _phase_outputs."""
    kernels = _phase_kernels(conv.weight).contiguous(memory_format=torch.channels_last)
    return kernels, None if conv.bias is None else conv.bias.repeat(4)


def _phase_outputs(x: torch.Tensor, weights: tuple, relu: bool) -> torch.Tensor:
    """A conv of a nearest 2x upsampled image, as its four phases: (1, C, h, w) ->
    (1, 4K, h + 1, w + 1); output pixel (2i + a, 2j + b) is phase (a, b) at [i + a, j + b]."""
    kernels, bias = weights
    return torch.ops.mkldnn._convolution_pointwise(
        x, kernels, bias, [1, 1], [1, 1], [1, 1], 1, "relu" if relu else "none", [None], "")


def upsampled_conv(conv: nn.Conv2d, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """conv(nearest 2x upsampling of x), then ReLU if `relu`: (N, C, h, w) -> (N, K, 2h, 2w).

    For a plain 3x3 conv on CPUs: one oneDNN conv of the four phase kernels (padding 1, so
    output (h+1) x (w+1)) on x itself, then each phase is copied into its rows and columns of
    the output. That output is channels_last; elsewhere it keeps PyTorch's layout.
    """
    if _splits_into_phases(conv) and _fusable(conv, x):
        n, _, h, w = x.shape
        k = conv.out_channels
        out = torch.empty((n, k, 2 * h, 2 * w), dtype=x.dtype, device=x.device,
                          memory_format=torch.channels_last)
        grid = out.view(n, k, h, 2, w, 2)
        weights = _phase_weights(conv)
        for i in range(n):  # one image at a time: a batch's phase outputs would be as large as `out`
            phases = _phase_outputs(x[i:i + 1], weights, relu)
            for a in (0, 1):
                for b in (0, 1):
                    p = 2 * a + b
                    grid[i:i + 1, :, :, a, :, b].copy_(phases[:, p * k:(p + 1) * k, a:a + h, b:b + w])
        return out
    y = conv._conv_forward(F.interpolate(x, scale_factor=2, mode="nearest"), conv.weight, conv.bias)
    return F.relu_(y) if relu else y


def _conv_on_phases_kernels(weight: torch.Tensor) -> torch.Tensor:
    """(K, C, 3, 3) -> (4K, 4C, 2, 2): a 3x3 conv of a full-resolution image, as a 2x2 conv of
    its four phases (each as _phase_outputs lays them out, borders outside the image zero).
    Output phase (p, q) at [i, j] is full-resolution pixel (2i + p, 2j + q); the input pixel
    dy rows away is phase a = (p + dy) mod 2 at row i + u with dy = 2u - a - p (columns
    likewise), so each 2x2 tap (u, v) of input phase (a, b) holds weight[..., dy + 1, dx + 1]
    where both offsets lie in -1..1, and zero elsewhere. Channels in phase order, K or C each."""
    k, c = weight.shape[:2]
    out = weight.new_zeros(2, 2, k, 2, 2, c, 2, 2)  # (p, q, K, a, b, C, u, v)
    for p, q, a, b, u, v in itertools.product((0, 1), repeat=6):
        dy, dx = 2 * u - a - p, 2 * v - b - q
        if -1 <= dy <= 1 and -1 <= dx <= 1:
            out[p, q, :, a, b, :, u, v] = weight[:, :, dy + 1, dx + 1]
    return out.reshape(4 * k, 4 * c, 2, 2)


# Phase pixels per band of upsampled_conv_pair: 16 MiB of phases at 256 channels, fp32, whatever
# the frame size (a 720p frame's phases would be 237 MiB at once). Band size moves time by ~1%.
PAIR_BAND_PIXELS = 16384


def upsampled_conv_pair(first: nn.Conv2d, second: nn.Conv2d, x: torch.Tensor, relu: bool = False,
                        act: nn.Module | None = None) -> torch.Tensor:
    """second(act(first(nearest 2x upsampling of x))), with first's ReLU if `relu`:
    (N, C, h, w) -> (N, K, 2h, 2w), K = second.out_channels. `act` is element-wise or None.

    For plain 3x3 convs on CPUs the full-resolution activation between the two convs is never
    built: per image and band of rows, first's four phases (_phase_outputs), act, the phase
    pixels that fall outside the image (row -1 and 2h, column -1 and 2w) set to zero as
    second's padding, then second as one 2x2 conv of the phases (_conv_on_phases_kernels) and
    its K-channel phases copied into place. TAEHV's last stage ends so: with few output
    channels, the full-size conv is slow in oneDNN and its input is the decode's largest tensor.
    """
    if not (_splits_into_phases(first) and _splits_into_phases(second) and _fusable(first, x)):
        y = upsampled_conv(first, x, relu)
        return second(y if act is None else act(y))
    n, _, h, w = x.shape
    k = second.out_channels
    kernels = _conv_on_phases_kernels(second.weight).contiguous(memory_format=torch.channels_last)
    bias = None if second.bias is None else second.bias.repeat(4)
    out = torch.empty((n, k, 2 * h, 2 * w), dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last)
    grid = out.view(n, k, h, 2, w, 2)
    first_weights = _phase_weights(first)
    band = max(1, PAIR_BAND_PIXELS // (w + 1))
    for i in range(n):
        for r0 in range(0, h, band):
            r1 = min(h, r0 + band)
            # phase rows r0..r1 (second reads rows I and I + 1 for its row I) need input rows r0-1..r1
            top, bottom = max(0, r0 - 1), min(h, r1 + 1)
            phases = _phase_outputs(x[i:i + 1, :, top:bottom], first_weights, relu)[:, :, r0 - top:r1 + 1 - top]
            if act is not None:
                phases = act(phases)
            by_phase = phases.view(2, 2, first.out_channels, r1 - r0 + 1, w + 1)  # a view: channels_last
            if r0 == 0:
                by_phase[1, :, :, 0].zero_()   # row -1
            if r1 == h:
                by_phase[0, :, :, -1].zero_()  # row 2h
            by_phase[:, 1, :, :, 0].zero_()    # column -1
            by_phase[:, 0, :, :, w].zero_()    # column 2w
            result = torch.ops.mkldnn._convolution_pointwise(
                phases, kernels, bias, [0, 0], [1, 1], [1, 1], 1, "none", [None], "").view(2, 2, k, r1 - r0, w)
            for p in (0, 1):
                for q in (0, 1):
                    grid[i, :, r0:r1, p, :, q].copy_(result[p, q])
    return out


def runs_frame_by_frame(device: torch.device) -> bool:
    """True where a chunk is fastest decoded one latent frame at a time (CPUs, measured by bench/)."""
    return device.type == "cpu"


# ---------------------------------------------------------------------------------------------
# Applying the speed path to a model's layers
# ---------------------------------------------------------------------------------------------

def _is_upsample(layer, factor: float) -> bool:
    return (isinstance(layer, nn.Upsample) and layer.mode == "nearest" and layer.size is None
            and float(layer.scale_factor) == factor)


def _commutes_with_upsampling(layer) -> bool:
    """Layers that act on each pixel alone (TAEHV's TGrow, a 1x1 conv over time) declare it:
    they may run before a nearest upsampling instead of after it, on 4x fewer pixels."""
    return getattr(layer, "pointwise_in_space", False)


def _is_conv(layer) -> bool:
    return type(layer) is nn.Conv2d


def fast_path(layers: Iterable) -> list[Callable]:
    """A model's layers (an nn.Sequential or list, as the paper lists them) -> callables that
    compute the same, in order, with the CPU kernels of this module (which fall back to plain
    PyTorch elsewhere). The patterns, found wherever they occur:

    - `Upsample(2, nearest), [pixel-wise layers], 3x3 conv[, ReLU]`: the pixel-wise layers
      first, then `upsampled_conv` (no upsampled copy; ReLU fused);
    - that, then an element-wise activation (or the fused ReLU) and another 3x3 conv:
      `upsampled_conv_pair` (the full-size activation between them is never built);
    - `conv, ReLU`: `conv_relu`; `Upsample(1)`: dropped.

    Everything else (blocks with memory, TGrow, PixelShuffle, ...) is passed on as it is, so
    run_with_memory still sees the MemBlocks and the time-scaling layers. The modules are not
    changed: their weights and state-dict keys stay the official ones.
    """
    layers = list(layers)
    out: list[Callable] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        if _is_upsample(layer, 1.0):
            i += 1
            continue
        if _is_upsample(layer, 2.0):
            j = i + 1
            while j < len(layers) and _commutes_with_upsampling(layers[j]):
                j += 1
            if j < len(layers) and _is_conv(layers[j]) and _splits_into_phases(layers[j]):
                out += layers[i + 1:j]
                first = layers[j]
                relu = j + 1 < len(layers) and isinstance(layers[j + 1], nn.ReLU)
                k = j + 1 + relu
                act = layers[k] if k < len(layers) and isinstance(layers[k], (nn.ReLU, nn.LeakyReLU)) else None
                second_at = k + (act is not None)
                second = layers[second_at] if second_at < len(layers) else None
                if second is not None and _is_conv(second) and _splits_into_phases(second):
                    out.append(functools.partial(upsampled_conv_pair, first, second, relu=relu, act=act))
                    i = second_at + 1
                else:
                    out.append(functools.partial(upsampled_conv, first, relu=relu))
                    i = k
                continue
        if _is_conv(layer) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU):
            out.append(functools.partial(conv_relu, layer))
            i += 2
            continue
        out.append(layer)
        i += 1
    return out
