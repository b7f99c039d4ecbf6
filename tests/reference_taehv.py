"""An independent functional TAEHV written from ../shared/tae-family.md (section 2), tests only.

It shares no code with taesdv_core: the layouts are spelled out here as key -> shape, and the
computation runs the plain way (parallel over time; before each memory block its input
shifted one frame later with a zero first frame, concatenated on channels; TGrow reshapes
(NT, s*n, H, W) -> (NT*s, n, H, W); TPool reshapes (NT, n, H, W) -> (NT/s, s*n, H, W)).
"""
import math

import torch
import torch.nn.functional as F

# variant name -> (latent channels, patch, super, decoder time strides, encoder time strides)
VARIANTS = {
    "wan2_1": (16, 1, False, (1, 2, 2), (2, 2, 1)),
    "wan2_2": (48, 2, False, (1, 2, 2), (2, 2, 1)),
    "hv1_5": (32, 2, False, (1, 2, 2), (2, 2, 1)),
    "ltx": (128, 4, False, (2, 2, 2), (2, 2, 2)),
    "wan2_2_super": (48, 2, True, (1, 2, 2), (2, 2, 1)),
    "hv1_5_super": (32, 2, True, (1, 2, 2), (2, 2, 1)),
}
BASE_MEM = {3: 256, 4: 256, 5: 256, 9: 128, 10: 128, 11: 128, 15: 64, 16: 64, 17: 64}
SUPER_MEM = {1: 512, 2: 512, 3: 512, 8: 256, 9: 256, 10: 256, 15: 128, 16: 128, 17: 128}
ENC_MEM = (4, 5, 6, 9, 10, 11, 14, 15, 16)


def layout(variant):
    """{key: shape} of the official layout of `variant` (decoder and encoder in one file)."""
    c, p, sup, dt, et = VARIANTS[variant]
    shapes = {}

    def memblock(prefix, n):
        shapes.update({f"{prefix}.conv.0.weight": (n, 2 * n, 3, 3), f"{prefix}.conv.0.bias": (n,),
                       f"{prefix}.conv.2.weight": (n, n, 3, 3), f"{prefix}.conv.2.bias": (n,),
                       f"{prefix}.conv.4.weight": (n, n, 3, 3), f"{prefix}.conv.4.bias": (n,)})

    if sup:
        shapes["decoder.0.weight"] = (512, c, 1, 1)
        for i, n in SUPER_MEM.items():
            shapes.update({f"decoder.{i}.conv.0.weight": (2 * n, 1, 7, 7),
                           f"decoder.{i}.conv.1.weight": (4 * n, 2 * n, 1, 1), f"decoder.{i}.conv.1.bias": (4 * n,),
                           f"decoder.{i}.conv.3.weight": (n, 4 * n, 1, 1)})
        for (i, n_in, n_out), s in zip(((4, 512, 256), (11, 256, 128), (18, 128, 64)), dt):
            shapes[f"decoder.{i}.weight"] = (4 * n_out, n_in, 3, 3)
            shapes[f"decoder.{i}.bias"] = (4 * n_out,)
            shapes[f"decoder.{i + 3}.conv.weight"] = (n_out * s, n_out, 1, 1)
    else:
        shapes["decoder.1.weight"], shapes["decoder.1.bias"] = (256, c, 3, 3), (256,)
        for i, n in BASE_MEM.items():
            memblock(f"decoder.{i}", n)
        for (i, n), s in zip(((7, 256), (13, 128), (19, 64)), dt):
            shapes[f"decoder.{i}.conv.weight"] = (n * s, n, 1, 1)
        shapes["decoder.8.weight"], shapes["decoder.14.weight"] = (128, 256, 3, 3), (64, 128, 3, 3)
        shapes["decoder.20.weight"] = (64, 64, 3, 3)
    shapes["decoder.22.weight"], shapes["decoder.22.bias"] = (3 * p * p, 64, 3, 3), (3 * p * p,)
    shapes["encoder.0.weight"], shapes["encoder.0.bias"] = (64, 3 * p * p, 3, 3), (64,)
    for i, s in zip((2, 7, 12), et):
        shapes[f"encoder.{i}.conv.weight"] = (64, 64 * s, 1, 1)
        shapes[f"encoder.{i + 1}.weight"] = (64, 64, 3, 3)
    for i in ENC_MEM:
        memblock(f"encoder.{i}", 64)
    shapes["encoder.17.weight"], shapes["encoder.17.bias"] = (c, 64, 3, 3), (c,)
    return shapes


def random_state_dict(variant, seed=0, dtype=torch.float32):
    """Random weights of the official layout, scaled (1/sqrt(fan_in)) so activations stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in layout(variant).items():
        if len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            sd[key] = torch.randn(shape, generator=g) * (1.0 / fan_in) ** 0.5
        else:
            sd[key] = torch.randn(shape, generator=g) * 0.05
    return {k: v.to(dtype) for k, v in sd.items()}


def _conv(x, sd, key, stride=1, groups=1):
    w = sd[key + ".weight"]
    return F.conv2d(x, w, sd.get(key + ".bias"), stride=stride, padding=w.shape[-1] // 2, groups=groups)


def _past(x, n):
    """Each clip's frames shifted one later in time, zeros first: (N*T, C, H, W) -> same."""
    seq = x.reshape(n, -1, *x.shape[1:])
    return torch.cat([torch.zeros_like(seq[:, :1]), seq[:, :-1]], 1).reshape(x.shape)


def _memblock(x, sd, key, n, act):
    h = act(_conv(torch.cat([x, _past(x, n)], 1), sd, key + ".conv.0"))
    h = act(_conv(h, sd, key + ".conv.2"))
    return act(_conv(h, sd, key + ".conv.4") + x)


def _super_memblock(x, sd, key, n):
    h = torch.cat([x, _past(x, n)], 1)
    h = F.conv2d(h, sd[key + ".conv.0.weight"], padding=3, groups=h.shape[1])
    h = F.relu(_conv(h, sd, key + ".conv.1"))
    return _conv(h, sd, key + ".conv.3") + x


def _tgrow(x, sd, key, s):
    w = sd[key + ".weight"][-s * x.shape[1]:]  # a wider file keeps its LAST n*s outputs
    y = F.conv2d(x, w)
    return y.reshape(-1, x.shape[1], *x.shape[2:])


def reference_decode(sd, latents, leaky=False, time_upscale=True, space_upscale=True, trim=True):
    """latents (N, T, C, h, w) -> frames (N, t_up*T - (t_up-1), 3, H, W), unclamped, trimmed
    (trim=False keeps all t_up*T frames, as the reference does for CogVideoX clips of even T).

    leaky: LeakyReLU(0.2) everywhere (lighttae); the raw output is returned (no range map).
    The variant is read from the tensors: super if decoder.0.weight exists, time strides from
    the TGrow conv widths, patch from the final conv.
    """
    n = latents.shape[0]
    act = (lambda t: F.leaky_relu(t, 0.2)) if leaky else F.relu
    x = latents.reshape(-1, *latents.shape[2:])
    p = int(math.isqrt(sd["decoder.22.weight"].shape[0] // 3))
    up = (lambda t: F.interpolate(t, scale_factor=2, mode="nearest")) if space_upscale else (lambda t: t)
    t_up = 1
    if "decoder.0.weight" in sd:  # super
        x = F.conv2d(x, sd["decoder.0.weight"])
        for blocks, upconv, grow, width in (((1, 2, 3), 4, 7, 256), ((8, 9, 10), 11, 14, 128), ((15, 16, 17), 18, 21, 64)):
            for i in blocks:
                x = _super_memblock(x, sd, f"decoder.{i}", n)
            x = F.pixel_shuffle(F.relu(_conv(x, sd, f"decoder.{upconv}")), 2)
            s = sd[f"decoder.{grow}.conv.weight"].shape[0] // width if time_upscale else 1
            x, t_up = _tgrow(x, sd, f"decoder.{grow}.conv", s), t_up * s
    else:
        x = act(_conv(torch.tanh(x / 3) * 3, sd, "decoder.1"))
        for blocks, grow, width, after in (((3, 4, 5), 7, 256, 8), ((9, 10, 11), 13, 128, 14), ((15, 16, 17), 19, 64, 20)):
            for i in blocks:
                x = _memblock(x, sd, f"decoder.{i}", n, act)
            s = sd[f"decoder.{grow}.conv.weight"].shape[0] // width if time_upscale else 1
            x, t_up = _tgrow(up(x), sd, f"decoder.{grow}.conv", s), t_up * s
            x = _conv(x, sd, f"decoder.{after}")
        x = act(x)
    x = _conv(x, sd, "decoder.22")
    if p > 1:
        x = F.pixel_shuffle(x, p)
    x = x.reshape(n, -1, *x.shape[1:])
    return x[:, t_up - 1:] if trim else x


def reference_encode(sd, frames):
    """frames (N, T, 3, H, W) in [0, 1] -> latents (N, ceil(T / t_down), C, H/8p, W/8p).

    T is padded at the end with copies of the last frame to a multiple of t_down (the product
    of the TPool strides, read from encoder.{2,7,12}.conv.weight).
    """
    n = frames.shape[0]
    p = int(math.isqrt(sd["encoder.0.weight"].shape[1] // 3))
    strides = [sd[f"encoder.{i}.conv.weight"].shape[1] // 64 for i in (2, 7, 12)]
    t_down = math.prod(strides)
    if frames.shape[1] % t_down:
        pad = t_down - frames.shape[1] % t_down
        frames = torch.cat([frames, frames[:, -1:].repeat(1, pad, 1, 1, 1)], 1)
    x = frames.reshape(-1, *frames.shape[2:])
    if p > 1:
        x = F.pixel_unshuffle(x, p)
    x = F.relu(_conv(x, sd, "encoder.0"))
    for pool, s in zip((2, 7, 12), strides):
        x = F.conv2d(x.reshape(-1, s * x.shape[1], *x.shape[2:]), sd[f"encoder.{pool}.conv.weight"])
        x = _conv(x, sd, f"encoder.{pool + 1}", stride=2)
        for i in range(pool + 2, pool + 5):
            x = _memblock(x, sd, f"encoder.{i}", n, F.relu)
    x = _conv(x, sd, "encoder.17")
    return x.reshape(n, -1, *x.shape[1:])
