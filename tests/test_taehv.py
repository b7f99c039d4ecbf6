"""TAEHV in the core: every variant's layout loads strictly and decodes like ComfyUI's own
TAEHV (comfy/taesd/taehv.py, for the layouts it has) and like the independent functional
reference (tests/reference_taehv.py, for all); every chunking and stream split gives the same
frames; the loader tells variants apart from tensors and refuses what fits none."""
import copy
import sys

import pytest
import torch

from comfy_host import COMFYUI as HOST  # the host under test (TAESDV_TEST_HOST)
from helpers import SAME_FRAMES, frames_to_match, set_frame_by_frame
from reference_taehv import VARIANTS, layout, random_state_dict, reference_decode, reference_encode
from taesdv_core import DecodeStream, decode, encode
from taesdv_core.family import LatentSpace, NoMatch
from taesdv_core.taehv import FAMILY, TAEHVDecoder, TAEHVSuperDecoder, taehv_from_state_dict



def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def latents_for(variant, t, h=3, w=4, n=1, seed=0):
    return torch.randn(n, t, VARIANTS[variant][0], h, w, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def sds():
    return {v: random_state_dict(v, seed=i) for i, v in enumerate(VARIANTS)}


@pytest.fixture(scope="module")
def models(sds):
    return {v: taehv_from_state_dict(sd) for v, sd in sds.items()}


@pytest.fixture(scope="module")
def host_taehv():
    """The host's own TAEHV module, imported in-process on the CPU (no server needed)."""
    if HOST not in sys.path:
        sys.path.append(HOST)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # model_management asks CUDA for a device at import otherwise
    import comfy.taesd.taehv

    return comfy.taesd.taehv


# --- layout and recognition ------------------------------------------------------------------

@pytest.mark.parametrize("variant", list(VARIANTS))
def test_models_have_the_official_layout(models, variant):
    encoder, decoder, _ = models[variant]
    ours = {f"decoder.{k}": tuple(v.shape) for k, v in decoder.state_dict().items()}
    ours.update({f"encoder.{k}": tuple(v.shape) for k, v in encoder.state_dict().items()})
    assert ours == layout(variant)


@pytest.mark.parametrize("variant,expected", [
    ("wan2_1", (16, 8, 4, 3, TAEHVDecoder)), ("wan2_2", (48, 16, 4, 3, TAEHVDecoder)),
    ("hv1_5", (32, 16, 4, 3, TAEHVDecoder)), ("ltx", (128, 32, 8, 7, TAEHVDecoder)),
    ("wan2_2_super", (48, 16, 4, 3, TAEHVSuperDecoder)), ("hv1_5_super", (32, 16, 4, 3, TAEHVSuperDecoder)),
])
def test_variant_is_recognised_from_tensors(models, sds, variant, expected):
    encoder, decoder, description = models[variant]
    channels, space, time, trim, cls = expected
    assert type(decoder) is cls
    assert (decoder.latent_channels, decoder.spatial_scale, decoder.time_scale, decoder.frames_to_trim) == (channels, space, time, trim)
    assert (encoder.latent_channels, encoder.spatial_scale, encoder.time_scale) == (channels, space, time)
    assert FAMILY.match(sds[variant], "x.pth").description == description
    assert ("Super" in description) == (cls is TAEHVSuperDecoder)


def test_decoder_only_and_encoder_only_files_load(sds):
    sd = sds["wan2_1"]
    enc, dec, _ = taehv_from_state_dict({k: v for k, v in sd.items() if k.startswith("decoder.")})
    assert enc is None and dec is not None
    enc, dec, _ = taehv_from_state_dict({k: v for k, v in sd.items() if k.startswith("encoder.")})
    assert dec is None and enc is not None and enc.time_scale == 4


def test_not_taehv_is_not_identified():
    from reference_taesdv import official_layout_state_dict

    assert isinstance(FAMILY.match(official_layout_state_dict(), "taesdv.pth"), NoMatch)
    assert isinstance(FAMILY.match({"1.weight": torch.zeros(64, 4, 3, 3)}, "x.pth"), NoMatch)


@pytest.mark.parametrize("break_it,message", [
    (lambda sd: sd.pop("decoder.9.conv.2.bias"), "1 missing (e.g. 9.conv.2.bias)"),
    (lambda sd: sd.__setitem__("decoder.8.weight", torch.zeros(128, 256, 1, 1)), "8.weight (128, 256, 1, 1) (expected"),
    (lambda sd: sd.__setitem__("decoder.extra.weight", torch.zeros(1)), "1 unexpected (e.g. extra.weight)"),
    (lambda sd: sd.__setitem__("decoder.13.conv.weight", torch.zeros(128, 128, 1, 1)), "time strides (1, 1, 2)"),
    (lambda sd: sd.__setitem__("decoder.22.weight", torch.zeros(5, 64, 3, 3)), "3 * patch^2"),
    (lambda sd: sd.__setitem__("encoder.7.conv.weight", torch.zeros(64, 192, 1, 1)), "encoder TPool"),
    (lambda sd: sd.__setitem__("encoder.17.weight", torch.zeros(48, 64, 3, 3)), "do not belong together"),
    (lambda sd: sd.__setitem__("vae.weight", torch.zeros(1)), "keys outside"),
])
def test_layouts_that_fit_no_variant_are_refused_with_what_they_look_like(sds, break_it, message):
    sd = dict(sds["wan2_1"])
    break_it(sd)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*").replace("^", r"\^")):
        taehv_from_state_dict(sd)


def test_h3_and_taesdv_files_are_refused_by_name():
    from reference_taesdv import official_layout_state_dict

    sd = random_state_dict("wan2_1")
    sd["decoder.1.weight"] = torch.zeros(256, 24, 3, 3)
    sd["decoder.22.weight"], sd["decoder.22.bias"] = torch.zeros(12, 64, 3, 3), torch.zeros(12)
    with pytest.raises(ValueError, match="MiniMax H3"):
        taehv_from_state_dict({k: v for k, v in sd.items() if k.startswith("decoder.")})
    with pytest.raises(ValueError, match="TAESDV"):
        taehv_from_state_dict(official_layout_state_dict())


# --- decoding equals the host's TAEHV and the reference ---------------------------------------

@pytest.mark.parametrize("variant,filename", [("wan2_1", None), ("wan2_2", None), ("hv1_5", "lighttaehy1_5.safetensors")])
@pytest.mark.parametrize("parallel", [False, True])
def test_decode_equals_comfyui_taehv(host_taehv, sds, variant, filename, parallel):
    sd = sds[variant]
    host = host_taehv.TAEHV(latent_channels=VARIANTS[variant][0], parallel=parallel, show_progress_bar=False).eval()
    host.load_state_dict(sd, strict=True)
    _, decoder, description = taehv_from_state_dict(sd, filename)
    latents = latents_for(variant, 4, 5, 3)
    with torch.no_grad():
        expected = host.decode(latents.movedim(1, 2)).movedim(1, 2)  # the host takes [B, C, T, H, W]
    if filename:  # lighttae: the host's VAE maps its [-1, 1] output with (x + 1) / 2; ours is in the model
        assert "lighttae" in description
        expected = (expected + 1) / 2
    got = decode(decoder, latents, clamp=False)
    assert got.shape == expected.shape == (1, 13, 3, 5 * decoder.spatial_scale, 3 * decoder.spatial_scale)
    assert rel_err(got, expected) < 1e-5


@pytest.mark.parametrize("variant,filename", [("wan2_1", None), ("hv1_5", "lighttaehy1_5.pth")])
def test_cpu_decode_runs_the_last_upsampled_conv_and_final_conv_on_phases(sds, variant, filename, monkeypatch):
    # fused_ops.upsampled_conv_pair: the full-size last activation is never built on CPUs
    import taesdv_core.fused_ops as fused_ops

    import taesdv_core.layers as layers

    _, decoder, _ = taehv_from_state_dict(sds[variant], filename)
    latents = latents_for(variant, 3, 4, 3)
    pairs = []
    monkeypatch.setattr(fused_ops, "_conv_on_phases_kernels", lambda w, f=fused_ops._conv_on_phases_kernels: pairs.append(w) or f(w))
    got = decode(decoder, latents, clamp=False)
    assert len(pairs) > 0
    pairs.clear()
    monkeypatch.setattr(layers, "fast_path", list)  # the layers as listed, one by one
    expected = decode(decoder, latents, clamp=False)
    assert pairs == []
    assert rel_err(got, expected) < 1e-5


@pytest.mark.parametrize("one_by_one", [True, False])
def test_a_steps_memory_is_freed_as_soon_as_the_next_step_replaces_it(models, one_by_one, monkeypatch):
    # No reference cycle may hold a step's memory (9 frames of activations) until the garbage
    # collector happens to run: a long clip's peak would grow with every latent frame.
    import gc
    import weakref

    set_frame_by_frame(monkeypatch, one_by_one)
    decoder = models["wan2_1"][1]
    latents = latents_for("wan2_1", 2)
    gc.disable()
    try:
        with torch.inference_mode():
            _, memory = decoder.forward_chunk(latents[:, :1], None)
            first_memory = [weakref.ref(m) for m in memory]
            _, memory = decoder.forward_chunk(latents[:, 1:], memory)
            assert all(m() is None for m in first_memory)
    finally:
        gc.enable()


def test_32_channel_file_without_lighttae_name_is_madebyollins_relu_taehv1_5(sds, models):
    _, relu, _ = models["hv1_5"]
    _, leaky, _ = taehv_from_state_dict(sds["hv1_5"], "lighttaehy1_5.pth")
    latents = latents_for("hv1_5", 2)
    assert rel_err(decode(relu, latents, clamp=False), reference_decode(sds["hv1_5"], latents)) < 1e-5
    raw = reference_decode(sds["hv1_5"], latents, leaky=True)
    assert rel_err(decode(leaky, latents, clamp=False), (raw + 1) / 2) < 1e-5
    assert taehv_from_state_dict(sds["hv1_5"], "lighttaehy1_5.pth")[0] is None  # no encoding, as in ComfyUI


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_decode_equals_reference(models, sds, variant):
    latents = latents_for(variant, 3, 3, 2, n=2)
    got = decode(models[variant][1], latents, clamp=False)
    expected = reference_decode(sds[variant], latents)
    assert got.shape == expected.shape
    assert rel_err(got, expected) < 1e-5


@pytest.mark.parametrize("variant", ["wan2_1", "ltx", "wan2_2_super"])
@pytest.mark.parametrize("t", [1, 2, 3, 4])
def test_output_frame_count_is_t_up_times_t_minus_trim(models, variant, t):
    decoder = models[variant][1]
    up = decoder.time_scale
    frames = decode(decoder, latents_for(variant, t, 2, 2), clamp=False)
    assert frames.shape[1] == up * t - (up - 1)
    assert DecodeStream(decoder).output_frames(t) == up * t - (up - 1)


@pytest.mark.parametrize("variant", ["wan2_1", "ltx", "hv1_5_super"])
@pytest.mark.parametrize("frame_major", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_every_chunk_size_and_stream_split_gives_the_same_frames(models, sds, variant, frame_major, dtype, monkeypatch):
    set_frame_by_frame(monkeypatch, frame_major)
    decoder = copy.deepcopy(models[variant][1]).to(dtype)
    t = 5 if variant == "wan2_1" else 3
    latents = latents_for(variant, t, 3, 2, seed=7)
    expected = frames_to_match(dtype, decoder, latents, reference_decode(sds[variant], latents))
    for chunk in range(1, t + 1):
        assert rel_err(decode(decoder, latents, chunk_frames=chunk, clamp=False), expected) < SAME_FRAMES[dtype], chunk
    for split in range(1, t):
        stream = DecodeStream(decoder)
        pieces = [stream.decode(latents[:, :split], clamp=False), stream.decode(latents[:, split:], chunk_frames=1, clamp=False)]
        assert pieces[0].shape[1] == decoder.time_scale * split - decoder.frames_to_trim
        assert rel_err(torch.cat(pieces, 1), expected) < SAME_FRAMES[dtype], split


@pytest.mark.parametrize("h,w", [(1, 1), (1, 5), (7, 3)])
def test_odd_sizes(models, sds, h, w):
    latents = latents_for("wan2_2", 2, h, w)
    got = decode(models["wan2_2"][1], latents, chunk_frames=1, clamp=False)
    assert got.shape == (1, 5, 3, 16 * h, 16 * w)
    assert rel_err(got, reference_decode(sds["wan2_2"], latents)) < 1e-5


def test_clamped_output_is_in_unit_range(models):
    frames = decode(models["wan2_1"][1], latents_for("wan2_1", 2) * 5)
    assert frames.min() >= 0 and frames.max() <= 1


# --- preview options: time upscale off (TGrow cut to the last frame), space upscale off -----

@pytest.mark.parametrize("variant", ["wan2_1", "ltx", "wan2_2_super"])
def test_time_upscale_off_keeps_the_last_tgrow_outputs_one_frame_per_latent(sds, variant):
    _, decoder, _ = taehv_from_state_dict(sds[variant], time_upscale=False)
    assert (decoder.time_scale, decoder.frames_to_trim) == (1, 0)
    latents = latents_for(variant, 3, 2, 3)
    got = decode(decoder, latents, chunk_frames=1, clamp=False)
    expected = reference_decode(sds[variant], latents, time_upscale=False)
    assert got.shape[1] == 3
    assert rel_err(got, expected) < 1e-5


def test_time_upscale_off_frames_are_not_the_first_of_each_group(sds, models):
    # Keeping the FIRST n channels instead would give different frames: the cut is observable.
    sd = dict(sds["wan2_1"])
    latents = latents_for("wan2_1", 2)
    _, cut, _ = taehv_from_state_dict(sd, time_upscale=False)
    first = {k: (v[:64] if k == "decoder.19.conv.weight" else v[:128] if k == "decoder.13.conv.weight" else v)
             for k, v in sd.items()}
    wrong = reference_decode(first, latents, time_upscale=False)
    assert rel_err(decode(cut, latents, clamp=False), wrong) > 1e-3


def test_space_upscale_off_decodes_at_latent_size(sds):
    _, decoder, _ = taehv_from_state_dict(sds["wan2_2"], space_upscale=False)
    latents = latents_for("wan2_2", 2, 4, 6)
    got = decode(decoder, latents, clamp=False)
    assert got.shape == (1, 5, 3, 8, 12) and decoder.spatial_scale == 2
    assert rel_err(got, reference_decode(sds["wan2_2"], latents, space_upscale=False)) < 1e-5
    with pytest.raises(ValueError, match="space_upscale"):
        taehv_from_state_dict(sds["wan2_2_super"], space_upscale=False)


@pytest.mark.parametrize("variant,filename", [("wan2_1", None), ("ltx", None), ("hv1_5", "lighttaehy1_5.pth"),
                                              ("wan2_2_super", None)])
def test_cheaper_variants_are_the_loaded_weights_without_time_then_space_upscaling(sds, variant, filename):
    _, full, _ = taehv_from_state_dict(sds[variant], filename)
    full.latent_space = LatentSpace("Wan22", "vae")
    variants = full.cheaper_variants()
    super_ = variant.endswith("super")
    assert [(v.time_scale, v.spatial_scale) for v in variants] == (
        [(1, full.spatial_scale)] + ([] if super_ else [(1, full.patch)]))
    latents = latents_for(variant, 3, 2, 3)
    for v, space in zip(variants, (True, False)):
        assert (v.latent_format, v.input_space, v.frames_to_trim) == ("Wan22", "vae", 0)
        expected = reference_decode(sds[variant], latents, leaky=bool(filename), time_upscale=False,
                                    space_upscale=space)
        if filename:  # lighttae: the model maps its [-1, 1] output to [0, 1]
            expected = (expected + 1) / 2
        got = decode(v, latents, clamp=False)
        assert got.shape[1] == 3 and rel_err(got, expected) < 1e-5
    assert full.time_scale > 1 and variants[0].cheaper_variants() == []


# --- CogVideoX (taecvx): Wan 2.1's tensors; an even number of latent frames is not trimmed ------

def test_a_cogvideox_file_keeps_the_start_of_clips_of_even_length_and_trims_odd_ones(sds):
    _, cvx, description = taehv_from_state_dict(sds["wan2_1"], "taecvx.safetensors")
    _, wan, _ = taehv_from_state_dict(sds["wan2_1"], "taew2_1.safetensors")
    assert cvx.family == "TAEHV (CogVideoX)" and "even number of latent frames is not trimmed" in description
    even, odd = latents_for("wan2_1", 4), latents_for("wan2_1", 3)
    untrimmed = reference_decode(sds["wan2_1"], even, trim=False)
    for chunk in (1, 2, 3, 4):
        got = decode(cvx, even, chunk_frames=chunk, clamp=False)
        assert got.shape[1] == 16 and rel_err(got, untrimmed) < 1e-5
    assert decode(wan, even, clamp=False).shape[1] == 13  # Wan's file trims every clip
    assert rel_err(decode(cvx, odd, clamp=False), reference_decode(sds["wan2_1"], odd)) < 1e-5  # 9 frames
    stream = DecodeStream(cvx)  # a stream decides at its first piece: two pieces of 2 = one of 4
    pieces = torch.cat([stream.decode(even[:, :2], clamp=False), stream.decode(even[:, 2:], clamp=False)], 1)
    assert rel_err(pieces, untrimmed) < 1e-5
    no_time = cvx.cheaper_variants()[0]
    assert no_time.cogvideox and decode(no_time, even).shape[1] == 4


# --- encoding ----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["wan2_1", "wan2_2", "ltx"])
@pytest.mark.parametrize("t", [1, 4, 6, 9])
def test_encode_pools_time_and_pads_like_the_reference(models, sds, variant, t):
    encoder = models[variant][0]
    s = encoder.spatial_scale
    frames = torch.rand(2, t, 3, 2 * s, 3 * s, generator=torch.Generator().manual_seed(t))
    expected = reference_encode(sds[variant], frames)
    assert expected.shape[1] == -(-t // encoder.time_scale)
    for chunk in (None, encoder.time_scale):
        got = encode(encoder, frames, chunk_frames=chunk)
        assert got.shape == expected.shape
        assert rel_err(got, expected) < 1e-5


def test_encode_equals_comfyui_taehv(host_taehv, sds, models):
    frames = torch.rand(1, 7, 3, 16, 24)
    host = host_taehv.TAEHV(latent_channels=16, show_progress_bar=False).eval()
    host.load_state_dict(sds["wan2_1"])
    with torch.no_grad():
        expected = host.encode(frames.movedim(1, 2)).movedim(1, 2)
    assert rel_err(encode(models["wan2_1"][0], frames), expected) < 1e-5


# --- memory accounting -------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["wan2_1", "ltx", "wan2_2_super"])
def test_state_bytes_is_what_a_stream_holds(models, variant):
    decoder = models[variant][1]
    stream = DecodeStream(decoder)
    stream.decode(latents_for(variant, 2, 3, 5))
    assert decoder.state_bytes(3 * decoder.spatial_scale, 5 * decoder.spatial_scale, 4) == stream.state_bytes()


def test_flops_grow_with_patch_and_time():
    base = TAEHVDecoder(16, 1).flops_per_frame(240, 416)
    assert 30e9 < base < 40e9  # by hand: ~66 GMAC per latent frame of 30x52, / 4 frames, x2
    assert TAEHVDecoder(16, 1, time_upscale=False).flops_per_frame(480, 832) > base


# --- how ComfyUI's VAE Decode maps a LATENT to TAEHV: what the nodes must do to match it -----

@pytest.mark.parametrize("variant,dtype,filename,scale", [
    ("wan2_1", torch.float32, None, 1.0),                        # taew2_1 / lighttaew2_1: no scale
    ("wan2_1", torch.float16, None, 0.476986),                   # an fp16 16-ch file: ComfyUI takes it for taehv (HunyuanVideo)
    ("wan2_2", torch.float32, None, 1.0),                        # Wan 2.2 5B: no scale
    ("hv1_5", torch.float32, "lighttaehy1_5.safetensors", 1.03682),  # HunyuanVideo15.process_in, (x + 1) / 2 out
])
def test_comfyui_vae_decode_of_a_latent_equals_engine_decode_of_the_mapped_latent(host_taehv, variant, dtype, filename, scale):
    import comfy.sd

    sd = random_state_dict(variant, seed=3, dtype=dtype)
    vae = comfy.sd.VAE(sd=dict(sd))
    samples = torch.randn(1, VARIANTS[variant][0], 3, 4, 5)  # LATENT["samples"]: [B, C, T, H, W]
    expected = vae.decode(samples)  # IMAGE [B*?, T, H, W, 3]; ComfyUI does not clamp the 16/48-ch ones
    _, decoder, _ = taehv_from_state_dict({k: v.float() for k, v in sd.items()}, filename)
    got = decode(decoder, (samples * scale).movedim(1, 2), layout="NTHWC")
    assert got.shape == expected.shape
    assert rel_err(got, expected.clamp(0, 1)) < 1e-5
