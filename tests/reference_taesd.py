"""An independent functional image TAESD, written from the published taesd.py of madebyollin/taesd
(commit 5cccb12, "Add support for FLUX.2 VAE"), for tests only.

It shares no code with taesdv_core: the file layout is spelled out here as key -> shape and
checked strictly (as the official `load_state_dict` does), and the computation is the official
Sequential run the plain way:

- Block(n): [x = x + pool(x) when the block has a pool]; relu(conv3(relu(conv3(relu(conv3(x))))) + x).
  pool (FLUX.2's "midblock GN"): 1x1 conv 64 -> 256 (no bias), GroupNorm(4, 256), ReLU,
  1x1 conv 256 -> 64 (no bias).
- Encoder: conv(3, 64), Block, then 3 x (stride-2 conv without bias, 3 Blocks), conv(64, C);
  the last three Blocks (11, 12, 13) have pools in taef2.
- Decoder: tanh(x / 3) * 3, conv(C, 64), ReLU, 3 Blocks (3, 4, 5: pools in taef2), then
  3 x (nearest 2x upsample, conv without bias, Blocks), conv(64, 3); output unclamped.
"""
import torch
import torch.nn.functional as F

WIDTH = 64
ENCODER_BLOCKS = (1, 3, 4, 5, 7, 8, 9, 11, 12, 13)
ENCODER_DOWNSAMPLES = (2, 6, 10)
ENCODER_POOLED = (11, 12, 13)
DECODER_STAGES = ((3, 4, 5), (8, 9, 10), (13, 14, 15), (18,))  # blocks after conv 1, then after each upsampled conv
DECODER_UPSAMPLED_CONVS = (7, 12, 17)
DECODER_POOLED = (3, 4, 5)


def layout(part, latent_channels, pooled):
    """{key: shape} of the official `{variant}_{part}.pth` (no prefix)."""
    shapes = {}

    def block(i, with_pool):
        for j in (0, 2, 4):
            shapes[f"{i}.conv.{j}.weight"], shapes[f"{i}.conv.{j}.bias"] = (WIDTH, WIDTH, 3, 3), (WIDTH,)
        if with_pool:
            shapes[f"{i}.pool.0.weight"] = (4 * WIDTH, WIDTH, 1, 1)
            shapes[f"{i}.pool.1.weight"], shapes[f"{i}.pool.1.bias"] = (4 * WIDTH,), (4 * WIDTH,)
            shapes[f"{i}.pool.3.weight"] = (WIDTH, 4 * WIDTH, 1, 1)

    if part == "encoder":
        shapes["0.weight"], shapes["0.bias"] = (WIDTH, 3, 3, 3), (WIDTH,)
        for i in ENCODER_BLOCKS:
            block(i, pooled and i in ENCODER_POOLED)
        for i in ENCODER_DOWNSAMPLES:
            shapes[f"{i}.weight"] = (WIDTH, WIDTH, 3, 3)
        shapes["14.weight"], shapes["14.bias"] = (latent_channels, WIDTH, 3, 3), (latent_channels,)
    else:
        shapes["1.weight"], shapes["1.bias"] = (WIDTH, latent_channels, 3, 3), (WIDTH,)
        for i in (b for stage in DECODER_STAGES for b in stage):
            block(i, pooled and i in DECODER_POOLED)
        for i in DECODER_UPSAMPLED_CONVS:
            shapes[f"{i}.weight"] = (WIDTH, WIDTH, 3, 3)
        shapes["19.weight"], shapes["19.bias"] = (3, WIDTH, 3, 3), (3,)
    return shapes


def check_layout(sd, part, latent_channels, pooled):
    """Raise AssertionError unless `sd` has exactly the official keys and shapes."""
    expected = layout(part, latent_channels, pooled)
    got = {k: tuple(v.shape) for k, v in sd.items()}
    assert got.keys() == expected.keys(), (sorted(got.keys() - expected.keys()), sorted(expected.keys() - got.keys()))
    wrong = {k: (got[k], s) for k, s in expected.items() if got[k] != s}
    assert not wrong, wrong


def _conv(x, sd, key, stride=1):
    w = sd[key + ".weight"]
    return F.conv2d(x, w, sd.get(key + ".bias"), stride=stride, padding=w.shape[-1] // 2)


def _block(x, sd, i):
    if f"{i}.pool.0.weight" in sd:
        h = F.conv2d(x, sd[f"{i}.pool.0.weight"])
        h = F.relu(F.group_norm(h, 4, sd[f"{i}.pool.1.weight"], sd[f"{i}.pool.1.bias"]))
        x = x + F.conv2d(h, sd[f"{i}.pool.3.weight"])
    h = F.relu(_conv(x, sd, f"{i}.conv.0"))
    h = F.relu(_conv(h, sd, f"{i}.conv.2"))
    return F.relu(_conv(h, sd, f"{i}.conv.4") + x)


def reference_encode(sd, images):
    """images (B, 3, H, W) in [0, 1] -> latents (B, C, H/8, W/8); pools where the file has them."""
    x = _conv(images, sd, "0")
    x = _block(x, sd, 1)
    for down in ENCODER_DOWNSAMPLES:
        x = _conv(x, sd, str(down), stride=2)
        for i in range(down + 1, down + 4):
            x = _block(x, sd, i)
    return _conv(x, sd, "14")


def reference_decode(sd, latents):
    """latents (B, C, h, w) -> images (B, 3, 8h, 8w), unclamped; pools where the file has them."""
    x = torch.tanh(latents / 3) * 3
    x = F.relu(_conv(x, sd, "1"))
    for i in DECODER_STAGES[0]:
        x = _block(x, sd, i)
    for up, blocks in zip(DECODER_UPSAMPLED_CONVS, DECODER_STAGES[1:]):
        x = _conv(F.interpolate(x, scale_factor=2, mode="nearest"), sd, str(up))
        for i in blocks:
            x = _block(x, sd, i)
    return _conv(x, sd, "19")
