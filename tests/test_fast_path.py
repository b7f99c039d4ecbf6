"""The CPU speed path is one function, fused_ops.fast_path: the models list their layers as the
papers do, and it finds the patterns it speeds up wherever they are, computing the same."""
import functools

import pytest
import torch
import torch.nn as nn

import toy_family
from taesdv_core.fast_latent_decoders import TAE192Decoder
from taesdv_core.fused_ops import conv_relu, fast_path, upsampled_conv, upsampled_conv_pair
from taesdv_core.layers import run_with_memory
from taesdv_core.model import TAESDVDecoder
from taesdv_core.taehv import TAEHVDecoder, TAEHVSuperDecoder
from taesdv_core.taesd import TAESDDecoder

DECODERS = {
    "TAESDV": TAESDVDecoder,
    "TAESD": lambda: TAESDDecoder(4),
    "TAEF2 (pooled)": lambda: TAESDDecoder(32, pooled=True),
    "TAEHV": lambda: TAEHVDecoder(16, 1),
    "TAEHV lighttae": lambda: TAEHVDecoder(32, 2, leaky=True),
    "TAEHV without space upscaling": lambda: TAEHVDecoder(16, 1, space_upscale=False),
    "TAEHV Super": lambda: TAEHVSuperDecoder(48, 2),
    "TAE-192": lambda: TAE192Decoder().layers,
    "TAE-Toy": toy_family.ToyDecoder,
}


def kernel(step) -> str:
    return step.func.__name__ if isinstance(step, functools.partial) else type(step).__name__


def random_weights(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * ((1.0 / (p.shape[1] * 9)) ** 0.5 if p.ndim == 4 else 0.05))
    return model.to(memory_format=torch.channels_last).eval().requires_grad_(False)


def test_the_official_layer_list_becomes_fused_kernels():
    steps = [kernel(s) for s in fast_path(TAEHVDecoder(16, 1))]
    # conv, ReLU -> conv_relu; Upsample, TGrow, conv -> TGrow, upsampled_conv; the last
    # Upsample, TGrow, conv, ReLU, final conv -> TGrow, upsampled_conv_pair
    assert steps == ["Clamp", "conv_relu", *["MemBlock"] * 3, "TGrow", "upsampled_conv",
                     *["MemBlock"] * 3, "TGrow", "upsampled_conv", *["MemBlock"] * 3, "TGrow", "upsampled_conv_pair"]
    assert [kernel(s) for s in fast_path(TAESDVDecoder())] == [
        "Clamp", "conv_relu", *(["MemBlock"] * 3 + ["upsampled_conv"]) * 3, "MemBlock", "Conv2d"]


def test_the_model_itself_keeps_the_official_layers_and_keys():
    decoder = TAEHVDecoder(16, 1)
    names = [type(layer).__name__ for layer in decoder]
    assert names[:3] == ["Clamp", "Conv2d", "ReLU"] and names[6:9] == ["Upsample", "TGrow", "Conv2d"]
    fast_path(decoder)
    assert [type(layer).__name__ for layer in decoder] == names
    assert "22.weight" in decoder.state_dict() and "8.weight" in decoder.state_dict()


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_the_fast_path_computes_what_the_listed_layers_compute(name, dtype):
    layers = random_weights(DECODERS[name]()).to(dtype)
    channels = next(m for m in layers.modules() if isinstance(m, nn.Conv2d)).in_channels
    x = torch.randn(3, channels, 5, 4, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected, _ = run_with_memory(list(layers), x, None, 3)
        got, _ = run_with_memory(fast_path(layers), x, None, 3)
    fused = [kernel(s) for s in fast_path(layers)]
    assert any(k in fused for k in (conv_relu.__name__, upsampled_conv.__name__, upsampled_conv_pair.__name__))
    assert not any(isinstance(s, nn.Upsample) and s.mode == "nearest" for s in fast_path(layers))
    tolerance = 1e-5 if dtype == torch.float32 else 3e-2
    assert got.shape == expected.shape
    assert ((got.float() - expected.float()).norm() / expected.float().norm()).item() < tolerance
