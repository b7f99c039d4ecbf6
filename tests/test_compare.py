"""compare(): timing, memory and quality rows plus a labelled side-by-side clip; the CLI."""
import argparse
import json

import pytest
import torch
import torch.nn.functional as F

from taesdv_core.compare import LABEL_STRIP, add_cli, compare, format_table, side_by_side


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
