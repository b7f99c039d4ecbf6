"""Real trained weights on real footage: the official FLUX.2 tiny autoencoder (taef2_encoder.pth,
taef2_decoder.pth from madebyollin/taesd, in ../shared/weights) on the TAESDV test clip (30 real
frames of 256x256, ../shared/media).

Random weights show the plumbing; these show that a real picture comes through. The pack's CLI
and nodes are compared with tests/reference_taesd.py (written from the published taesd.py,
sharing no code with the pack), and Compare's metrics with a computation of their own here.
Everything here skips, with the reason, where the weights or the
clip are absent (TAESDV_SHARED names another folder holding weights/ and media/).
"""
import json
import math
import os
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence
from safetensors.torch import load_file, save_file
from scipy.ndimage import gaussian_filter

import graphs
import reference_taesd
from comfy_host import DEVICE
from helpers import cli, saved, unique

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("TAESDV_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
ENCODER = os.path.join(SHARED, "weights", "taef2_encoder.pth")
DECODER = os.path.join(SHARED, "weights", "taef2_decoder.pth")
CLIP = os.path.join(SHARED, "media", "taesdv_test_video.gif")
LATENT_CHANNELS = 32  # taef2's own latents, at 1/8 size
FLUX2_CHANNELS = 128  # FLUX.2's LATENT (ComfyUI's Flux2 format): those folded 2x2, at 1/16 size
# ../shared/weights/README.md: this clip round-trips at "about 19 dB" with the official taesd.py
# (its GIF dithering is noise the decoder does not reproduce).
README_CLIP_PSNR = 19.0

missing = [p for p in (ENCODER, DECODER, CLIP) if not os.path.isfile(p)]
pytestmark = pytest.mark.skipif(bool(missing), reason=f"real weights or footage absent: {', '.join(missing)} "
                                                      "(the official taef2 files and the TAESDV test clip; see "
                                                      "../shared/weights/README.md)")


def psnr(a, b):
    """PSNR in dB of frames in [0, 1], over the whole clip (one mean squared error)."""
    return 10 * math.log10(1 / ((a - b) ** 2).mean().item())


def official_state_dict(path, part):
    """A file's tensors, checked against the published layout, in float32 (the files are fp16)."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    reference_taesd.check_layout(sd, part, LATENT_CHANNELS, pooled=True)
    return {k: v.float() for k, v in sd.items()}


def flux2_latent(latents):
    """taef2's latents (T, 32, 2h, 2w) -> FLUX.2's LATENT (T, 128, h, w): the 2x2 fold of ComfyUI's
    EncoderFlux2 (comfy/taesd/taesd.py), written here from its reshape."""
    t, c, h, w = latents.shape
    return latents.reshape(t, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(t, c * 4, h // 2, w // 2)


def read_clip():
    """The clip as (T, 3, H, W) in [0, 1], read with Pillow (each frame converted to RGB)."""
    with Image.open(CLIP) as im:
        arrays = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(im)]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def official():
    """The official round trip of the clip: frames, latents, decoded frames (clamped, as the pack
    returns them)."""
    encoder, decoder = official_state_dict(ENCODER, "encoder"), official_state_dict(DECODER, "decoder")
    frames = read_clip()
    with torch.no_grad():
        latents = reference_taesd.reference_encode(encoder, frames)
        decoded = reference_taesd.reference_decode(decoder, latents).clamp(0, 1)
    return {"encoder": encoder, "decoder": decoder, "frames": frames, "latents": latents, "decoded": decoded}


@pytest.fixture(scope="module")
def cli_latents(tmp_path_factory):
    """`taesdv encode` of the clip with the official encoder: latents (T, C, h, w)."""
    out = tmp_path_factory.mktemp("real") / "latents.safetensors"
    r = cli("encode", CLIP, "-w", ENCODER, "-o", out)
    assert r.returncode == 0, r.stderr
    return load_file(out)["latents"][0]


def cli_decode(latents, folder):
    """`taesdv decode` of latents (T, C, h, w) with the official decoder: frames (T, 3, H, W)."""
    path, out = folder / "in.safetensors", folder / "frames.safetensors"
    save_file({"latents": latents[None].contiguous()}, path)
    r = cli("decode", path, "-w", DECODER, "-o", out)
    assert r.returncode == 0, r.stderr
    return load_file(out)["frames"][0]


def test_the_files_have_the_published_layout_and_the_pack_names_them(tmp_path):
    for path, part in ((ENCODER, "encoder"), (DECODER, "decoder")):
        official_state_dict(path, part)  # asserts the keys and shapes
    r = cli("encode", CLIP, "-w", DECODER, "-o", tmp_path / "latents.safetensors")
    assert r.returncode != 0 and "TAEF2 (FLUX.2)" in r.stderr and "no encoder" in r.stderr, r.stderr


def test_cli_encode_of_the_real_clip_equals_the_official_encoder(official, cli_latents):
    assert cli_latents.shape == official["latents"].shape == (30, LATENT_CHANNELS, 32, 32)
    assert (cli_latents - official["latents"]).abs().max() < 1e-5


def test_cli_decode_of_the_official_latents_equals_the_official_decoder(official, tmp_path):
    frames = cli_decode(official["latents"], tmp_path)
    assert frames.shape == official["decoded"].shape == (30, 3, 256, 256)
    assert (frames - official["decoded"]).abs().max() < 1e-5


def test_cli_decode_takes_flux2s_latent_as_well_as_taef2s_own(official, tmp_path):
    # raw latents of 128 channels are FLUX.2's folded layout; a Save Latent file holds a LATENT
    own = cli_decode(official["latents"], tmp_path)
    (tmp_path / "folded").mkdir()
    assert torch.equal(cli_decode(flux2_latent(official["latents"]), tmp_path / "folded"), own)
    latent_file, out = tmp_path / "x.latent", tmp_path / "from_latent.safetensors"
    save_file({"latent_tensor": flux2_latent(official["latents"]).contiguous(),
               "latent_format_version_0": torch.tensor([])}, latent_file)
    r = cli("decode", latent_file, "-w", DECODER, "-o", out)
    assert r.returncode == 0, r.stderr
    assert torch.equal(load_file(out)["frames"][0], own)
    # a Save Latent file of taef2's own 32 channels is no FLUX.2 LATENT: refused, naming what fits
    save_file({"latent_tensor": official["latents"].contiguous(), "latent_format_version_0": torch.tensor([])},
              latent_file)
    r = cli("decode", latent_file, "-w", DECODER, "-o", out)
    assert r.returncode == 2 and "the LATENT has 32 channels" in r.stderr, r.stderr
    assert "expects 128 (32-channel latents folded 2x2)" in r.stderr and "load taehv1_5" in r.stderr


def test_round_trip_psnr_equals_the_official_round_trips(official, cli_latents, tmp_path):
    ours = psnr(cli_decode(cli_latents, tmp_path), official["frames"])
    theirs = psnr(official["decoded"], official["frames"])
    assert abs(ours - theirs) < 0.1, (ours, theirs)
    assert abs(theirs - README_CLIP_PSNR) < 0.5, theirs  # the figure measured with the official taesd.py


def ssim(a, b):
    """Mean SSIM (Wang et al. 2004) of frames (T, 3, H, W): per channel, Gaussian-weighted local
    statistics (sigma 1.5, an 11-pixel window: scipy's filter truncated at 3.5 sigma), population
    variances, C1 = 0.01^2, C2 = 0.03^2, the map averaged over positions the window fits in."""
    x, y = a.double().numpy(), b.double().numpy()
    blur = lambda z: gaussian_filter(z, sigma=(0, 0, 1.5, 1.5), truncate=3.5)[..., 5:-5, 5:-5]  # noqa: E731
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x ** 2, blur(y * y) - mu_y ** 2, blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def test_compare_metrics_on_the_real_clip_equal_an_independent_computation(official, tmp_path):
    """`taesdv compare` of the official latents against the real frames: its PSNR, SSIM and flicker
    (decode's mean frame-to-frame change minus the reference's) as computed here from the
    official decode."""
    latents, reference, out = tmp_path / "latents.safetensors", tmp_path / "frames.npy", tmp_path / "compare"
    save_file({"latents": official["latents"][None].contiguous()}, latents)
    np.save(reference, official["frames"][None].numpy())
    r = cli("compare", latents, "--decoder", f"taef2={DECODER}", "--reference", reference, "--out", out,
            "--device", "cpu", "--max-png", 1)
    assert r.returncode == 0, r.stderr
    (row,) = json.load(open(out / "rows.json"))
    decoded, frames = official["decoded"], official["frames"]
    change = lambda clip: (clip[1:] - clip[:-1]).abs().double().mean().item()  # noqa: E731
    assert row["frames"] == 30
    assert row["psnr"] == pytest.approx(psnr(decoded, frames), abs=1e-3)
    assert row["ssim"] == pytest.approx(ssim(decoded, frames), abs=1e-4)
    assert row["flicker"] == pytest.approx(change(decoded) - change(frames), abs=1e-5)


# --- the nodes on the real server ---------------------------------------------------------------

@pytest.fixture(scope="module")
def comfy_with_real_weights(comfy):
    """The shared server with the official files in models/vae_approx and the clip in input/."""
    for path in (ENCODER, DECODER):
        shutil.copy(path, os.path.join(comfy.base, "models", "vae_approx", os.path.basename(path)))
    shutil.copy(CLIP, os.path.join(comfy.base, "input", os.path.basename(CLIP)))
    return comfy


def hosts_taef2(comfy) -> bool:
    """Whether the host's Load VAE offers taef2 (core's own FLUX.2 tiny autoencoder, from the two
    files in models/vae_approx): ComfyUI 0.33 does, 0.3.75 does not."""
    vae_name = comfy.get_json("/object_info/VAELoader")["VAELoader"]["input"]["required"]["vae_name"]
    options = vae_name[1]["options"] if vae_name[0] == "COMBO" else vae_name[0]
    return "taef2" in options


def assert_same_frames(ours, hosts):
    """The pack's frames and the host's VAE Decode's, IMAGEs [T, H, W, 3]: equal within float32
    rounding where both run fp32 (the CPU); on GPUs the host's VAE runs bf16, the pack's loader fp32."""
    assert ours.shape == hosts.shape
    print(f"pack vs host VAE Decode: max difference {(ours - hosts).abs().max().item():.2e}")
    if DEVICE == "cpu":
        assert (ours - hosts).abs().max() < 1e-4
    else:
        assert psnr(ours, hosts) > 40


def save_latent(comfy, latents) -> str:
    """A .latent in the server's input/ as Save Latent writes it (LATENT values, format version 0)."""
    name = unique("flux2") + ".latent"
    save_file({"latent_tensor": latents.contiguous(), "latent_format_version_0": torch.tensor([])},
              os.path.join(comfy.base, "input", name))
    return name


def test_encode_and_decode_batch_on_the_server_give_the_official_frames(comfy_with_real_weights, official):
    comfy = comfy_with_real_weights
    latent_file = save_latent(comfy, flux2_latent(official["latents"]))
    encoded, decoded = unique("encoded"), unique("decoded")
    graph = {"1": graphs.loader(name="taef2_encoder.pth"), "2": graphs.loader(name="taef2_decoder.pth"),
             "3": {"class_type": "LoadImage", "inputs": {"image": os.path.basename(CLIP)}},
             "4": graphs.encode(model="1", pixels="3"), "5": graphs.save_tensor(encoded, samples="4", images="3"),
             "6": {"class_type": "LoadLatent", "inputs": {"latent": latent_file}},
             "7": graphs.decode(model="2", samples="6"), "8": graphs.save_tensor(decoded, images="7")}
    for node in ("4", "7"):
        graph[node]["inputs"]["latent_scale"] = 0.0  # auto: taef2's own mapping (unscaled, folded 2x2)
    run = comfy.run(graph, timeout=900)
    assert run.succeeded, run.error_text()

    # Encode, of the server's own pixels: Load Image reads the GIF through PyAV (ffmpeg), whose
    # colours differ from Pillow's by up to about 1/255
    out = saved(comfy, encoded)
    pixels = out["images"].permute(0, 3, 1, 2)
    assert pixels.shape == official["frames"].shape and (pixels - official["frames"]).abs().max() < 2 / 255
    with torch.no_grad():
        expected_latents = flux2_latent(reference_taesd.reference_encode(official["encoder"], pixels))
    assert out["samples"].shape == (30, FLUX2_CHANNELS, 16, 16)  # frames as the batch, FLUX.2's LATENT
    assert (out["samples"] - expected_latents).abs().max() < 1e-5

    # Decode Batch of the official latents as a FLUX.2 LATENT: the official frames
    frames = saved(comfy, decoded)["images"].permute(0, 3, 1, 2)
    assert frames.shape == official["decoded"].shape
    assert (frames - official["decoded"]).abs().max() < 1e-5


def test_decode_batch_of_a_flux2_latent_equals_the_hosts_own_taef2_vae_decode(comfy_with_real_weights, official):
    comfy = comfy_with_real_weights
    if not hosts_taef2(comfy):
        pytest.skip("this ComfyUI's Load VAE has no taef2 (0.33 has; 0.3.75 has not)")
    ours, hosts = unique("ours"), unique("hosts")
    graph = {"2": graphs.loader(name="taef2_decoder.pth"),
             "6": {"class_type": "LoadLatent", "inputs": {"latent": save_latent(comfy, flux2_latent(official["latents"]))}},
             "7": graphs.decode(model="2", samples="6"), "8": graphs.save_tensor(ours, images="7"),
             "20": {"class_type": "VAELoader", "inputs": {"vae_name": "taef2"}},
             "21": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["20", 0]}},
             "22": graphs.save_tensor(hosts, images="21")}
    graph["7"]["inputs"]["latent_scale"] = 0.0
    run = comfy.run(graph, timeout=900)
    assert run.succeeded, run.error_text()
    frames = saved(comfy, ours)["images"]
    assert frames.shape == (30, 256, 256, 3)  # 16 px per LATENT pixel
    assert_same_frames(frames, saved(comfy, hosts)["images"])


def test_encode_then_decode_round_trips_the_clip_at_the_readmes_psnr_in_a_latent_the_host_decodes(
        comfy_with_real_weights, official):
    comfy = comfy_with_real_weights
    encoded, decoded, hosts = unique("encoded"), unique("decoded"), unique("hosts")
    graph = {"1": graphs.loader(name="taef2_encoder.pth"), "2": graphs.loader(name="taef2_decoder.pth"),
             "3": {"class_type": "LoadImage", "inputs": {"image": os.path.basename(CLIP)}},
             "4": graphs.encode(model="1", pixels="3"), "5": graphs.save_tensor(encoded, samples="4", images="3"),
             "7": graphs.decode(model="2", samples="4"), "8": graphs.save_tensor(decoded, images="7")}
    for node in ("4", "7"):
        graph[node]["inputs"]["latent_scale"] = 0.0
    host_decodes = hosts_taef2(comfy)
    if host_decodes:  # core's VAE Decode of the pack's LATENT
        graph.update({"20": {"class_type": "VAELoader", "inputs": {"vae_name": "taef2"}},
                      "21": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["20", 0]}},
                      "22": graphs.save_tensor(hosts, images="21")})
    run = comfy.run(graph, timeout=900)
    assert run.succeeded, run.error_text()
    out = saved(comfy, encoded)
    assert out["samples"].shape == (30, FLUX2_CHANNELS, 16, 16)
    frames = saved(comfy, decoded)["images"]
    ours, theirs = psnr(frames, out["images"]), psnr(official["decoded"], official["frames"])
    print(f"Encode -> Decode Batch on the server, real clip: {ours:.2f} dB (official round trip {theirs:.2f} dB)")
    assert abs(ours - theirs) < 0.1 and abs(ours - README_CLIP_PSNR) < 0.5, (ours, theirs)
    if host_decodes:
        assert_same_frames(frames, saved(comfy, hosts)["images"])


def test_compare_decoders_takes_a_flux2_latent(comfy_with_real_weights, official):
    comfy = comfy_with_real_weights
    out = unique("compare")
    graph = {"2": graphs.loader(name="taef2_decoder.pth"),
             "3": {"class_type": "LoadImage", "inputs": {"image": os.path.basename(CLIP)}},
             "6": {"class_type": "LoadLatent", "inputs": {"latent": save_latent(comfy, flux2_latent(official["latents"]))}},
             "9": {"class_type": "TAESDVCompareDecoders", "inputs": {"samples": ["6", 0], "decoder_a": ["2", 0],
                                                                     "decoder_b": ["2", 0], "reference": ["3", 0]}},
             "10": graphs.save_tensor(out, images="9"), "11": {"class_type": "PreviewAny", "inputs": {"source": ["9", 1]}}}
    run = comfy.run(graph, timeout=900)
    assert run.succeeded, run.error_text()
    frames = saved(comfy, out)["images"]
    assert frames.shape[0] == 30 and frames.shape[2] == 3 * 256  # the reference and two 256-px panels
    table = "".join(run.outputs("11")["text"])
    measured = [float(db) for db in re.findall(r"\| [AB]: taef2_decoder\.pth \(TAEF2 \(FLUX\.2\)\) \| 30 \| [\d.]+ \| "
                                               r"[\d.]+ \| ([\d.]+) \|", table)]
    assert len(measured) == 2 and all(abs(m - README_CLIP_PSNR) < 0.5 for m in measured), table
