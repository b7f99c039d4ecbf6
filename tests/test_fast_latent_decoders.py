"""TAE-192 and DecoderTinyTemporal equal diffusers' own modules (AutoencoderTiny, DecoderTiny,
MidBlockTemporalDecoder) on random weights, loaded from diffusers' state-dict layout."""
import math

import pytest
import torch

from helpers import set_frame_by_frame
from taesdv_core import CheckpointError, decode
from taesdv_core.fast_latent_decoders import FAMILY, TAE192Decoder, TemporalTAEDecoder, fast_decoder_from_state_dict
from taesdv_core.family import NoMatch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the test-only reference here "
                                "(scripts/setup-host.sh installs it with the test tools)")
from diffusers import AutoencoderTiny  # noqa: E402
from diffusers.models.autoencoders.vae import DecoderTiny  # noqa: E402
from diffusers.models.unets.unet_3d_blocks import MidBlockTemporalDecoder  # noqa: E402


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:  # biases and the time mixer's mix_factor
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return module.eval()


class DiffusersTemporal(torch.nn.Module):
    """The seed's DecoderTinyTemporal (how_to_add_decoder_temporal.py) built from diffusers'
    modules: DecoderTiny's layers, with MidBlockTemporalDecoder after layer 6."""

    def __init__(self):
        super().__init__()
        tiny = DecoderTiny(in_channels=4, out_channels=3, num_blocks=(3, 2, 2, 1), block_out_channels=(192,) * 4,
                           upsampling_scaling_factor=2, act_fn="relu", upsample_fn="bilinear")
        self.layers = tiny.layers
        self.mid_block = MidBlockTemporalDecoder(num_layers=2, in_channels=192, out_channels=192,
                                                 attention_head_dim=96)

    def forward(self, x, num_frames):
        x = torch.tanh(x / 3) * 3
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == 6:
                indicator = torch.zeros(x.shape[0] // num_frames, num_frames, dtype=x.dtype)
                x = self.mid_block(x, image_only_indicator=indicator)
        return x.mul(2).sub(1)


@pytest.fixture(scope="module")
def tae192():
    return randomize(AutoencoderTiny(decoder_block_out_channels=(192,) * 4), seed=0)


@pytest.fixture(scope="module")
def temporal():
    return randomize(DiffusersTemporal(), seed=1)


def test_tae192_loads_autoencoder_tiny_file_and_equals_its_decode(tae192):
    sd = tae192.state_dict()  # encoder.* and decoder.layers.*: an AutoencoderTiny file
    assert FAMILY.match(sd, "x.safetensors").variant == "tae192"
    ours = fast_decoder_from_state_dict(sd, "ex_v6.pth")
    assert isinstance(ours, TAE192Decoder)
    latents = 2 * torch.randn(2, 5, 4, 6, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = tae192.decode(latents.flatten(0, 1)).sample.unflatten(0, (2, 5))
    for chunk in (1, 2, 5):
        got = decode(ours, latents, chunk_frames=chunk, clamp=False)
        assert got.shape == (2, 5, 3, 48, 40)
        assert rel_err(got, expected) < 1e-5, chunk


def test_tae192_bare_decoder_layout_loads_too(tae192):
    sd = {k[len("decoder."):]: v for k, v in tae192.state_dict().items() if k.startswith("decoder.")}
    assert isinstance(fast_decoder_from_state_dict(sd), TAE192Decoder)


@pytest.mark.parametrize("frames", [8, 13, 17])
def test_temporal_equals_diffusers_in_windows_of_8(temporal, frames, monkeypatch):
    """The reference decodes like the seed's SVD example: chunks of 8 frames, each one window
    (num_frames = frames in the chunk); ours decodes whole clips in engine chunks that are
    multiples of the window (the GPU path: chunks as batches)."""
    set_frame_by_frame(monkeypatch, False)
    ours = fast_decoder_from_state_dict(temporal.state_dict(), "tae_temp.pth")
    assert isinstance(ours, TemporalTAEDecoder) and ours.chunk_multiple == 8
    latents = 2 * torch.randn(1, frames, 4, 4, 3, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        expected = torch.cat([temporal(c, num_frames=c.shape[0]) for c in latents[0].split(8)]).unsqueeze(0)
    for chunk in (8, 16, None):
        got = decode(ours, latents, chunk_frames=chunk, clamp=False)
        assert got.shape == (1, frames, 3, 32, 24)
        assert rel_err(got, expected) < 1e-5, chunk


def test_temporal_window_really_mixes_frames(temporal):
    """Changing one frame changes the others in its window, not those of the next window."""
    ours = fast_decoder_from_state_dict(temporal.state_dict())
    latents = torch.randn(1, 16, 4, 3, 3)
    changed = latents.clone()
    changed[0, 2] += 1
    with torch.no_grad():
        a, b = ours.forward_chunk(latents)[0], ours.forward_chunk(changed)[0]
    diff = (a - b).abs().amax(dim=(2, 3, 4))[0]
    assert diff[:8].min() > 0 and diff[8:].max() == 0


def test_temporal_several_clips_are_independent(temporal):
    ours = fast_decoder_from_state_dict(temporal.state_dict())
    latents = torch.randn(2, 8, 4, 3, 4)
    with torch.no_grad():
        both = ours.forward_chunk(latents)[0]
        alone = ours.forward_chunk(latents[1:])[0]
    assert rel_err(both[1:], alone) < 1e-5


def test_strict_checks():
    sd = TemporalTAEDecoder().state_dict()
    del sd["mid_block.resnets.1.time_mixer.mix_factor"]
    with pytest.raises(CheckpointError, match="mix_factor"):
        fast_decoder_from_state_dict(sd, "broken.pth")
    with pytest.raises(CheckpointError, match="not a TAE-192"):
        fast_decoder_from_state_dict({"1.weight": torch.zeros(64, 4, 3, 3)}, "taesd_decoder.pth")
    assert isinstance(FAMILY.match({"decoder.layers.0.weight": torch.zeros(64, 4, 3, 3)}, "x.pth"), NoMatch)
