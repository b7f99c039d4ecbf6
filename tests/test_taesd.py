"""Image TAESD decoders and encoders equal the host's own implementation (the ComfyUI under test,
comfy/taesd/taesd.py) on random weights, through the one engine, for every chunking; taef2
(which the host lacks) equals a functional reference written from the documented layout."""
import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F

from comfy_host import COMFYUI as HOST  # the host under test (TAESDV_TEST_HOST)
from helpers import SAME_FRAMES, frames_to_match, set_frame_by_frame
from taesdv_core import CheckpointError, decode, encode
from taesdv_core.family import Match, NoMatch
from taesdv_core.families import FAMILIES, which_file_fits
from taesdv_core.loading import autoencoder_from_state_dict
from taesdv_core.taesd import FAMILY, VARIANTS, TAESDDecoder, TAESDEncoder, taesd_from_state_dict

HOST_VARIANTS = ["taesd", "taesdxl", "taesd3", "taef1"]


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def host_taesd():
    """The host's comfy.taesd.taesd module (CPU only, no argument parsing)."""
    if not os.path.isdir(os.path.join(HOST, "comfy", "taesd")):
        pytest.fail(f"no ComfyUI tree at {HOST}: run the tests through scripts/test.sh, which sets it up")
    if HOST not in sys.path:
        sys.path.append(HOST)  # appended: the host's top-level modules must not shadow ours
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.taesd.taesd as host

    return host


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights of a trained-like scale: each conv keeps its output's variance near its input's."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=g) * math.sqrt(1.0 / fan_in))
            elif "pool.1" in name and name.endswith("weight"):  # GroupNorm gain
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return module.eval()


def random_file(kind: str, part: str, seed: int = 0) -> dict:
    """A random state dict in the official file layout of `{kind}_{part}.pth` (no prefix)."""
    v = VARIANTS[kind]
    cls = TAESDDecoder if part == "decoder" else TAESDEncoder
    return randomize(cls(v.latent_channels, v.pooled), seed).state_dict()


# --- a functional reference from the documented layout (tae-family.md section 1) ---------------

def ref_block(sd, p, x, pooled=False):
    if pooled:
        h = F.conv2d(x, sd[p + "pool.0.weight"])
        h = F.relu(F.group_norm(h, 4, sd[p + "pool.1.weight"], sd[p + "pool.1.bias"]))
        x = x + F.conv2d(h, sd[p + "pool.3.weight"])
    h = F.relu(F.conv2d(x, sd[p + "conv.0.weight"], sd[p + "conv.0.bias"], padding=1))
    h = F.relu(F.conv2d(h, sd[p + "conv.2.weight"], sd[p + "conv.2.bias"], padding=1))
    h = F.conv2d(h, sd[p + "conv.4.weight"], sd[p + "conv.4.bias"], padding=1)
    return F.relu(h + x)


def reference_decode(sd, x, pooled):
    """x (B, C, h, w) -> (B, 3, 8h, 8w): Clamp, conv, ReLU, 3 blocks (pooled in taef2), then
    3 x (upsample, conv without bias, blocks), final conv."""
    x = torch.tanh(x / 3) * 3
    x = F.relu(F.conv2d(x, sd["1.weight"], sd["1.bias"], padding=1))
    for i in (3, 4, 5):
        x = ref_block(sd, f"{i}.", x, pooled)
    for up, blocks in ((7, (8, 9, 10)), (12, (13, 14, 15)), (17, (18,))):
        x = F.conv2d(F.interpolate(x, scale_factor=2), sd[f"{up}.weight"], padding=1)
        for i in blocks:
            x = ref_block(sd, f"{i}.", x)
    return F.conv2d(x, sd["19.weight"], sd["19.bias"], padding=1)


def reference_encode(sd, x, pooled):
    x = F.conv2d(x, sd["0.weight"], sd["0.bias"], padding=1)
    x = ref_block(sd, "1.", x)
    for down, blocks in ((2, (3, 4, 5)), (6, (7, 8, 9)), (10, (11, 12, 13))):
        x = F.conv2d(x, sd[f"{down}.weight"], stride=2, padding=1)
        for i in blocks:
            x = ref_block(sd, f"{i}.", x, pooled and down == 10)
    return F.conv2d(x, sd["14.weight"], sd["14.bias"], padding=1)


# --- equality with the host -------------------------------------------------------------------

@pytest.mark.parametrize("kind", HOST_VARIANTS)
@pytest.mark.parametrize("frame_major", [False, True])
def test_decoder_equals_host_for_any_chunking(host_taesd, kind, frame_major, monkeypatch):
    set_frame_by_frame(monkeypatch, frame_major)
    v = VARIANTS[kind]
    host = randomize(host_taesd.Decoder(v.latent_channels), seed=1)
    _, ours, _ = taesd_from_state_dict(host.state_dict(), f"{kind}_decoder.pth")
    latents = 2 * torch.randn(2, 7, v.latent_channels, 5, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = host(latents.flatten(0, 1)).unflatten(0, (2, 7))
    for chunk in (1, 3, 7, None):
        got = decode(ours, latents, chunk_frames=chunk, clamp=False)
        assert got.shape == (2, 7, 3, 40, 48)
        assert rel_err(got, expected) < 1e-5, chunk


@pytest.mark.parametrize("kind", HOST_VARIANTS)
def test_encoder_equals_host_for_any_chunking(host_taesd, kind):
    v = VARIANTS[kind]
    host = randomize(host_taesd.Encoder(v.latent_channels), seed=3)
    ours, _, _ = taesd_from_state_dict(host.state_dict(), f"{kind}_encoder.safetensors")
    frames = torch.rand(1, 5, 3, 32, 40, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = host(frames[0]).unsqueeze(0)
    for chunk in (1, 2, 5):
        got = encode(ours, frames, chunk_frames=chunk)
        assert got.shape == (1, 5, v.latent_channels, 4, 5)
        assert rel_err(got, expected) < 1e-5, chunk


@pytest.mark.parametrize("kind", HOST_VARIANTS)
def test_latent_mapping_reproduces_the_hosts_vae_decode_and_encode(host_taesd, kind):
    """The host's VAE Decode of a LATENT with a TAESD pair is process_output(TAESD.decode(x)):
    ours is decode(space.to_input(x)) clamped. Same for VAE Encode with process_input."""
    v = VARIANTS[kind]
    host = host_taesd.TAESD(latent_channels=v.latent_channels)
    randomize(host.taesd_decoder, 5), randomize(host.taesd_encoder, 6)
    # what nodes.VAELoader.load_taesd stores for this file pair
    nodes_src = open(os.path.join(HOST, "nodes.py")).read()
    assert f'name == "{kind}"' in nodes_src
    space = v.space
    scale, shift = space.scale, space.shift
    assert f"torch.tensor({scale})" in nodes_src and f"torch.tensor({shift})" in nodes_src
    host.vae_scale.data.fill_(scale)
    host.vae_shift.data.fill_(shift)
    encoder, decoder, _ = taesd_from_state_dict(
        {k: t for k, t in host.state_dict().items() if k.startswith(("taesd_decoder.", "taesd_encoder."))},
        kind)
    latent = torch.randn(3, v.latent_channels, 4, 6, generator=torch.Generator().manual_seed(7)) / scale + shift
    with torch.no_grad():
        host_image = torch.clamp((host.decode(latent) + 1.0) / 2.0, 0.0, 1.0)  # VAE.process_output
    ours = decode(decoder, space.to_input(latent).unsqueeze(0))[0]
    assert rel_err(ours, host_image) < 1e-5
    image = torch.rand(2, 3, 24, 16, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        host_latent = host.encode(image * 2.0 - 1.0)  # VAE.process_input
    ours_latent = encode(encoder, image.unsqueeze(0))[0] / scale + shift
    assert rel_err(ours_latent, host_latent) < 1e-5


def test_taef2_takes_and_gives_flux2s_latent_as_the_hosts_own_taef2(host_taesd):
    """ComfyUI 0.33's taef2 (Load VAE's TAESD with 128 latent channels: DecoderFlux2 / EncoderFlux2,
    no scale or shift) unfolds FLUX.2's 128-channel LATENT into taef2's 32 channels at twice the
    size, and folds the encoder's output back. Ours through taef2's latent space does the same."""
    if not hasattr(host_taesd, "DecoderFlux2"):
        pytest.skip("this ComfyUI has no taef2 (0.33 has; 0.3.75 has not)")
    host = host_taesd.TAESD(latent_channels=128)
    randomize(host.taesd_decoder, 14), randomize(host.taesd_encoder, 15)
    model = autoencoder_from_state_dict(
        {k: t for k, t in host.state_dict().items() if k.startswith(("taesd_decoder.", "taesd_encoder."))}, "taef2")
    encoder, decoder, space = model.encoder, model.decoder, model.decoder.latent_space
    assert (space.format, space.input_space, space.fold) == ("Flux2", "vae", 2) and encoder.latent_space == space
    assert "a LATENT of 128 channels, folded 2x2" in model.description
    latent = torch.randn(3, 128, 4, 6, generator=torch.Generator().manual_seed(16))
    with torch.no_grad():
        host_image = torch.clamp((host.decode(latent) + 1.0) / 2.0, 0.0, 1.0)  # VAE.process_output
    ours = decode(decoder, space.to_input(latent).unsqueeze(0))[0]
    assert ours.shape == (3, 3, 64, 96) and rel_err(ours, host_image) < 1e-5  # 16 px per LATENT pixel
    image = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(17))
    with torch.no_grad():
        host_latent = host.encode(image * 2.0 - 1.0)  # VAE.process_input
    ours_latent = space.fold_back(encode(encoder, image.unsqueeze(0))[0])
    assert ours_latent.shape == host_latent.shape == (2, 128, 2, 3) and rel_err(ours_latent, host_latent) < 1e-5


def test_a_flux2_latent_is_pointed_to_taef2():
    assert which_file_fits(128) == ("128-channel latents come from LTX-2, FLUX.2: load taeltx_2, taef2_decoder (images) "
                                    "from models/vae_approx.")
    assert "FLUX.2" not in which_file_fits(32)  # taef2's own width: no LATENT holds it


def test_the_functional_reference_agrees_with_the_host(host_taesd):
    host = randomize(host_taesd.Decoder(16), seed=9)
    x = torch.randn(2, 16, 3, 4)
    with torch.no_grad():
        assert rel_err(reference_decode(host.state_dict(), x, False), host(x)) < 1e-5
    host_enc = randomize(host_taesd.Encoder(16), seed=10)
    y = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        assert rel_err(reference_encode(host_enc.state_dict(), y, False), host_enc(y)) < 1e-5


# --- taef2: the pools the host does not have ---------------------------------------------------

@pytest.mark.parametrize("chunk", [1, 2, 5, None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_taef2_decoder_equals_reference_with_pools(chunk, dtype):
    sd = random_file("taef2", "decoder", seed=11)
    assert sum(k.startswith(("3.pool.", "4.pool.", "5.pool.")) for k in sd) == 3 * 4
    assert not any(".pool." in k and not k.startswith(("3.", "4.", "5.")) for k in sd)
    _, dec, desc = taesd_from_state_dict(sd, "taef2_decoder.pth")
    dec = dec.to(dtype)
    assert dec.family == "TAEF2 (FLUX.2)" and "32-channel" in desc
    latents = torch.randn(1, 5, 32, 4, 3, generator=torch.Generator().manual_seed(12))
    expected = frames_to_match(dtype, dec, latents, reference_decode(sd, latents[0], pooled=True)[None])[0]
    assert rel_err(decode(dec, latents, chunk_frames=chunk, clamp=False)[0], expected) < SAME_FRAMES[dtype]
    # the pools matter: without them the output differs
    assert rel_err(reference_decode(sd, latents[0], pooled=False), expected) > 1e-3


def test_taef2_encoder_equals_reference_with_pools():
    sd = random_file("taef2", "encoder", seed=13)
    assert {k.split(".")[0] for k in sd if ".pool." in k} == {"11", "12", "13"}
    enc, dec, _ = taesd_from_state_dict(sd, "taef2_encoder.pth")
    assert dec is None
    frames = torch.rand(1, 3, 3, 16, 24)
    assert rel_err(encode(enc, frames, chunk_frames=2)[0], reference_encode(sd, frames[0], pooled=True)) < 1e-5


# --- recognising files ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind,arch", [("taesd", "taesd"), ("taesdxl", "taesd"), ("taesd3", "taesd3"),
                                       ("taef1", "taesd3"), ("taef2", "taef2")])
@pytest.mark.parametrize("part", ["decoder", "encoder"])
def test_identify_from_tensors_alone(kind, arch, part):
    sd = random_file(kind, part)
    assert FAMILY.match(sd, "x.pth").variant == arch
    assert FAMILY.match({f"taesd_{part}.{k}": t for k, t in sd.items()}, "x.pth").variant == arch
    assert FAMILY.match(sd, f"{kind}_{part}.pth").variant == kind  # the name tells same-shaped variants apart


def test_identify_rejects_other_files(state_dict):
    assert isinstance(FAMILY.match(state_dict, "taesdv.pth"), NoMatch)  # TAESDV: its decoder has MemBlocks
    assert isinstance(FAMILY.match({"decoder.22.bias": torch.zeros(3), "decoder.1.weight": torch.zeros(256, 16, 3, 3)}, "x"), NoMatch)
    assert isinstance(FAMILY.match({"foo": torch.zeros(1)}, "x"), NoMatch)


def test_combined_comfy_form_loads_both_halves():
    dec, enc = random_file("taesdxl", "decoder", 1), random_file("taesdxl", "encoder", 2)
    sd = {**{f"taesd_decoder.{k}": t for k, t in dec.items()}, **{f"taesd_encoder.{k}": t for k, t in enc.items()},
          "vae_scale": torch.tensor(0.13025), "vae_shift": torch.tensor(0.0)}  # Load VAE's form adds these two
    encoder, decoder, desc = taesd_from_state_dict(sd, "taesdxl")
    assert encoder is not None and decoder is not None and decoder.family == "TAESD-XL (SDXL)"
    assert "encoder and decoder" in desc
    assert torch.equal(decoder[1].weight, dec["1.weight"])


def test_name_chooses_among_same_shaped_variants_and_must_agree():
    sd = random_file("taesd3", "decoder")
    assert taesd_from_state_dict(sd, "models/vae_approx/taef1_decoder.pth")[1].family == "TAEF1 (FLUX.1)"
    _, dec, desc = taesd_from_state_dict(sd)
    assert dec.family == "TAESD3 (SD3)" and "taesd3 or taef1" in desc
    with pytest.raises(CheckpointError, match="named taesdxl"):
        taesd_from_state_dict(sd, "taesdxl_decoder.pth")


def test_strict_checks_name_the_bad_tensors():
    sd = random_file("taesd", "decoder")
    missing = {k: t for k, t in sd.items() if k != "8.conv.2.bias"}
    with pytest.raises(CheckpointError, match="8.conv.2.bias"):
        taesd_from_state_dict(missing, "taesd_decoder.pth")
    extra = {**sd, "20.weight": torch.zeros(3)}
    with pytest.raises(CheckpointError, match="unexpected"):
        taesd_from_state_dict(extra, "taesd_decoder.pth")
    reshaped = {**sd, "19.weight": torch.zeros(4, 64, 3, 3)}
    with pytest.raises(CheckpointError, match="wrong shape"):
        taesd_from_state_dict(reshaped, "taesd_decoder.pth")
    nan = {**sd, "19.bias": torch.full((3,), float("nan"))}
    with pytest.raises(CheckpointError, match="NaN"):
        taesd_from_state_dict(nan, "taesd_decoder.pth")
    with pytest.raises(CheckpointError, match="not an image TAESD"):
        taesd_from_state_dict({"x": torch.zeros(1)}, "x.pth")


def test_input_mapping_table():
    assert {k: (v.space.scale, v.space.shift) for k, v in VARIANTS.items() if k != "taef2"} == {
        "taesd": (0.18215, 0.0), "taesdxl": (0.13025, 0.0), "taesd3": (1.5305, 0.0609), "taef1": (0.3611, 0.1159)}
    assert isinstance(FAMILY.match(random_file("taesd", "decoder"), "taesdxl_decoder.safetensors"), Match)
    assert FAMILY.match(random_file("taesd", "decoder"), "taesdxl_decoder.safetensors").space.scale == 0.13025


def test_every_familys_model_space_is_the_hosts_process_in(host_taesd):
    """One table per family (its records' spaces): each "model" space maps a LATENT as the host's
    own latent format does, so the CLI maps Save Latent files as ComfyUI does."""
    import comfy.latent_formats

    spaces = [space for family in FAMILIES for space in family.spaces.values() if space.input_space == "model"]
    assert {s.format for s in spaces} >= {"SD15", "SDXL", "SD3", "Flux", "HunyuanVideo", "HunyuanVideo15", "LTXV"}
    for space in spaces:
        fmt = getattr(comfy.latent_formats, space.format)()
        x = torch.randn(1, fmt.latent_channels, 2, 3) if fmt.latent_dimensions == 2 else torch.randn(1, fmt.latent_channels, 2, 2, 3)
        assert torch.allclose(space.to_input(x), fmt.process_in(x), atol=1e-6), space


def test_decoder_declares_what_the_engine_needs():
    _, dec, _ = taesd_from_state_dict(random_file("taef1", "decoder"), "taef1")
    assert (dec.latent_channels, dec.spatial_scale, dec.time_scale, dec.frames_to_trim) == (16, 8, 1, 0)
    assert dec.working_bytes_per_frame(512, 512, 2) > 512 * 512 * 2 * 64 * 4
    _, memory = dec.forward_chunk(torch.randn(1, 2, 16, 2, 2), None)
    assert memory == []
