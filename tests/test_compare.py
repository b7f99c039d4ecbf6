"""compare(): timing, memory and quality rows plus a labelled side-by-side clip; the CLI."""
import argparse
import functools
import json
import os

import pytest
import torch
import torch.nn.functional as F

from taesdv_core.compare import LABEL_STRIP, add_cli, compare, decode_fn, format_table, side_by_side
from taesdv_core.engine import decode as engine_decode


def upsample(latents):  # a "decoder": 4 latent channels -> RGB at 8x
    x = latents[:, :, :3].sigmoid()
    return F.interpolate(x.flatten(0, 1), scale_factor=8).unflatten(0, latents.shape[:2])


def noisy(latents):
    g = torch.Generator().manual_seed(0)
    x = upsample(latents)
    return (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)


def test_rows_and_side_by_side_against_the_first_decoder():
    latents = torch.randn(1, 5, 4, 3, 4)
    frames, rows = compare([("exact", upsample), ("noisy", noisy)], latents, None, "cpu")
    assert frames.shape == (1, 5, 3, 24 + LABEL_STRIP, 32 * 2)
    assert [r["label"] for r in rows] == ["exact", "noisy"]
    assert rows[0]["psnr"] is None and rows[0]["ssim"] == 1.0 and rows[0]["flicker"] == 0
    assert "the reference" in rows[0]["note"]
    assert 20 < rows[1]["psnr"] < 35 and rows[1]["ssim"] < 1 and rows[1]["flicker"] > 0
    assert all(r["ms_per_frame"] >= 0 for r in rows)
    json.dumps(rows)  # JSON-able
    strip = frames[0, 0, :, :LABEL_STRIP]
    assert strip.max() > 0.5 and strip.mean() < 0.5  # light text on a dark strip
    assert torch.equal(frames[0, 0, :, LABEL_STRIP:, :32], upsample(latents)[0, 0])


def test_other_sizes_are_resized_and_lengths_truncated_with_a_note():
    latents = torch.randn(1, 6, 4, 3, 4)
    reference = upsample(latents)

    def small_and_short(x):
        return F.interpolate(upsample(x)[0, :4], scale_factor=0.5).unsqueeze(0)

    frames, rows = compare([("a", upsample), ("b", small_and_short)], latents, reference, "cpu")
    assert frames.shape[:3] == (1, 4, 3) and frames.shape[-1] == 32 * 3  # reference panel first
    assert "resized 16x12 -> 32x24" in rows[1]["note"] and "truncated 6 -> 4" in rows[0]["note"]
    assert rows[0]["psnr"] is None and rows[1]["psnr"] > 10


def test_cpu_peak_memory_sees_a_large_allocation():
    def hungry(latents):
        big = torch.ones(64 * 2 ** 20 // 4)  # 64 MiB, touched
        big += 1
        return upsample(latents) * big[0] / 2

    _, rows = compare([("hungry", hungry)], torch.randn(1, 2, 4, 2, 2), None, "cpu")
    if rows[0]["peak_memory_mb"] is None:
        pytest.skip("/proc/self/clear_refs is not available here")
    assert rows[0]["peak_memory_mb"] >= 60


def test_markdown_table():
    rows = [{"label": "x", "frames": 3, "ms_per_frame": 1.5, "peak_memory_mb": None, "psnr": None,
             "ssim": 1.0, "flicker": 0.0, "note": ""},
            {"label": "y", "frames": 3, "ms_per_frame": 2.0, "peak_memory_mb": 12.0, "psnr": 31.234,
             "ssim": 0.9, "flicker": 0.01, "note": "n"}]
    table = format_table(rows).splitlines()
    assert table[0].startswith("| decoder |") and len(table) == 4
    assert "| x | 3 | 1.50 | n/a | inf | 1.0000 | +0.0000 |" in table[2]
    assert "31.23" in table[3] and "+0.0100" in table[3]


def test_cli_writes_table_json_and_pngs(tmp_path, checkpoint_path):
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    latents = tmp_path / "latents.pt"
    torch.save(torch.randn(1, 3, 4, 4, 4), latents)
    out = tmp_path / "out"
    args = parser.parse_args(["compare", str(latents), "--decoder", f"taesdv={checkpoint_path}",
                              "--decoder", checkpoint_path, "--device", "cpu", "--out", str(out)])
    assert args.run(args) == 0
    rows = json.loads((out / "rows.json").read_text())
    assert [r["label"] for r in rows] == ["taesdv", "taesdv"] and rows[1]["psnr"] is None
    assert (out / "table.md").read_text().startswith("| decoder |")
    assert len(list(out.glob("side_by_side_*.png"))) == 3


def test_long_labels_wrap_to_their_panel_and_every_strip_has_the_same_height():
    frames = torch.rand(1, 2, 3, 24, 128)
    long = "taesd_decoder.pth (TAESD (SD1.x/SD2.x))"  # wider than 128 px in one line of 10 px text
    out = side_by_side([("taesdv.pth (TAESDV)", frames), (long, frames)])
    strip = out.shape[3] - 24
    assert strip == 2 * LABEL_STRIP  # the long label takes two lines; both panels keep the taller strip
    right_edge = out[0, 0, :, :strip, 128 - 3:128]
    assert right_edge.max() < 0.5  # nothing is cut at the panel's edge
    assert torch.equal(out[0, :, :, strip:, 128:], frames[0])


def test_each_decoder_peak_counts_what_it_needs_even_after_another_freed_memory():
    def hungry(latents):  # 64 MiB in 4 MiB pieces touched and freed on every call, as a decode's activations
        pieces = [torch.ones(2 ** 20) + i for i in range(16)]
        return upsample(latents) * pieces[0][0]

    _, rows = compare([("first", hungry), ("second", hungry)], torch.randn(1, 2, 4, 2, 2), None, "cpu")
    if rows[0]["peak_memory_mb"] is None:
        pytest.skip("/proc/self/clear_refs is not available here")
    assert rows[0]["peak_memory_mb"] >= 60 and rows[1]["peak_memory_mb"] >= 60  # not 0: freed memory was reused


def test_cli_maps_a_save_latent_file_for_each_decoder_as_comfyuis_vae_decode_does(tmp_path, checkpoint_path):
    from safetensors.torch import save_file

    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    vae_latents = torch.randn(3, 4, 4, 4)  # Save Latent: the VAE's latents, frames as the batch
    save_file({"latent_tensor": vae_latents, "latent_format_version_0": torch.tensor([])}, tmp_path / "x.latent")
    save_file({"latents": (vae_latents * 0.18215).unsqueeze(0)}, tmp_path / "x.safetensors")  # TAESDV's input
    pngs = {}
    for name in ("x.latent", "x.safetensors"):
        out = tmp_path / f"out-{name}"
        args = parser.parse_args(["compare", str(tmp_path / name), "--decoder", f"a={checkpoint_path}",
                                  "--decoder", f"b={checkpoint_path}", "--device", "cpu", "--out", str(out)])
        assert args.run(args) == 0
        pngs[name] = [p.read_bytes() for p in sorted(out.glob("side_by_side_*.png"))]
    assert len(pngs["x.latent"]) == 3 and pngs["x.latent"] == pngs["x.safetensors"]


@functools.cache
def node_peak_memory(checkpoint_path: str, frames: int, latent_size: int = 32) -> dict:
    """One run of the Compare node's execute in a fresh process (tests/compare_peak_memory.py: the
    host's modules on the CPU, no server, two decoders whose layers are a stand-in of the same
    output): one decoder's output, the side-by-side's bytes and the peak growth, in bytes."""
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare_peak_memory.py")
    r = subprocess.run([sys.executable, script, checkpoint_path, str(frames), str(latent_size), str(latent_size), "2"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    t, height, width, _ = m["image_shape"]
    assert t == frames and width == 2 * 8 * latent_size and height > 8 * latent_size
    output, growth = m["output_bytes"], m["peak_rss"] - m["baseline_rss"]
    side_by_side = t * height * width * 3 * 4
    print(f"compare peak, {frames} frames: one output {output / 2**20:.1f} MiB, side-by-side "
          f"{side_by_side / 2**20:.1f} MiB, peak over baseline {growth / 2**20:.1f} MiB, above the outputs "
          f"{(growth - 2 * output) / output:.1%} of one")
    return {"output": output, "side_by_side": side_by_side, "growth": growth}


def test_compare_node_holds_the_decoders_outputs_and_little_more(checkpoint_path):
    # Two decoders on 24 frames of 256 px: the side-by-side holds the two outputs and their label
    # strips (each decoder writes its panel piece by piece); above it only one piece of frames (1/32
    # of an output, at least a latent frame) and the metrics' bands (a few MiB, any length). Any
    # extra copy of an output would add 18 MiB; whole-clip float64 metrics added gigabytes, and the
    # old side-by-side 6 more outputs (126 MiB measured).
    m = node_peak_memory(checkpoint_path, 24)
    output, growth = m["output"], m["growth"]
    allowance = 4 * 2 ** 20  # the metrics' bands, allocator rounding, the table
    assert growth >= 1.5 * output  # the panels were really written (some pages come from memory freed before)
    assert growth <= m["side_by_side"] + output / 8 + allowance


def test_compare_nodes_memory_above_its_outputs_is_the_same_share_of_an_output_at_any_length(checkpoint_path):
    # The goal: what Compare holds above the decoders' two outputs (their label strips, 11% of an
    # output at 256 px; the latents; a piece of frames, 1/24 of an output at both lengths; the
    # metrics' bands) grows with the clip in proportion, at most 25% of one output. Measured 18%
    # and 17%. Frame-sized float64 temporaries in the metrics, glibc keeping the pieces' freed
    # memory and the metrics' buffers landing on fresh pages each time added 12 to 16 MiB at
    # 24 frames and 19 to 25 MiB at 72 (68-87% of an output against 38-47%).
    shares = []
    for frames in (24, 72):
        m = node_peak_memory(checkpoint_path, frames)
        shares.append((m["growth"] - 2 * m["output"]) / m["output"])
    assert max(shares) <= 0.25
    assert abs(shares[1] - shares[0]) <= 0.04


def nan_decoder(latents):
    x = upsample(latents)
    x[:, 1:] = float("nan")
    return x


@pytest.mark.parametrize("first", [False, True])
def test_a_clip_with_nan_is_not_reported_as_identical(first):
    latents = torch.randn(1, 3, 4, 3, 4)
    decoders = [("exact", upsample), ("nan", nan_decoder)]
    _, rows = compare(decoders[::-1] if first else decoders, latents, None, "cpu")
    measured = rows[1] if first else rows[0]
    broken = rows[0] if first else rows[1]
    assert broken["psnr"] is None and broken["ssim"] is None and broken["flicker"] is None
    assert "NaN" in broken["note"] or "reference" in broken["note"]
    for row in (rows if first else [broken]):  # against a NaN reference nothing is measured either
        assert row["ssim"] is None and "not measured" in row["note"]
    table = format_table(rows)
    nan_line = next(line for line in table.splitlines() if line.startswith(f"| {broken['label']} |"))
    assert [cell.strip() for cell in nan_line.split("|")[5:8]] == ["n/a"] * 3  # PSNR, SSIM, flicker
    if not first:
        assert measured["psnr"] is None and measured["ssim"] == 1.0  # the identical row still says inf
        assert "| inf |" in table.splitlines()[2]
    json.dumps(rows, allow_nan=False)


def test_a_reference_longer_than_the_decodes_is_noted():
    latents = torch.randn(1, 4, 4, 3, 4)
    reference = torch.cat([upsample(latents), upsample(latents)[:, :2]], 1)  # 6 frames, the decodes 4
    frames, rows = compare([("a", upsample), ("b", noisy)], latents, reference, "cpu")
    assert frames.shape[1] == 4
    assert all("reference truncated 6 -> 4 frames" in r["note"] for r in rows)
    assert rows[0]["psnr"] is None


@pytest.mark.parametrize("reference,message", [
    (torch.rand(2, 3, 3, 24, 32), "2 clips"),
    (torch.rand(3, 24, 32), "NTCHW or TCHW"),
    (torch.rand(1, 3, 4, 24, 32), "3 channels"),
    (torch.full((1, 3, 3, 24, 32), float("nan")), "NaN"),
])
def test_a_reference_that_does_not_fit_is_refused_by_name(reference, message):
    from taesdv_core.errors import InputError

    with pytest.raises(InputError, match="reference") as e:
        compare([("a", upsample)], torch.randn(1, 3, 4, 3, 4), reference, "cpu")
    assert message in str(e.value)


def test_a_side_by_side_that_does_not_fit_is_refused_with_the_figures_before_decoding():
    from taesdv_core.compare import Clip
    from taesdv_core.errors import InputError

    decoded = []

    def lazy(latents):  # a decoder giving its frames piece by piece: nothing decoded until asked
        pieces = (decoded.append(i) or upsample(latents[:, i:i + 1]) for i in range(latents.shape[1]))
        return Clip((1, latents.shape[1], 3, 24, 32), pieces)

    latents = torch.randn(1, 5, 4, 3, 4)
    with pytest.raises(InputError) as e:
        compare([("a", lazy), ("b", lazy)], latents, None, "cpu", free_bytes=100_000)
    # 5 frames, 2 panels of 32x24 under a 14 px strip: 5 * 38 * 64 * 3 * 4 bytes
    assert "2 panels of 5 frames of 32x24" in str(e.value) and "0.1 MiB" in str(e.value)
    assert "0.1 MiB is free" in str(e.value) or "0.10 MiB is free" in str(e.value)
    assert decoded == []
    frames, rows = compare([("a", lazy), ("b", lazy)], latents, None, "cpu", free_bytes=10 ** 9)
    assert torch.equal(frames[0, :, :, LABEL_STRIP:, :32], upsample(latents)[0])
    assert rows[1]["psnr"] is None and decoded == list(range(5)) * 2


@pytest.mark.parametrize("family", ["TAE192Decoder", "TemporalTAEDecoder"])
def test_memoryless_and_windowed_decoders_give_in_pieces_what_they_give_whole(family):
    # Compare decodes each clip as one stream in pieces; these decoders carry no memory between
    # pieces (the engine then read memory[0] of an empty list) or need whole windows of 8 frames.
    from taesdv_core import engine, fast_latent_decoders
    torch.manual_seed(0)
    decoder = getattr(fast_latent_decoders, family)().eval()
    torch.nn.init.constant_(decoder.layers[-1].bias, 0.5)  # random init alone gives frames clamped to 0
    latents = torch.randn(1, 40, decoder.latent_channels, 3, 4)  # 40 latent frames: several pieces
    frames, rows = compare([("pieces", decode_fn(decoder))], latents, None, "cpu")
    whole = engine.decode(decoder, latents)[0]
    assert whole.std() > 0.01 and torch.equal(frames[0, :, :, -whole.shape[-2]:], whole)  # under the label
    assert rows[0]["frames"] == 40


WEIGHTS = "/work/shared/weights"
MEDIA = "/work/shared/media/taesdv_test_video.gif"


@pytest.mark.skipif(not os.path.isfile(os.path.join(WEIGHTS, "taef2_decoder.pth")) or not os.path.isfile(MEDIA),
                    reason="real weights (../shared/weights/taef2_*.pth) or the real clip (../shared/media) absent")
def test_quality_of_a_real_round_trip_matches_an_independent_computation():
    # The FLUX.2 tiny autoencoder's round trip of the real clip, measured by compare() against the clip,
    # and by scipy in float64 on whole arrays (Gaussian filter, sigma 1.5, 11 taps: truncate 3.5).
    import numpy as np
    from scipy.ndimage import gaussian_filter

    from taesdv_core.compare import load_decoder
    from taesdv_core.engine import encode
    from taesdv_core.loading import load_autoencoder
    from taesdv_core.media import read_frames

    frames, _ = read_frames(MEDIA, 8)
    encoder = load_autoencoder(os.path.join(WEIGHTS, "taef2_encoder.pth"), torch.float32, torch.device("cpu")).encoder
    decoder = load_decoder(os.path.join(WEIGHTS, "taef2_decoder.pth"), torch.device("cpu"))
    latents = encode(encoder, frames[None])
    _, rows = compare([("taef2", decode_fn(decoder))], latents, frames[None], "cpu")
    decoded = engine_decode(decoder, latents)[0].double().numpy()
    reference = frames.double().numpy()
    mse = ((decoded - reference) ** 2).mean()

    def blur(x):
        return gaussian_filter(x, sigma=(0, 0, 1.5, 1.5), truncate=3.5)[..., 5:-5, 5:-5]

    mu_a, mu_b = blur(decoded), blur(reference)
    var_a, var_b = blur(decoded ** 2) - mu_a ** 2, blur(reference ** 2) - mu_b ** 2
    cov = blur(decoded * reference) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim_map = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    flicker = np.abs(np.diff(decoded, axis=0)).mean() - np.abs(np.diff(reference, axis=0)).mean()
    print(f"real round trip: PSNR {rows[0]['psnr']} dB, SSIM {rows[0]['ssim']}, flicker {rows[0]['flicker']}")
    assert rows[0]["psnr"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-3)
    assert rows[0]["ssim"] == pytest.approx(ssim_map.mean(), abs=1e-4)
    assert rows[0]["flicker"] == pytest.approx(flicker, abs=1e-5)
    assert 12 < rows[0]["psnr"] < 30  # a real picture came through (README: about 19 dB on this dithered clip)
