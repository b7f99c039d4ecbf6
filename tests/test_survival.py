"""What survives what (README, "Safety and limits"), on the real server: streams across loader
re-runs, model unloads and replaced files; interrupted pieces; memory checks of encode. And, in a
fresh process through the node's execute: the decode output held once, without a second copy."""
import os
import re
import threading
import time

import torch

import graphs
from reference_taesdv import official_layout_state_dict, reference_decode
from helpers import assert_still_serving, clip_latents, saved, unique


def vae_approx(comfy, name):
    return os.path.join(comfy.base, "models", "vae_approx", name)


def piece_graph(stream_name, start, count, seed, frames=8, reset=False, model=None, height=4, width=4):
    name = unique("piece")
    graph = {"1": model or graphs.loader(), "2": graphs.latent_clip(frames=frames, height=height, width=width, seed=seed,
                                                                    start=start, count=count),
             "3": graphs.stream(name=stream_name, reset=reset), "4": graphs.save_tensor(name, images="3")}
    return graph, name


def run_piece(comfy, *args, **kwargs):
    graph, name = piece_graph(*args, **kwargs)
    run = comfy.run(graph)
    assert run.succeeded, run.error_text()
    return run, saved(comfy, name)["images"]


def expected_frames(sd, frames, seed, start=0, count=None, height=4, width=4):
    latents = clip_latents(frames, height, width, seed=seed)
    out = reference_decode(sd, latents).clamp(0, 1)[0].permute(0, 2, 3, 1)
    return out[start:None if count is None else start + count]


def free_models(comfy):
    assert comfy.post_json("/free", {"unload_models": True, "free_memory": True})[0] == 200
    time.sleep(1.0)  # /free is applied between prompts


# -- 1. streams belong to their name and weights, not to the loader's object ---------------------

def test_a_stream_continues_across_an_unload_and_a_loader_rerun(comfy, state_dict):
    stream_name = unique("survive")
    _, first = run_piece(comfy, stream_name, 0, 3, seed=61, reset=True)
    free_models(comfy)  # ComfyUI drops its caches and unloads models: the loader runs again
    _, second = run_piece(comfy, stream_name, 3, 3, seed=61)
    # another loader object of the same file (other inputs: evicted from the cache's point of view)
    _, third = run_piece(comfy, stream_name, 6, 2, seed=61, model=graphs.loader(dtype="fp32"))
    expected = expected_frames(state_dict, 8, seed=61)
    assert (torch.cat([first, second, third]) - expected).abs().max() < 1e-5


def test_a_replaced_checkpoint_is_reloaded_and_its_streams_restart_with_a_notice(comfy):
    path = vae_approx(comfy, "taesdv_replaced.pth")
    old, new = official_layout_state_dict(seed=3), official_layout_state_dict(seed=4)
    torch.save(old, path)
    try:
        model = graphs.loader(name="taesdv_replaced.pth")
        stream_name = unique("replaced")
        _, first = run_piece(comfy, stream_name, 0, 3, seed=62, reset=True, model=model)
        assert (first - expected_frames(old, 8, seed=62, count=3)).abs().max() < 1e-5
        torch.save(new, path + ".tmp")
        os.replace(path + ".tmp", path)
        run, second = run_piece(comfy, stream_name, 3, 3, seed=62, model=model)
        # the new weights decode the piece as a new clip's start
        latents = clip_latents(8, seed=62)[:, 3:6]
        fresh = reference_decode(new, latents).clamp(0, 1)[0].permute(0, 2, 3, 1)
        assert (second - fresh).abs().max() < 1e-5
        notices = run.outputs("3").get("text", [])
        assert notices and re.search(r"restarted after 3 frames: it was made with other weights", notices[0]), run.history
        assert "restarted after 3 frames" in comfy.log()
    finally:
        os.remove(path)


# -- 3, 4. preview models that cannot preview never fail a run -----------------------------------

def preview_events(run):
    return [m for m in run.messages if m["type"] == "taesdv.preview"]


def test_an_encoder_only_file_is_refused_by_the_latent_preview_node(comfy, state_dict):
    path = vae_approx(comfy, "taesdv_enc_only.pth")
    torch.save({k: v for k, v in state_dict.items() if k.startswith("encoder.")}, path)
    try:
        graph = graphs.sampling_graph(frames=2, size=64, steps=2, preview={"budget_percent": 100})
        graph["1"] = graphs.loader(name="taesdv_enc_only.pth")
        run = comfy.run(graph)
        assert not run.succeeded
        assert run.error["node_type"] == "TAESDVLatentPreview"
        assert re.search(r"'taesdv_enc_only.pth' .* has no decoder tensors", run.error_text()), run.error_text()
    finally:
        os.remove(path)
    assert_still_serving(comfy)


def test_any_preview_error_falls_back_to_comfyuis_previews_with_one_log_line(comfy):
    graph = graphs.sampling_graph(frames=2, size=64, steps=3, preview={"budget_percent": 100})
    graph["30"] = {"class_type": "TAESDVTest_BreakPreview", "inputs": {"taesdv": ["1", 0]}}
    graph["20"]["inputs"]["taesdv"] = ["30", 0]
    run = comfy.run(graph)
    assert run.succeeded, run.error_text()
    assert preview_events(run) == [] and len(run.of_type("progress")) >= 3
    assert comfy.log().count("injected by TAESDVTest_BreakPreview") == 1


def test_the_global_switch_skips_files_that_cannot_preview_and_remembers_failures(comfy, state_dict):
    # sorted before taesdv.pth: a file that fails to load and one with only the encoder
    broken, encoder_only = vae_approx(comfy, "taesdv-broken.pth"), vae_approx(comfy, "taesdv-encoder.pth")
    with open(broken, "wb") as f:
        f.write(b"not a checkpoint at all")
    torch.save({k: v for k, v in state_dict.items() if k.startswith("encoder.")}, encoder_only)
    assert comfy.post_json("/taesdv/preview/settings", {"enabled": True, "budget": 1.0})[0] == 200
    try:
        for _ in range(2):
            graph = graphs.sampling_graph(frames=2, size=64, steps=2)
            run = comfy.run(graph)
            assert run.succeeded, run.error_text()
            assert len(preview_events(run)) == 2  # taesdv.pth, the first file that fits
        assert comfy.log().count("skipping taesdv-broken.pth") == 1  # not re-read on the second run
    finally:
        comfy.post_json("/taesdv/preview/settings", {"enabled": False, "budget": 0.05})
        os.remove(broken)
        os.remove(encoder_only)


def test_a_file_that_fails_in_an_unexpected_way_is_skipped_by_the_global_switch_and_remembered(comfy):
    # An image-TAESD-shaped decoder with a 1-D block weight: reading its layout raised IndexError,
    # an error the switch did not catch, and that turned previews off for every family, every run.
    from helpers import random_image_taesd

    odd = vae_approx(comfy, "taesdv-odd.pth")  # sorted before taesdv.pth, which serves SD latents
    sd = random_image_taesd()
    sd["3.conv.0.weight"] = torch.zeros(64)
    torch.save(sd, odd)
    assert comfy.post_json("/taesdv/preview/settings", {"enabled": True, "budget": 1.0})[0] == 200
    try:
        for _ in range(2):
            run = comfy.run(graphs.sampling_graph(frames=2, size=64, steps=2))
            assert run.succeeded, run.error_text()
            assert len(preview_events(run)) == 2  # from taesdv.pth, the next file that fits
        assert comfy.log().count("skipping taesdv-odd.pth") == 1  # remembered: not re-read on the second run
    finally:
        comfy.post_json("/taesdv/preview/settings", {"enabled": False, "budget": 0.05})
        os.remove(odd)


# -- 2. an interrupted piece leaves the stream as it was -----------------------------------------

def test_an_interrupted_stream_piece_is_not_half_committed(comfy):
    stream_name = unique("interrupted")
    _, head = run_piece(comfy, stream_name, 0, 2, seed=63, frames=42, height=32, width=32, reset=True)
    graph, name = piece_graph(stream_name, 2, 40, seed=63, frames=42, height=32, width=32)
    graph["3"]["inputs"]["chunk_frames"] = 1  # many chunks: the interrupt lands mid-piece
    sent = {}

    def on_message(msg):
        if not sent and isinstance(msg, dict) and msg["type"] == "progress" and msg["data"].get("node") == "3":
            sent["at"] = msg["data"]["value"]
            threading.Thread(target=comfy.interrupt).start()

    run = comfy.run(graph, on_message=on_message)
    assert run.of_type("execution_interrupted") and 0 < sent["at"] < 40
    _, rest = run_piece(comfy, stream_name, 2, 40, seed=63, frames=42, height=32, width=32)  # the same piece again
    whole = {"1": graphs.loader(), "2": graphs.latent_clip(frames=42, height=32, width=32, seed=63), "3": graphs.decode(),
             "4": graphs.save_tensor(whole_name := unique("whole"), images="3")}
    assert comfy.run(whole).succeeded
    expected = saved(comfy, whole_name)["images"]
    assert rest.shape[0] == 40
    assert (torch.cat([head, rest]) - expected).abs().max() < 1e-5


def test_a_huge_frame_through_encode_is_refused_with_memory_figures_and_the_server_keeps_serving(comfy):
    # 8192x8192: the encoder's first stage alone would hold ~69 GB in fp32, ~35 GB in bf16 (what auto
    # is on CPUs with native bf16); the check refuses it before allocating.
    graph = {"1": {"class_type": "TAESDVLoader", "inputs": {"model_name": "taesdv.pth", "dtype": "auto"}},
             "2": {"class_type": "EmptyImage", "inputs": {"width": 8192, "height": 8192, "batch_size": 1, "color": 0}},
             "3": {"class_type": "TAESDVEncode", "inputs": {"taesdv": ["1", 0], "pixels": ["2", 0], "chunk_frames": 0,
                                                            "latent_scale": 0.0}},
             "4": {"class_type": "TAESDVTest_SaveTensor", "inputs": {"name": unique("huge"), "samples": ["3", 0]}}}
    run = comfy.run(graph)
    assert not run.succeeded
    assert re.search(r"encoding one 8192x8192 frame needs [\d.]+ GiB of working memory", run.error_text()), run.error_text()
    assert_still_serving(comfy)


# -- 7. the decoded frames are held once: the IMAGE is the decode's own output, not a copy ------

def test_decode_batch_holds_its_output_once_not_a_second_copy_for_the_image(checkpoint_path):
    # The node's execute in a fresh process (tests/decode_peak_memory.py: the host's modules on the
    # CPU, no server; the decoder's layers cheap so that 600 MB of frames decode in seconds). A copy
    # of the output anywhere from the engine to the IMAGE (as the old NTCHW -> NHWC layout made)
    # would raise the peak by another output_bytes: 1210 MiB over the baseline for 600 MiB of frames,
    # measured with a .clone() in frames_to_image (and the same with the old NTCHW layout made
    # contiguous there), against 687 MiB without.
    m = decode_peak_memory(checkpoint_path, 200, 64, 64)
    output = m["output_bytes"]
    assert m["image_shape"] == [200, 512, 512, 3] and output == 200 * 512 * 512 * 3 * 4  # 629 MB of float32
    assert m["finite_in_range"]
    growth = m["peak_rss"] - m["baseline_rss"]
    allowance = 128 * 2**20  # a chunk's frames and the latent mappings (about 90 MB measured)
    print(f"decode peak: output {output / 2**20:.0f} MiB, peak over baseline {growth / 2**20:.0f} MiB "
          f"(bound {(1.5 * output + allowance) / 2**20:.0f} MiB; a second copy makes it ~{2 * output / 2**20:.0f})")
    assert growth >= output  # the frames were really written: a measurement that sees nothing proves nothing
    assert growth <= 1.5 * output + allowance


def decode_peak_memory(checkpoint_path, *args):
    """tests/decode_peak_memory.py's JSON for these arguments (a fresh process)."""
    import json
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "decode_peak_memory.py")
    r = subprocess.run([sys.executable, script, checkpoint_path, *map(str, args)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_cv_vae_frames_are_filled_inside_the_memory_check(checkpoint_path):
    # 48 latent frames of 64x64 (512 px) filled by blend to 189 frames: the keyframes (151 MB) and
    # the filled clip (594 MB) are held together once; the check must count both. Filling used to
    # build its cross-fades from whole-clip temporaries (1.4 GB measured here) that no check saw.
    frame_bytes = 512 * 512 * 3 * 4
    keyframes, filled = 48 * frame_bytes, 189 * frame_bytes
    m = decode_peak_memory(checkpoint_path, 48, 64, 64, "blend")
    assert m["image_shape"] == [189, 512, 512, 3] and m["finite_in_range"]
    growth = m["peak_rss"] - m["baseline_rss"]
    allowance = 128 * 2**20  # as above: a chunk's frames and the latent mappings
    print(f"cv_vae_frames blend peak: keyframes {keyframes / 2**20:.0f} MiB + filled {filled / 2**20:.0f} MiB, "
          f"peak over baseline {growth / 2**20:.0f} MiB (bound {(keyframes + filled + allowance) / 2**20:.0f} MiB)")
    assert filled <= growth <= keyframes + filled + allowance
    # free memory for the keyframes but not for the filled clip beside them: refused before decoding
    for mode in ("repeat", "blend"):
        m = decode_peak_memory(checkpoint_path, 48, 64, 64, mode, keyframes + filled // 2)
        assert re.search(r"latents \(1, 48, 4, 64, 64\) decode to 48 frames of 512x512, filled to 189 frames "
                         r"\(cv_vae_frames " + mode + r"\), that need 711 MiB for the output alone", m.get("refused", "")), m
