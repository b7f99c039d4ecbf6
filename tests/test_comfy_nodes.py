"""The nodes on the real ComfyUI server (TAESDV_TEST_HOST, 0.33.0 unless set), driven through POST /prompt and the websocket."""
import io
import os
import re
import urllib.parse

import numpy as np
import pytest
import torch
from PIL import Image

import graphs
from comfy_host import pack_load_problems
from helpers import clip_latents, saved, unique
from reference_taesdv import reference_decode, reference_encode

NODE_IDS = ["TAESDVLoader", "TAESDVDecode", "TAESDVStreamingDecode", "TAESDVEncode"]


def test_server_log_shows_the_pack_loaded_without_errors(comfy):
    assert pack_load_problems(comfy.log()) == []


HOST_LOG = """\
Traceback (most recent call last):
  File "{root}/.host/ComfyUI/nodes.py", line 2146, in load_custom_node
    module_spec.loader.exec_module(module)
  File "{root}/.host/ComfyUI/comfy_extras/nodes_upscale_model.py", line 2, in <module>
    from spandrel import ModelLoader, ImageModelDescriptor
ModuleNotFoundError: No module named 'spandrel'

Cannot import {root}/.host/ComfyUI/comfy_extras/nodes_upscale_model.py module for custom nodes: No module named 'spandrel'
IMPORT FAILED: nodes_upscale_model.py

Import times for custom nodes:
   0.0 seconds: {base}/custom_nodes/taesdv_test_nodes
   0.1 seconds: {base}/custom_nodes/ComfyUI-TAESDV

"""
PACK_ERROR = """\
Traceback (most recent call last):
  File "{root}/.host/ComfyUI/execution.py", line 277, in process_inputs
    result = f(**inputs)
  File "{base}/custom_nodes/ComfyUI-TAESDV/nodes/load.py", line 61, in execute
    model = load_taesdv(path)
RuntimeError: boom

"""


def test_log_check_blames_the_pack_only_for_its_own_modules_and_frames(tmp_path):
    # A checkout whose folder is named like the pack: every host path then contains the pack's name.
    root = tmp_path / "ComfyUI-TAESDV"
    for d in ("nodes", ".host/ComfyUI/comfy_extras"):
        os.makedirs(root / d)
    base = tmp_path / "base"
    os.makedirs(base / "custom_nodes")
    os.symlink(root, base / "custom_nodes" / "ComfyUI-TAESDV")
    fill = {"root": root, "base": base}
    assert pack_load_problems(HOST_LOG.format(**fill), pack_root=str(root)) == []
    assert len(pack_load_problems(HOST_LOG.format(**fill) + PACK_ERROR.format(**fill), pack_root=str(root))) == 1
    failed = HOST_LOG.format(**fill).replace("0.1 seconds:", "0.1 seconds (IMPORT FAILED):")
    failed += f"Cannot import {base}/custom_nodes/ComfyUI-TAESDV module for custom nodes: No module named 'x'\n"
    assert len(pack_load_problems(failed, pack_root=str(root))) == 2


def test_loader_offers_tf32_beside_exact_fp32(comfy):
    spec = comfy.get_json("/object_info/TAESDVLoader")["TAESDVLoader"]["input"]["required"]["dtype"]
    options = spec[1]["options"] if isinstance(spec[1], dict) and "options" in spec[1] else spec[0]
    assert options == ["auto", "fp32", "fp16", "bf16", "tf32"]


def test_every_node_and_input_has_a_tooltip_and_description(comfy):
    info = comfy.get_json("/object_info")
    for node_id in NODE_IDS:
        node = info[node_id]
        assert node["description"] and node["category"] == "TAESDV"
        for name, spec in node["input"]["required"].items():
            assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert all(node["output_tooltips"]), node_id


def test_loader_lists_every_tiny_autoencoder_checkpoint_taesdv_first(comfy):
    vae_approx = os.path.join(comfy.base, "models", "vae_approx")
    for other in ("taesd_decoder.pth", "taew2_1.safetensors", "notes.txt"):
        open(os.path.join(vae_approx, other), "wb").close()
    try:
        options = comfy.get_json("/object_info/TAESDVLoader")["TAESDVLoader"]["input"]["required"]["model_name"][1]["options"]
        assert options == ["taesdv.pth", "taesd_decoder.pth", "taew2_1.safetensors"]
    finally:
        for other in ("taesd_decoder.pth", "taew2_1.safetensors", "notes.txt"):
            os.remove(os.path.join(vae_approx, other))


def test_eight_frame_latent_batch_decodes_to_saved_images_equal_to_the_reference(comfy, state_dict):
    prefix = unique("batch")
    graph = {"1": graphs.loader(), "2": graphs.latent_clip(frames=8, height=4, width=5, seed=1),
             "3": graphs.decode(), "4": graphs.save_image("3", prefix), "5": graphs.save_tensor(prefix, images="3")}
    run = comfy.run(graph)
    assert run.succeeded, run.error_text()
    expected = reference_decode(state_dict, clip_latents(8, 4, 5, seed=1)).clamp(0, 1)[0].permute(0, 2, 3, 1)
    assert (saved(comfy, prefix)["images"] - expected).abs().max() < 1e-5
    images = run.outputs("4")["images"]
    assert len(images) == 8
    for i, meta in enumerate(images):
        png = comfy.get_bytes("/view?" + urllib.parse.urlencode(meta))
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.float32) / 255
        assert pixels.shape == (32, 40, 3)
        assert np.abs(pixels - expected[i].numpy()).max() <= 1 / 255 + 1e-6


def test_five_dimensional_video_latents_decode_as_clips(comfy, state_dict):
    name = unique("video5d")
    run = comfy.run(graphs.decode_graph(name, frames=5, video_5d=True, seed=2))
    assert run.succeeded, run.error_text()
    expected = reference_decode(state_dict, clip_latents(5, seed=2)).clamp(0, 1)[0].permute(0, 2, 3, 1)
    assert (saved(comfy, name)["images"] - expected).abs().max() < 1e-5


@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_chunk_size_does_not_change_the_frames(comfy, state_dict, chunk):
    name = unique(f"chunk{chunk}")
    graph = graphs.decode_graph(name, frames=7, seed=3)
    graph["3"]["inputs"]["chunk_frames"] = chunk
    assert comfy.run(graph).succeeded
    expected = reference_decode(state_dict, clip_latents(7, seed=3)).clamp(0, 1)[0].permute(0, 2, 3, 1)
    assert (saved(comfy, name)["images"] - expected).abs().max() < 1e-5


def test_images_encode_to_latents_ready_for_a_sampler_and_decode_back(comfy, state_dict):
    name = unique("roundtrip")
    graph = {"1": graphs.loader(), "2": graphs.latent_clip(frames=4, seed=4), "3": graphs.decode(),
             "4": graphs.encode(pixels="3"), "5": graphs.decode(samples="4"),
             "6": graphs.save_tensor(name, samples="4", images="5")}
    run = comfy.run(graph)
    assert run.succeeded, run.error_text()
    frames = reference_decode(state_dict, clip_latents(4, seed=4)).clamp(0, 1)
    expected_latents = reference_encode(state_dict, frames)[0] / 0.18215
    out = saved(comfy, name)
    assert out["samples"].shape == (4, 4, 4, 4)  # unscaled, frames as the batch
    assert (out["samples"] - expected_latents).abs().max() / expected_latents.abs().max() < 1e-4
    redecoded = reference_decode(state_dict, (out["samples"] * 0.18215)[None]).clamp(0, 1)[0].permute(0, 2, 3, 1)
    assert (out["images"] - redecoded).abs().max() < 1e-4


def test_stream_decoded_over_three_queued_runs_equals_one_batch_decode(comfy, state_dict):
    stream_name = unique("stream")
    pieces = [(0, 3), (3, 2), (5, 4)]
    got = []
    for i, (start, count) in enumerate(pieces):
        name = unique(f"piece{i}")
        graph = {"1": graphs.loader(), "2": graphs.latent_clip(frames=9, seed=5, start=start, count=count),
                 "3": graphs.stream(name=stream_name, reset=(i == 0)), "4": graphs.save_tensor(name, images="3")}
        run = comfy.run(graph)
        assert run.succeeded, run.error_text()
        got.append(saved(comfy, name)["images"])
    expected = reference_decode(state_dict, clip_latents(9, seed=5)).clamp(0, 1)[0].permute(0, 2, 3, 1)
    assert (torch.cat(got) - expected).abs().max() < 1e-5


def test_stream_reset_starts_a_new_clip(comfy, state_dict):
    stream_name = unique("reset")
    for seed in (6, 7):
        name = unique("r")
        graph = {"1": graphs.loader(), "2": graphs.latent_clip(frames=3, seed=seed),
                 "3": graphs.stream(name=stream_name, reset=True), "4": graphs.save_tensor(name, images="3")}
        assert comfy.run(graph).succeeded
    expected = reference_decode(state_dict, clip_latents(3, seed=7)).clamp(0, 1)[0].permute(0, 2, 3, 1)
    assert (saved(comfy, name)["images"] - expected).abs().max() < 1e-5


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "tf32"])
def test_loader_dtypes_decode(comfy, dtype):
    name = unique(dtype)
    graph = graphs.decode_graph(name, frames=2)
    graph["1"]["inputs"]["dtype"] = dtype
    run = comfy.run(graph)
    assert run.succeeded, run.error_text()
    assert saved(comfy, name)["images"].shape == (2, 32, 32, 3)


def test_wrong_channel_count_fails_with_a_message_and_the_server_keeps_serving(comfy):
    run = comfy.run({"1": graphs.loader(), "2": graphs.latent_clip(frames=2, channels=16), "3": graphs.decode(),
                     "4": graphs.save_tensor(unique("bad"), images="3")})
    assert not run.succeeded
    assert re.search(r"16 channels.*TAESDV expects 4.*Wan", run.error_text()), run.error_text()
    assert run.error["exception_type"] == "taesdv.InputError"
    name = unique("after")
    assert comfy.run(graphs.decode_graph(name, frames=2)).succeeded


def test_a_wan_taehv_file_decodes_video_latents_as_comfyuis_own_vae_decode_does(comfy):
    # The same random taew2_1-layout file through Load TAESDV + TAESDV Decode Batch and through the
    # host's Load VAE + VAE Decode: the frames must match (the host leaves them unclamped).
    from reference_taehv import random_state_dict
    from safetensors.torch import save_file

    sd = random_state_dict("wan2_1", seed=3)
    name = unique("taew2_1") + ".safetensors"
    for folder in ("vae_approx", "vae"):
        os.makedirs(os.path.join(comfy.base, "models", folder), exist_ok=True)
        save_file(sd, os.path.join(comfy.base, "models", folder, name))
    ours, host = unique("ours"), unique("host")
    graph = {"1": graphs.loader(name=name), "2": graphs.latent_clip(frames=3, height=4, width=6, channels=16, video_5d=True),
             "3": graphs.decode(), "4": graphs.save_tensor(ours, images="3"),
             "5": {"class_type": "VAELoader", "inputs": {"vae_name": name}},
             "6": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["5", 0]}},
             "7": graphs.save_tensor(host, images="6")}
    graph["3"]["inputs"]["latent_scale"] = 0.0  # auto: the file's own mapping
    run = comfy.run(graph)
    assert run.succeeded, run.error_text()
    a, b = saved(comfy, ours)["images"], saved(comfy, host)["images"]
    assert a.shape == b.shape == (9, 32, 48, 3)  # 3 latent frames -> 4*3-3 frames, 8x space
    assert (a - b.clamp(0, 1)).abs().max() < 1e-4


def test_encode_crops_to_a_patched_taehv_encoders_scale_as_the_cli_does(comfy):
    # Wan 2.2 5B's encoder folds 2x2 pixels (scale 16): a 40x24 image is cropped to 32x16 (the
    # node cropped to multiples of 8 and the encoder refused 40x24); too small is named width x height.
    from reference_taehv import random_state_dict
    from safetensors.torch import save_file

    name = unique("taew2_2") + ".safetensors"
    save_file(random_state_dict("wan2_2", seed=5), os.path.join(comfy.base, "models", "vae_approx", name))
    out = unique("patched")

    def graph(width, height):
        encode = graphs.encode(pixels="2")
        encode["inputs"]["latent_scale"] = 0.0
        return {"1": graphs.loader(name=name), "3": encode, "4": graphs.save_tensor(out, samples="3"),
                "2": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1, "color": 0}}}

    run = comfy.run(graph(40, 24))
    assert run.succeeded, run.error_text()
    assert saved(comfy, out)["samples"].shape == (1, 48, 1, 1, 2)  # [B, C, T, h, w]: 16x32 / 16
    run = comfy.run(graph(40, 8))
    assert re.search(r"pixels are 40x8 \(width x height\); TAEHV .* needs at least 16x16", run.error_text()), run.error_text()


def test_compare_decoders_lays_clips_side_by_side_and_tables_their_metrics(comfy):
    from taesdv_core.taesd import TAESDDecoder

    torch.manual_seed(5)
    name = unique("taesd") + "_decoder.pth"
    torch.save(TAESDDecoder(4).state_dict(), os.path.join(comfy.base, "models", "vae_approx", name))
    out = unique("compare")
    graph = {"1": graphs.loader(), "2": graphs.latent_clip(frames=4, height=4, width=4), "5": graphs.loader(name=name),
             "3": {"class_type": "TAESDVCompareDecoders",
                   "inputs": {"samples": ["2", 0], "decoder_a": ["1", 0], "decoder_b": ["5", 0]}},
             "4": graphs.save_tensor(out, images="3"),
             "6": {"class_type": "PreviewAny", "inputs": {"source": ["3", 1]}}}
    run = comfy.run(graph)
    assert run.succeeded, run.error_text()
    frames = saved(comfy, out)["images"]
    assert frames.shape[0] == 4 and frames.shape[2] == 2 * 32  # two 32-px panels per frame, labelled above
    table = "".join(run.outputs("6")["text"])
    assert "| taesdv.pth (TAESDV) |" in table and f"| {name} (TAESD" in table
    assert re.search(r"\| taesdv.pth \(TAESDV\) \| 4 \| [\d.]+ \| [\d.]+ \| inf \| 1\.000", table), table


@pytest.mark.parametrize("mode", ["repeat", "blend"])
def test_cv_vae_latents_decode_to_keyframes_every_fourth_frame_filled_between(comfy, mode):
    keys, filled = unique("keys"), unique("filled")
    graph = graphs.decode_graph(keys, frames=3, height=4, width=4)
    graph["5"] = dict(graph["3"], inputs=dict(graph["3"]["inputs"], cv_vae_frames=mode))
    graph["6"] = graphs.save_tensor(filled, images="5")
    run = comfy.run(graph)
    assert run.succeeded, run.error_text()
    k, f = saved(comfy, keys)["images"], saved(comfy, filled)["images"]
    assert k.shape[0] == 3 and f.shape[0] == 1 + 4 * 2  # one keyframe per latent frame; 1 + 4 (T - 1) filled
    assert torch.allclose(f[::4], k, atol=1e-6)  # keyframe i is frame 4i
    between = f[1] if mode == "blend" else f[4]
    expected = 0.75 * k[0] + 0.25 * k[1] if mode == "blend" else k[1]
    assert torch.allclose(between, expected, atol=1e-5)
