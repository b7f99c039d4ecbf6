"""`python -m taesdv_core`: decode, encode and round-trip without ComfyUI; bad input exits non-zero."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import reference_taehv
from helpers import cli, random_image_taesd
from reference_taesdv import reference_decode, reference_encode
from taesdv_core import decode
from taesdv_core.keyframes import expand_keyframes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def latents_file(tmp_path_factory):
    latents = torch.randn(1, 6, 4, 5, 7, generator=torch.Generator().manual_seed(3))
    path = tmp_path_factory.mktemp("cli") / "latents.safetensors"
    save_file({"latents": latents}, path)
    return path, latents


@pytest.mark.parametrize("mode,chunk", [("parallel", None), ("chunked", 4), ("chunked", None), ("stream", 1), ("stream", 4)])
def test_decode_to_safetensors_equals_reference_in_every_mode(tmp_path, checkpoint_path, state_dict, latents_file, mode, chunk):
    path, latents = latents_file
    out = tmp_path / "frames.safetensors"
    args = ["decode", path, "-w", checkpoint_path, "-o", out, "--mode", mode] + (["--chunk", chunk] if chunk else [])
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    frames = load_file(out)["frames"]
    assert frames.shape == (1, 6, 3, 40, 56) and frames.dtype == torch.float32
    assert (frames - reference_decode(state_dict, latents).clamp(0, 1)).abs().max() < 1e-5


def test_decode_comfy_latent_file_is_unscaled_first(tmp_path, checkpoint_path, state_dict):
    model_space = torch.randn(5, 4, 4, 4)
    save_file({"latent_tensor": model_space / 0.18215, "latent_format_version_0": torch.tensor([])}, tmp_path / "x.latent")
    r = cli("decode", tmp_path / "x.latent", "-w", checkpoint_path, "-o", tmp_path / "f.safetensors")
    assert r.returncode == 0, r.stderr
    expected = reference_decode(state_dict, model_space.unsqueeze(0)).clamp(0, 1)
    assert (load_file(tmp_path / "f.safetensors")["frames"] - expected).abs().max() < 1e-5


@pytest.mark.parametrize("out,check", [
    ("pngs", lambda p: sorted(os.listdir(p)) == [f"frame_{i:05d}.png" for i in range(6)]),
    ("anim.webp", lambda p: Image.open(p).n_frames == 6),
    ("anim.gif", lambda p: Image.open(p).n_frames == 6),
    ("clip.mp4", lambda p: os.path.getsize(p) > 0),
])
def test_decode_to_images_and_animations(tmp_path, checkpoint_path, latents_file, out, check):
    r = cli("decode", latents_file[0], "-w", checkpoint_path, "-o", tmp_path / out, "--mode", "stream")
    assert r.returncode == 0, r.stderr
    assert check(tmp_path / out)


def png_folder(folder, seed, shape):
    """Random uint8 frames (T, H, W, 3) written to `folder` as 000.png, 001.png, ...; returns them."""
    frames = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    os.makedirs(folder)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:03d}.png")
    return frames


def test_encode_folder_of_images_equals_reference(tmp_path, checkpoint_path, state_dict):
    frames = png_folder(tmp_path / "in", seed=0, shape=(3, 24, 32, 3))
    r = cli("encode", tmp_path / "in", "-w", checkpoint_path, "-o", tmp_path / "lat.safetensors")
    assert r.returncode == 0, r.stderr
    latents = load_file(tmp_path / "lat.safetensors")["latents"]
    expected = reference_encode(state_dict, torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)[None])
    assert latents.shape == (1, 3, 4, 3, 4)
    assert (latents - expected).abs().max() < 1e-4


def test_roundtrip_video(tmp_path, checkpoint_path, latents_file):
    assert cli("decode", latents_file[0], "-w", checkpoint_path, "-o", tmp_path / "in.mp4").returncode == 0
    r = cli("roundtrip", tmp_path / "in.mp4", "-w", checkpoint_path, "-o", tmp_path / "out.gif")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "out.gif").n_frames == 6


@pytest.mark.parametrize("make,args,message", [
    (None, ["decode", "{tmp}/missing.safetensors", "-o", "{tmp}/o.gif"], "does not exist"),
    ("wrong_key", ["decode", "{tmp}/wrong.safetensors", "-o", "{tmp}/o.gif"], "no 'latents' or 'latent_tensor' key"),
    ("sixteen", ["decode", "{tmp}/wan.safetensors", "-o", "{tmp}/o.gif"], "16 channels"),
    ("nan", ["decode", "{tmp}/nan.safetensors", "-o", "{tmp}/o.gif"], "NaN"),
    ("ok", ["decode", "{tmp}/ok.safetensors", "-o", "{tmp}/o.xyz"], "unknown output type"),
    ("ok", ["decode", "{tmp}/ok.safetensors", "-o", "{tmp}/o.gif", "--chunk", "0"], "positive number"),
    ("ok", ["decode", "{tmp}/ok.safetensors", "-o", "{tmp}/o.gif", "--device", "cuda:7"], "CUDA is not available|cuda"),
    (None, ["encode", "{tmp}/nofolder", "-o", "{tmp}/o.safetensors"], "does not exist"),
])
def test_bad_input_gives_a_clear_message_and_exit_code_2(tmp_path, checkpoint_path, make, args, message):
    if make == "wrong_key":
        save_file({"x": torch.zeros(1)}, tmp_path / "wrong.safetensors")
    elif make == "sixteen":
        save_file({"latents": torch.zeros(1, 2, 16, 4, 4)}, tmp_path / "wan.safetensors")
    elif make == "nan":
        save_file({"latents": torch.full((1, 2, 4, 4, 4), float("nan"))}, tmp_path / "nan.safetensors")
    elif make == "ok":
        save_file({"latents": torch.zeros(1, 2, 4, 4, 4)}, tmp_path / "ok.safetensors")
    r = cli(*[a.format(tmp=tmp_path) for a in args], "-w", checkpoint_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert __import__("re").search(message, r.stderr), r.stderr


def test_bad_weights_give_a_clear_message(tmp_path, latents_file):
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint at all")
    r = cli("decode", latents_file[0], "-w", tmp_path / "bad.pth", "-o", tmp_path / "o.gif")
    assert r.returncode == 2 and "error: checkpoint 'bad.pth'" in r.stderr and "Traceback" not in r.stderr


def test_pip_install_gives_a_taesdv_command_that_works_from_any_folder(tmp_path, checkpoint_path, latents_file):
    import sysconfig

    # A fresh venv that sees this Python's packages (torch & co.), as --system-site-packages would.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "host_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                        "--no-deps", "--no-build-isolation", "-e", ROOT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = elsewhere / "frames.safetensors"
    r = subprocess.run([str(venv / "bin" / "taesdv"), "decode", str(latents_file[0]), "-w", checkpoint_path, "-o", str(out)],
                       cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert load_file(out)["frames"].shape == (1, 6, 3, 40, 56)


def test_every_option_of_every_subcommand_has_help_and_encode_has_no_fps():
    from taesdv_core.__main__ import build_parser

    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert set(subcommands) == {"decode", "encode", "roundtrip", "compare"}
    for name, sub in subcommands.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"
    assert "--fps" not in subcommands["encode"]._option_string_actions
    assert cli("encode", "x", "-w", "w.pth", "-o", "o.safetensors", "--fps", "8").returncode == 2  # argparse: unknown option


def test_missing_weights_give_command_line_advice(tmp_path, latents_file):
    r = cli("decode", latents_file[0], "-w", tmp_path / "taesdv.pth", "-o", tmp_path / "o.gif")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "-w/--weights: file not found" in r.stderr and "scripts/fetch_weights.py" in r.stderr
    assert "https://github.com/madebyollin/taesdv/raw/main/taesdv.pth" in r.stderr
    assert "models/vae_approx" not in r.stderr
    r = cli("decode", latents_file[0], "-w", tmp_path / "taew2_1.safetensors", "-o", tmp_path / "o.gif")
    assert r.returncode == 2 and "the official taew2_1.safetensors comes from https://github.com/madebyollin/taehv" in r.stderr


def test_compare_writes_a_table_and_side_by_side_frames(tmp_path, checkpoint_path):
    from safetensors.torch import save_file

    from taesdv_core.__main__ import main

    latents = tmp_path / "latents.safetensors"
    save_file({"latents": torch.randn(1, 3, 4, 4, 4)}, str(latents))
    out = tmp_path / "cmp"
    assert main(["compare", str(latents), "--decoder", f"a={checkpoint_path}", "--decoder", f"b={checkpoint_path}",
                 "--device", "cpu", "--out", str(out)]) == 0
    rows = json.loads((out / "rows.json").read_text())
    assert [r["label"] for r in rows] == ["a", "b"] and rows[1]["psnr"] is None  # identical decoders: infinite PSNR
    assert (out / "table.md").read_text().startswith("| decoder |")
    assert sorted(p.name for p in out.glob("side_by_side_*.png"))[:1] == ["side_by_side_0000.png"]


# -- every family through the one loader ---------------------------------------------------------

@pytest.fixture(scope="module")
def taehv_files(tmp_path_factory):
    """Random-weight TAEHV files of two layouts: Wan 2.1 (16 ch, 8x space) and Wan 2.2 5B (48 ch, patch 2: 16x)."""
    folder = tmp_path_factory.mktemp("taehv")
    files = {}
    for variant in ("wan2_1", "wan2_2"):
        sd = reference_taehv.random_state_dict(variant, seed=1)
        save_file(sd, folder / f"{variant}.safetensors")
        files[variant] = (folder / f"{variant}.safetensors", sd)
    return files


@pytest.mark.parametrize("variant,channels,scale", [("wan2_1", 16, 8), ("wan2_2", 48, 16)])
def test_a_taehv_file_decodes_raw_latents_into_4t_minus_3_frames_at_its_scale(tmp_path, taehv_files, variant, channels, scale):
    path, sd = taehv_files[variant]
    latents = torch.randn(1, 3, channels, 3, 4, generator=torch.Generator().manual_seed(2))  # as the video model makes them
    save_file({"latents": latents}, tmp_path / "latents.safetensors")
    r = cli("decode", tmp_path / "latents.safetensors", "-w", path, "-o", tmp_path / "frames.safetensors")
    assert r.returncode == 0, r.stderr
    frames = load_file(tmp_path / "frames.safetensors")["frames"]
    assert frames.shape == (1, 4 * 3 - 3, 3, 3 * scale, 4 * scale)
    expected = reference_taehv.reference_decode(sd, latents).clamp(0, 1)  # no scale, no shift
    assert (frames - expected).abs().max() < 1e-4
    assert f"decoded 1x9 frames of {4 * scale}x{3 * scale}" in r.stdout


def test_a_taehv_file_encodes_and_round_trips_a_clip_of_1_plus_4k_frames(tmp_path, taehv_files):
    path, sd = taehv_files["wan2_1"]
    frames = png_folder(tmp_path / "in", seed=1, shape=(9, 24, 40, 3))
    r = cli("encode", tmp_path / "in", "-w", path, "-o", tmp_path / "lat.safetensors")
    assert r.returncode == 0, r.stderr
    latents = load_file(tmp_path / "lat.safetensors")["latents"]
    expected = reference_taehv.reference_encode(sd, torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)[None])
    assert latents.shape == (1, 3, 16, 3, 5)  # 9 frames padded to 12, pooled 4x; 8x space
    assert (latents - expected).abs().max() < 1e-4
    r = cli("roundtrip", tmp_path / "in", "-w", path, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert len(os.listdir(tmp_path / "out")) == 9
    assert "round-tripped 9 frames -> 9 frames (TAEHV" in r.stdout


def test_an_image_taesd_file_decodes_n_latent_frames_into_n_independent_images(tmp_path):
    from taesdv_core.taesd import TAESDDecoder

    sd = random_image_taesd("decoder", seed=3)
    torch.save(sd, tmp_path / "taesd_decoder.pth")
    latents = torch.randn(1, 5, 4, 4, 6, generator=torch.Generator().manual_seed(4))
    save_file({"latents": latents}, tmp_path / "latents.safetensors")
    r = cli("decode", tmp_path / "latents.safetensors", "-w", tmp_path / "taesd_decoder.pth", "-o", tmp_path / "f.safetensors")
    assert r.returncode == 0, r.stderr
    frames = load_file(tmp_path / "f.safetensors")["frames"]
    decoder = TAESDDecoder(4)
    decoder.load_state_dict(sd)
    each_alone = torch.cat([decode(decoder.eval(), latents[:, i:i + 1]) for i in range(5)], 1)  # no memory between frames
    assert frames.shape == (1, 5, 3, 32, 48)
    assert (frames - each_alone).abs().max() < 1e-5


@pytest.mark.parametrize("file,scale", [("taesdxl_decoder.pth", 0.13025), ("taew2_1.safetensors", 1.0)])
def test_a_save_latent_file_is_mapped_as_comfyuis_vae_decode_maps_it_for_that_file(tmp_path, taehv_files, file, scale):
    if file.startswith("taesdxl"):
        torch.save(random_image_taesd("decoder", seed=5), tmp_path / file)
        vae_latents = torch.randn(3, 4, 4, 4)  # an SDXL LATENT: frames as the batch
        model_space = vae_latents[None] * scale
    else:
        save_file(taehv_files["wan2_1"][1], tmp_path / file)
        vae_latents = torch.randn(1, 16, 2, 3, 4)  # a Wan LATENT [B, C, T, h, w]: TAEHV takes it as is
        model_space = vae_latents.movedim(1, 2).contiguous()
    save_file({"latent_tensor": vae_latents, "latent_format_version_0": torch.tensor([])}, tmp_path / "x.latent")
    save_file({"latents": model_space}, tmp_path / "x.safetensors")
    for source in ("x.latent", "x.safetensors"):
        r = cli("decode", tmp_path / source, "-w", tmp_path / file, "-o", tmp_path / f"{source}.safetensors")
        assert r.returncode == 0, r.stderr
    assert torch.equal(load_file(tmp_path / "x.latent.safetensors")["frames"],
                       load_file(tmp_path / "x.safetensors.safetensors")["frames"])


def test_encoding_with_a_file_without_an_encoder_is_refused_naming_what_to_load(tmp_path):
    torch.save(random_image_taesd("decoder"), tmp_path / "taesd_decoder.pth")
    Image.new("RGB", (16, 16)).save(tmp_path / "one.png")
    for command in ("encode", "roundtrip"):
        r = cli(command, tmp_path / "one.png", "-w", tmp_path / "taesd_decoder.pth", "-o", tmp_path / "o.safetensors")
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "taesd_decoder.pth' (TAESD (SD1.x/SD2.x) image decoder" in r.stderr
        assert "has no encoder" in r.stderr and "the matching _encoder/_decoder file" in r.stderr


def test_a_picture_given_as_latents_is_refused_pointing_to_encode(tmp_path, checkpoint_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "one.png")
    r = cli("decode", tmp_path / "one.png", "-w", checkpoint_path, "-o", tmp_path / "o.webp")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "one.png' is not a readable safetensors/.latent file" in r.stderr
    assert "frames go through 'encode' first" in r.stderr


@pytest.mark.parametrize("channels,hint", [(4, "4-channel latents come from SD1.x"), (48, "load taew2_2")])
def test_latents_of_another_width_are_refused_naming_the_file_that_fits(tmp_path, taehv_files, channels, hint):
    save_file({"latents": torch.zeros(1, 2, channels, 4, 4)}, tmp_path / "l.safetensors")
    r = cli("decode", tmp_path / "l.safetensors", "-w", taehv_files["wan2_1"][0], "-o", tmp_path / "o.gif")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"latents have {channels} channels" in r.stderr and "expects 16" in r.stderr and hint in r.stderr


def test_a_save_latent_file_of_another_model_is_refused_in_the_nodes_words(tmp_path, checkpoint_path):
    save_file({"latent_tensor": torch.zeros(1, 16, 3, 4, 4), "latent_format_version_0": torch.tensor([])},
              tmp_path / "wan.latent")
    r = cli("decode", tmp_path / "wan.latent", "-w", checkpoint_path, "-o", tmp_path / "o.gif")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert re.search(r"the LATENT has 16 channels \(shape \(1, 16, 3, 4, 4\)\); TAESDV expects 4.*Wan", r.stderr), r.stderr


# -- CV-VAE keyframes ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["repeat", "blend"])
def test_keyframes_fill_cv_vae_latents_as_the_keyframe_core_does(tmp_path, checkpoint_path, state_dict, latents_file, mode):
    path, latents = latents_file  # 6 latent frames: 6 keyframes, 1 + 4 * 5 frames
    r = cli("decode", path, "-w", checkpoint_path, "-o", tmp_path / "f.safetensors", "--keyframes", mode)
    assert r.returncode == 0, r.stderr
    expected = expand_keyframes(reference_decode(state_dict, latents).clamp(0, 1), mode)
    frames = load_file(tmp_path / "f.safetensors")["frames"]
    assert frames.shape[1] == 21 and (frames - expected).abs().max() < 1e-5
    assert "decoded 1x21 frames" in r.stdout


@pytest.mark.parametrize("args,message", [
    (["--keyframes", "blend", "--mode", "stream"], "use --mode chunked or parallel"),
    (["--keyframes", "repeat", "-w", "{taehv}"], "already decodes 4 frames per latent frame"),
])
def test_keyframes_are_refused_where_they_cannot_apply(tmp_path, checkpoint_path, latents_file, taehv_files, args, message):
    args = [a.format(taehv=taehv_files["wan2_1"][0]) for a in args]
    weights = [] if "-w" in args else ["-w", checkpoint_path]
    r = cli("decode", latents_file[0], "-o", tmp_path / "o.gif", *weights, *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr and message in r.stderr, r.stderr


# -- every bad input is `error: ...` and exit 2 ---------------------------------------------------

def corrupt_png_folder(folder):
    png_folder(folder, seed=2, shape=(3, 16, 16, 3))
    (folder / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 10)


@pytest.mark.parametrize("command,output,message", [
    ("decode", "{tmp}/taken.webp", "is a folder"),          # an existing folder named as a file
    ("decode", "{tmp}/plain/o.webp", "cannot write"),       # under a regular file
    ("decode", "{tmp}/plain/frames", "cannot write"),       # a folder output under a regular file
    ("decode", "/proc/x.webp", "cannot write"),
    ("encode", "{tmp}/plain/o.safetensors", "cannot write"),
    ("encode", "{tmp}/ok.safetensors", "001.png"),          # a corrupt PNG among the frames
    ("roundtrip", "{tmp}/o.gif", "001.png"),
])
def test_unwritable_outputs_and_unreadable_frames_are_refused_before_any_work(tmp_path, checkpoint_path, latents_file,
                                                                             command, output, message):
    (tmp_path / "taken.webp").mkdir()
    (tmp_path / "plain").write_text("a regular file")
    corrupt_png_folder(tmp_path / "frames")
    source = latents_file[0] if command == "decode" else tmp_path / "frames"
    r = cli(command, source, "-w", checkpoint_path, "-o", output.format(tmp=tmp_path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.startswith("error: ") and message in r.stderr, r.stderr


def test_decode_of_latents_whose_frames_cannot_fit_is_refused_with_the_figures(tmp_path, checkpoint_path, capsys,
                                                                               monkeypatch):
    from taesdv_core import __main__ as main_module

    save_file({"latents": torch.zeros(1, 40, 4, 16, 16)}, tmp_path / "long.safetensors")  # 40 frames of 128x128: 7.5 MiB
    monkeypatch.setattr(main_module, "memory_available", lambda: 4 * 2 ** 20)
    assert main_module.main(["decode", str(tmp_path / "long.safetensors"), "-w", checkpoint_path,
                             "-o", str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "40 frames of 128x128" in err and "7.5 MiB" in err and "4.0 MiB" in err and "--mode stream" in err
    assert not (tmp_path / "o.safetensors").exists()
    monkeypatch.setattr(main_module, "memory_available", lambda: 2 ** 30)
    assert main_module.main(["decode", str(tmp_path / "long.safetensors"), "-w", checkpoint_path,
                             "-o", str(tmp_path / "o.safetensors")]) == 0


@pytest.fixture
def compare_inputs(tmp_path):
    save_file({"latents": torch.randn(1, 3, 4, 4, 4)}, tmp_path / "l.safetensors")
    save_file({"latents": torch.full((1, 3, 4, 4, 4), float("nan"))}, tmp_path / "nan.safetensors")
    torch.save(torch.rand(2, 3, 3, 32, 32), tmp_path / "two_clips.pt")
    torch.save(torch.rand(3, 32, 32), tmp_path / "three_d.pt")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (tmp_path / "plain").write_text("a regular file")
    return tmp_path


@pytest.mark.parametrize("args,message", [
    (["{tmp}/nan.safetensors"], "NaN"),
    (["{tmp}/l.safetensors", "--device", "foo"], "--device 'foo' is not a torch device"),
    (["{tmp}/l.safetensors", "--reference", "{tmp}/two_clips.pt"], "2 clips"),
    (["{tmp}/l.safetensors", "--reference", "{tmp}/three_d.pt"], "NTCHW or TCHW"),
    (["{tmp}/l.safetensors", "--reference", "{tmp}/objects.npy"], "objects.npy"),
    (["{tmp}/l.safetensors", "--out", "{tmp}/plain/cmp"], "cannot write"),
])
def test_compare_refuses_bad_input_with_a_clear_message_and_exit_code_2(compare_inputs, checkpoint_path, args, message):
    r = cli("compare", *[a.format(tmp=compare_inputs) for a in args], "--decoder", f"a={checkpoint_path}",
            "--decoder", f"b={checkpoint_path}", *([] if "--device" in args else ["--device", "cpu"]),
            *([] if "--out" in args else ["--out", compare_inputs / "cmp"]))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.startswith("error: ") and message in r.stderr, r.stderr
