"""An independent functional TAESDV written from ../shared/taesdv-format.md, for tests only.

It shares no code with taesdv_core: it reads the state dict by key and runs the documented
computation the plain way (parallel over time, memory = input shifted one frame later with a
zero first frame, concatenated on channels before each MemBlock's first conv).
"""
import torch
import torch.nn.functional as F

MEMBLOCKS = (3, 4, 5, 8, 9, 10, 13, 14, 15, 18)
UPSAMPLE_CONVS = (7, 12, 17)
ENCODER_BLOCKS = (1, 3, 4, 5, 7, 8, 9, 11, 12, 13)


def _conv(x, sd, key, stride=1):
    return F.conv2d(x, sd[key + ".weight"], sd.get(key + ".bias"), stride=stride, padding=1)


def _block(x, sd, key, memory=None):
    h = torch.cat([x, memory], 1) if memory is not None else x
    h = F.relu(_conv(h, sd, key + ".conv.0"))
    h = F.relu(_conv(h, sd, key + ".conv.2"))
    h = _conv(h, sd, key + ".conv.4")
    return F.relu(h + x)


def reference_decode(sd, latents):
    """latents (N, T, 4, h, w) -> frames (N, T, 3, 8h, 8w), unclamped."""
    n, t = latents.shape[:2]
    x = latents.reshape(n * t, *latents.shape[2:])
    x = torch.tanh(x / 3) * 3
    x = F.relu(_conv(x, sd, "decoder.1"))
    for i in range(3, 20):
        if i in MEMBLOCKS:
            seq = x.reshape(n, t, *x.shape[1:])
            past = torch.cat([torch.zeros_like(seq[:, :1]), seq[:, :-1]], 1).reshape(x.shape)
            x = _block(x, sd, f"decoder.{i}", past)
        elif i in (6, 11, 16):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        elif i in UPSAMPLE_CONVS:
            x = _conv(x, sd, f"decoder.{i}")
        elif i == 19:
            x = _conv(x, sd, "decoder.19")
    return x.reshape(n, t, *x.shape[1:])


def reference_encode(sd, frames):
    """frames (N, T, 3, H, W) -> latents (N, T, 4, H/8, W/8), each frame on its own."""
    n, t = frames.shape[:2]
    x = frames.reshape(n * t, *frames.shape[2:])
    x = _conv(x, sd, "encoder.0")
    for i in range(1, 15):
        if i in ENCODER_BLOCKS:
            x = _block(x, sd, f"encoder.{i}")
        elif i in (2, 6, 10):
            x = _conv(x, sd, f"encoder.{i}", stride=2)
        elif i == 14:
            x = _conv(x, sd, "encoder.14")
    return x.reshape(n, t, *x.shape[1:])


def official_layout_state_dict(seed=0, dtype=torch.float32):
    """Random weights with exactly the official taesdv.pth keys and shapes (134 tensors).

    Scaled so activations stay O(1) through the 19 layers, like trained weights.
    """
    g = torch.Generator().manual_seed(seed)
    shapes = {}
    shapes["encoder.0.weight"], shapes["encoder.0.bias"] = (64, 3, 3, 3), (64,)
    for i in ENCODER_BLOCKS:
        for j in (0, 2, 4):
            shapes[f"encoder.{i}.conv.{j}.weight"], shapes[f"encoder.{i}.conv.{j}.bias"] = (64, 64, 3, 3), (64,)
    for i in (2, 6, 10):
        shapes[f"encoder.{i}.weight"] = (64, 64, 3, 3)
    shapes["encoder.14.weight"], shapes["encoder.14.bias"] = (4, 64, 3, 3), (4,)
    shapes["decoder.1.weight"], shapes["decoder.1.bias"] = (64, 4, 3, 3), (64,)
    for i in MEMBLOCKS:
        shapes[f"decoder.{i}.conv.0.weight"], shapes[f"decoder.{i}.conv.0.bias"] = (64, 128, 3, 3), (64,)
        for j in (2, 4):
            shapes[f"decoder.{i}.conv.{j}.weight"], shapes[f"decoder.{i}.conv.{j}.bias"] = (64, 64, 3, 3), (64,)
    for i in UPSAMPLE_CONVS:
        shapes[f"decoder.{i}.weight"] = (64, 64, 3, 3)
    shapes["decoder.19.weight"], shapes["decoder.19.bias"] = (3, 64, 3, 3), (3,)
    sd = {}
    for k, shape in shapes.items():
        if len(shape) == 4:
            fan_in = shape[1] * 9
            sd[k] = (torch.randn(shape, generator=g) * (1.0 / fan_in) ** 0.5).to(dtype)
        else:
            sd[k] = (torch.randn(shape, generator=g) * 0.05).to(dtype)
    return sd
