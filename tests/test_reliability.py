"""Bad inputs and faults on the real server: each gets a clear message naming the input, what was
wrong and what to do, and the server then runs the next prompt normally."""
import json
import os
import re
import threading
import time

import pytest
import torch
from safetensors.torch import save_file

import graphs
from reference_taesdv import official_layout_state_dict, reference_decode
from helpers import RunsCode, assert_still_serving, clip_latents, image_taesd_decoder, saved, unique


def vae_approx(comfy, name):
    return os.path.join(comfy.base, "models", "vae_approx", name)


def decode_with(name, frames=2, **clip):
    return {"1": graphs.loader(name=name), "2": graphs.latent_clip(frames=frames, **clip), "3": graphs.decode(),
            "4": graphs.save_tensor(unique("x"), images="3")}


# -- checkpoints ---------------------------------------------------------------------------------

def _write_checkpoints(comfy, marker):
    sd = official_layout_state_dict(seed=1)
    files = {}

    def put(name, obj=None, raw=None):
        path = vae_approx(comfy, name)
        if raw is not None:
            with open(path, "wb") as f:
                f.write(raw)
        elif name.endswith(".safetensors"):
            save_file(obj, path)
        else:
            torch.save(obj, path)
        files[name] = path

    put("taesdv_empty.pth", raw=b"")
    put("taesdv_random.pth", raw=bytes(__import__("random").Random(7).getrandbits(8) for _ in range(5000)))
    torch.save(sd, vae_approx(comfy, "taesdv_truncated.pth"))
    data = open(vae_approx(comfy, "taesdv_truncated.pth"), "rb").read()
    put("taesdv_truncated.pth", raw=data[: len(data) // 3])
    put("taesdv_evil.pth", {"decoder.1.weight": RunsCode(marker)})
    put("taesdv_missing.pth", {k: v for k, v in sd.items() if k != "decoder.19.bias"})
    put("taesdv_extra.pth", {**sd, "decoder.99.weight": torch.zeros(1)})
    put("taesdv_reshaped.safetensors", {**sd, "decoder.1.weight": torch.zeros(64, 16, 3, 3)})
    put("my_image_taesd.pth", image_taesd_decoder())
    put("my_wan_tae.pth", {"decoder.1.weight": torch.zeros(256, 16, 3, 3), "decoder.22.weight": torch.zeros(3, 64, 3, 3)})
    put("my_sd_vae.safetensors", {"decoder.conv_in.weight": torch.zeros(512, 4, 3, 3), "quant_conv.weight": torch.zeros(8, 8, 1, 1)})
    put("taesdv_list.pth", [1, 2, 3])
    put("taesdv_fp16.safetensors", {k: v.half() for k, v in sd.items()})
    put("taesdv_bf16.pth", {k: v.bfloat16() for k, v in sd.items()})
    put("taesdv_decoder_only.pth", {k: v for k, v in sd.items() if k.startswith("decoder.")})
    put("taesdv_encoder_only.pth", {k: v for k, v in sd.items() if k.startswith("encoder.")})
    return files


@pytest.fixture(scope="module")
def bad_checkpoints(comfy, tmp_path_factory):
    marker = str(tmp_path_factory.mktemp("marker") / "code-ran")
    files = _write_checkpoints(comfy, marker)
    yield marker
    for path in files.values():
        os.remove(path)


@pytest.mark.parametrize("name,message", [
    ("taesdv_empty.pth", r"'taesdv_empty.pth' is empty \(0 bytes\); download taesdv.pth again"),
    ("taesdv_random.pth", r"'taesdv_random.pth' (is not a PyTorch or safetensors file|could not be read: it (looks truncated or corrupt|is not a PyTorch or safetensors checkpoint))"),
    ("taesdv_truncated.pth", r"'taesdv_truncated.pth' could not be read: it looks truncated or corrupt"),
    ("taesdv_evil.pth", r"'taesdv_evil.pth' was refused: it holds Python objects \(.*open\) that would run code.*Nothing in it was executed"),
    ("taesdv_missing.pth", r"1 missing \(e.g. decoder.19.bias\)"),
    ("taesdv_extra.pth", r"1 unexpected \(e.g. decoder.99.weight\)"),
    ("taesdv_reshaped.safetensors", r"decoder.1.weight \(64, 16, 3, 3\) \(expected \(64, 4, 3, 3\)\)"),
    ("my_image_taesd.pth", r"'my_image_taesd.pth' looks like a TAESD \(SD1.x/SD2.x\) decoder but its tensors do not match: 5 missing \(e.g. 12.weight, 17.weight, 19.bias\)"),
    ("my_wan_tae.pth", r"'my_wan_tae.pth': decoder TGrow convs .* give time strides .*; TAEHV has \(1, 2, 2\)"),
    ("my_sd_vae.safetensors", r"full SD VAE \(load it with ComfyUI's Load VAE instead\)"),
    ("taesdv_list.pth", r"not a state dict of tensors \(found list\)"),
])
def test_bad_checkpoint_is_named_and_the_server_keeps_serving(comfy, bad_checkpoints, name, message):
    run = comfy.run(decode_with(name))
    assert not run.succeeded
    assert re.search(message, run.error_text()), run.error_text()
    assert not os.path.exists(bad_checkpoints), "loading the checkpoint ran code"
    assert_still_serving(comfy)


@pytest.mark.parametrize("name", ["taesdv_fp16.safetensors", "taesdv_bf16.pth", "taesdv_decoder_only.pth"])
def test_half_precision_and_decoder_only_files_decode(comfy, bad_checkpoints, state_dict, name):
    run = comfy.run(decode_with(name, frames=3, seed=11))
    assert run.succeeded, run.error_text()


def test_encode_with_an_encoder_less_checkpoint_says_so(comfy, bad_checkpoints):
    graph = {"1": graphs.loader(name="taesdv_decoder_only.pth"), "2": graphs.latent_clip(frames=2),
             "5": graphs.loader(), "3": graphs.decode(model="5"), "4": graphs.encode(model="1", pixels="3"),
             "6": graphs.save_tensor(unique("e"), samples="4")}
    run = comfy.run(graph)
    assert re.search(r"'taesdv_decoder_only.pth' \(TAESDV\) has no encoder tensors; load the full taesdv.pth", run.error_text())


def test_decode_with_a_decoder_less_checkpoint_says_so(comfy, bad_checkpoints):
    run = comfy.run(decode_with("taesdv_encoder_only.pth"))
    assert re.search(r"'taesdv_encoder_only.pth' \(TAESDV\) has no decoder tensors; load the full taesdv.pth", run.error_text())


@pytest.mark.parametrize("name", ["../../../etc/passwd", "/etc/passwd", "..\\taesdv.pth", "nope.pth"])
def test_model_names_outside_vae_approx_are_refused_before_running(comfy, name):
    run = comfy.run(decode_with(name))
    assert run.status == 400
    assert name in run.error_text() and ("not in list" in run.error_text() or "models/vae_approx" in run.error_text())
    assert_still_serving(comfy)


def test_unknown_dtype_is_refused_with_the_choices_before_anything_loads(comfy):
    # ComfyUI 0.33 checks combo values itself when the prompt is queued (400, "Value not in
    # list"); 0.3.75 does not, and the loader refuses the value when it runs, before loading.
    graph = decode_with("taesdv.pth")
    graph["1"]["inputs"]["dtype"] = "fp8"
    run = comfy.run(graph)
    assert not run.succeeded
    text = run.error_text()
    by_core = re.search(r"Value not in list: dtype: 'fp8' not in \[.*'auto', 'fp32', 'fp16', 'bf16'", text)
    by_loader = re.search(r"dtype 'fp8' is not one of auto, fp32, fp16, bf16", text)
    assert by_core or by_loader, text
    assert_still_serving(comfy)


@pytest.mark.parametrize("missing,source", [
    ("nope.pth", "madebyollin/taesdv/raw/main/taesdv.pth"),
    ("taesd_decoder.pth", "github.com/madebyollin/taesd)"),
    ("taew2_1.safetensors", "github.com/madebyollin/taehv)"),
])
def test_a_missing_file_is_reported_once_naming_the_files_there_and_where_it_comes_from(comfy, missing, source):
    status, body = comfy.post_json("/prompt", {"prompt": decode_with(missing)})
    assert status == 400
    errors = [e for node in body["node_errors"].values() for e in node["errors"]]
    assert len(errors) == 1, errors
    assert re.search(rf"'{re.escape(missing)}' is not in models/vae_approx \(files there: taesdv.pth", errors[0]["details"])
    assert f"put {missing} there" in errors[0]["details"] and source in errors[0]["details"], errors[0]["details"]


# -- latents -------------------------------------------------------------------------------------

@pytest.mark.parametrize("clip,message", [
    ({"channels": 16}, r"16 channels.*TAESDV expects 4.*Wan 2.1.*load taew2_1"),
    ({"channels": 3}, r"3 channels.*expects 4"),
    ({"frames": 0}, r"0 frames.*at least one frame"),
    ({"fill": "nan"}, r"1 NaN or infinite values.*sampler or an upstream node"),
    ({"frames": 64, "height": 1024, "width": 1024}, r"need \d+\.\d GiB for the output alone, but .* is free"),
    ({"frames": 1, "height": 1536, "width": 1536}, r"one 12288x12288 frame needs \d+\.\d GiB of working memory"),
])
def test_bad_latents_fail_with_a_message_and_the_server_keeps_serving(comfy, clip, message):
    run = comfy.run(decode_with("taesdv.pth", **{"frames": 2, **clip}))
    assert not run.succeeded
    assert re.search(message, run.error_text()), run.error_text()
    assert_still_serving(comfy)


@pytest.mark.parametrize("frames,height,width", [(1, 4, 4), (3, 1, 1), (2, 3, 7), (5, 9, 2)])
def test_one_frame_and_odd_or_tiny_sizes_decode_exactly(comfy, state_dict, frames, height, width):
    name = unique("odd")
    graph = graphs.decode_graph(name, frames=frames, height=height, width=width, seed=frames + height)
    assert comfy.run(graph).succeeded
    expected = reference_decode(state_dict, clip_latents(frames, height, width, seed=frames + height)).clamp(0, 1)
    assert (saved(comfy, name)["images"] - expected[0].permute(0, 2, 3, 1)).abs().max() < 1e-5


def test_tiny_images_are_refused_by_encode(comfy):
    graph = {"1": graphs.loader(), "2": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 2, "color": 0}},
             "3": graphs.encode(pixels="2"), "4": graphs.save_tensor(unique("t"), samples="3")}
    assert re.search(r"pixels are 4x4 \(width x height\); TAESDV needs at least 8x8", comfy.run(graph).error_text())


def test_rgba_images_and_sizes_not_multiple_of_8_encode(comfy):
    graph = {"1": graphs.loader(),
             "2": {"class_type": "EmptyImage", "inputs": {"width": 70, "height": 37, "batch_size": 1, "color": 0x804020}},
             "5": {"class_type": "JoinImageWithAlpha", "inputs": {"image": ["2", 0], "alpha": ["6", 0]}},
             "6": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 70, "height": 37}},
             "3": graphs.encode(pixels="5"), "4": graphs.save_tensor(name := unique("rgba"), samples="3")}
    run = comfy.run(graph)
    assert run.succeeded, run.error_text()
    assert saved(comfy, name)["samples"].shape == (1, 4, 4, 8)  # 37x70 cropped to 32x64


# -- streams -------------------------------------------------------------------------------------

def stream_run(comfy, stream_name, reset=False, frames=2, height=4, width=4, seed=0, model="1"):
    graph = {"1": graphs.loader(), "2": graphs.latent_clip(frames=frames, height=height, width=width, seed=seed),
             "3": graphs.stream(model=model, name=stream_name, reset=reset), "4": graphs.save_tensor(unique("s"), images="3")}
    return comfy.run(graph)


def test_stream_shape_change_mid_stream_asks_for_a_reset(comfy):
    name = unique("shape")
    assert stream_run(comfy, name, reset=True).succeeded
    run = stream_run(comfy, name, height=8)
    assert re.search(r"do not continue this stream.*reset the stream to start a new clip", run.error_text())
    assert stream_run(comfy, name, reset=True, height=8).succeeded


def test_many_streams_stay_bounded_and_an_evicted_stream_must_be_reset(comfy):
    names = [unique(f"many{i}") for i in range(20)]
    for i, name in enumerate(names):
        assert stream_run(comfy, name, seed=i).succeeded
    stats = comfy.run({"1": graphs.loader(), "2": {"class_type": "TAESDVTest_ServerStats", "inputs": {"taesdv": ["1", 0]}}})
    assert stats.outputs("2")["stats"][0]["streams"] == 16
    run = stream_run(comfy, names[0])
    assert re.search(r"stream_name '.*' was evicted.*at most 16 streams.*Set reset", run.error_text())
    assert stream_run(comfy, names[0], reset=True).succeeded
    assert stream_run(comfy, names[-1]).succeeded  # recent streams continue


def test_a_refused_piece_under_a_new_name_leaves_the_store_as_it_was(comfy):
    # 16 live streams fill the store; a refused piece under a 17th name must not take a place there
    # (it used to be inserted before decoding, so the next good piece evicted a live stream).
    names = [unique(f"full{i}") for i in range(16)]
    for i, name in enumerate(names):
        assert stream_run(comfy, name, seed=i).succeeded
    graph = {"1": graphs.loader(), "2": graphs.latent_clip(frames=2, fill="nan"), "3": graphs.stream(name=unique("refused")),
             "4": graphs.save_tensor(unique("s"), images="3")}
    run = comfy.run(graph)
    assert re.search(r"NaN or infinite values", run.error_text()), run.error_text()
    assert server_stats(comfy)["streams"] == 16
    for i, name in enumerate(names):  # every live stream continues
        run = stream_run(comfy, name, seed=100 + i)
        assert run.succeeded, (i, run.error_text())


@pytest.mark.parametrize("refused_with", ["reset", "another file of the same width"])
def test_a_refused_piece_under_an_existing_name_keeps_that_streams_progress(comfy, state_dict, refused_with):
    stream_name = unique("kept")
    other = vae_approx(comfy, "taesdv_other_weights.pth")
    torch.save(official_layout_state_dict(seed=9), other)
    try:
        head = {"1": graphs.loader(), "2": graphs.latent_clip(frames=6, seed=71, count=3),
                "3": graphs.stream(name=stream_name, reset=True), "4": graphs.save_tensor(first := unique("k"), images="3")}
        assert comfy.run(head).succeeded
        refused = {"1": graphs.loader(name="taesdv_other_weights.pth" if refused_with != "reset" else "taesdv.pth"),
                   "2": graphs.latent_clip(frames=2, fill="nan"),
                   "3": graphs.stream(name=stream_name, reset=refused_with == "reset"), "4": graphs.save_tensor(unique("k"), images="3")}
        assert re.search(r"NaN or infinite values", comfy.run(refused).error_text())
        tail = {"1": graphs.loader(), "2": graphs.latent_clip(frames=6, seed=71, start=3),
                "3": graphs.stream(name=stream_name), "4": graphs.save_tensor(rest := unique("k"), images="3")}
        run = comfy.run(tail)
        assert run.succeeded, run.error_text()
        assert not run.outputs("3").get("text"), run.outputs("3")  # no "restarted" notice: the stream continued
    finally:
        os.remove(other)
    expected = reference_decode(state_dict, clip_latents(6, seed=71)).clamp(0, 1)[0].permute(0, 2, 3, 1)
    frames = torch.cat([saved(comfy, first)["images"], saved(comfy, rest)["images"]])
    assert (frames - expected).abs().max() < 1e-5


# -- numbers too large for a float ------------------------------------------------------------

HUGE = int("9" * 400)  # a valid JSON number; float() of it overflows


@pytest.mark.parametrize("name,expected", [("fps", r"fps must be a number from 1 to 60"),
                                           ("max_size", r"max_size must be an integer from 32 to 2048"),
                                           ("budget", r"budget must be a number from 0.001 to 1")])
def test_a_400_digit_integer_in_the_settings_route_is_refused_naming_it(comfy, name, expected):
    before = comfy.get_json("/taesdv/preview/settings")
    status, answer = comfy.post_json("/taesdv/preview/settings", {name: HUGE})
    assert status == 400, answer
    assert re.match(rf"{expected}, got an integer of 400 digits$", answer["error"]), answer
    assert comfy.get_json("/taesdv/preview/settings") == before


def test_a_400_digit_integer_in_a_prompt_is_refused_and_the_rest_of_the_prompt_is_still_checked(comfy):
    graph = graphs.sampling_graph(frames=1, size=64, steps=1, preview={})
    graph["20"]["inputs"].update(max_size=HUGE, fps=HUGE, budget_percent=float("nan"))
    graph["14"]["inputs"]["chunk_frames"] = True
    status, body = comfy.post_json("/prompt", {"prompt": graph})
    assert status == 400, body
    errors = {e["extra_info"]["input_name"]: json.dumps(e) for node in body["node_errors"].values() for e in node["errors"]}
    assert set(errors) == {"max_size", "fps", "budget_percent", "chunk_frames"}, errors
    assert "max_size must be an integer from 32 to 2048, got an integer of 400 digits" in errors["max_size"]
    assert "fps must be a number from 1.0 to 60.0, got an integer of 400 digits" in errors["fps"]
    assert "budget_percent must be a finite number" in errors["budget_percent"]  # checked after the huge ones
    assert "chunk_frames must be an integer" in errors["chunk_frames"]
    assert_still_serving(comfy)


# -- faults --------------------------------------------------------------------------------------

def server_stats(comfy):
    run = comfy.run({"1": graphs.loader(), "2": {"class_type": "TAESDVTest_ServerStats", "inputs": {"taesdv": ["1", 0]}}})
    return run.outputs("2")["stats"][0]


def _interrupt_after_first_progress(comfy, graph):
    state = {"sent": None}

    def on_message(msg):
        if state["sent"] is None and isinstance(msg, dict) and msg["type"] == "progress":
            state["sent"] = time.perf_counter()
            threading.Thread(target=comfy.interrupt).start()

    run = comfy.run(graph, on_message=on_message)
    return run, time.perf_counter() - state["sent"]


@pytest.mark.parametrize("what", ["decode", "encode"])
def test_interrupt_stops_a_long_decode_or_encode_within_a_chunk(comfy, what):
    if what == "decode":
        graph = {"1": graphs.loader(), "2": graphs.latent_clip(frames=120, height=48, width=48, seed=5),
                 "3": graphs.decode(chunk=1), "4": graphs.save_tensor(unique("i"), images="3")}
    else:
        graph = {"1": graphs.loader(), "2": {"class_type": "EmptyImage", "inputs": {"width": 384, "height": 384, "batch_size": 400, "color": 0}},
                 "3": graphs.encode(pixels="2", chunk=1), "4": graphs.save_tensor(unique("i"), samples="3")}
    run, seconds = _interrupt_after_first_progress(comfy, graph)
    assert run.of_type("execution_interrupted"), run.messages[-3:]
    assert seconds < 3.0  # one chunk here takes well under a second; a full run takes many seconds
    assert_still_serving(comfy)


def test_interrupt_during_previews_stops_sampling_and_the_next_run_is_fine(comfy):
    graph = graphs.sampling_graph(frames=8, size=64, steps=200, channels=64, preview={"budget_percent": 100})
    run, seconds = _interrupt_after_first_progress(comfy, graph)
    assert run.of_type("execution_interrupted") and seconds < 3.0
    run = comfy.run(graphs.sampling_graph(frames=4, size=64, steps=3, preview={"budget_percent": 100}))
    assert run.succeeded and len([m for m in run.messages if m["type"] == "taesdv.preview"]) == 3


def test_out_of_memory_mid_decode_retries_smaller_with_identical_output(comfy, state_dict):
    name = unique("oom")
    graph = {"1": graphs.loader(dtype="fp32"),
             "5": {"class_type": "TAESDVTest_InjectOOM", "inputs": {"taesdv": ["1", 0], "max_ok_frames": 0, "times": 2, "target": "decode"}},
             "2": graphs.latent_clip(frames=9, seed=21), "3": graphs.decode(model="5", chunk=8),
             "4": graphs.save_tensor(name, images="3")}
    run = comfy.run(graph)
    assert run.succeeded, run.error_text()
    expected = reference_decode(state_dict, clip_latents(9, seed=21)).clamp(0, 1)[0].permute(0, 2, 3, 1)
    assert (saved(comfy, name)["images"] - expected).abs().max() < 1e-5


def test_out_of_memory_in_a_preview_is_skipped_not_fatal(comfy):
    graph = graphs.sampling_graph(frames=4, size=64, steps=4, preview={"budget_percent": 100})
    graph["1"] = graphs.loader(dtype="bf16")  # a model instance of its own
    graph["30"] = {"class_type": "TAESDVTest_InjectOOM", "inputs": {"taesdv": ["1", 0], "max_ok_frames": 0, "times": 1000, "target": "preview"}}
    graph["20"]["inputs"]["taesdv"] = ["30", 0]
    run = comfy.run(graph)
    assert run.succeeded, run.error_text()
    assert [m for m in run.messages if m["type"] == "taesdv.preview"] == []
    assert graphs.sampler_progress(run)[-1] == 4  # the sampler went on to its last step


def test_two_prompts_back_to_back_share_the_model(comfy, state_dict):
    ws, client_id = comfy.connect()
    try:
        names = [unique("b2b0"), unique("b2b1")]
        ids = []
        for i, name in enumerate(names):
            status, body = comfy.post_json("/prompt", {"prompt": graphs.decode_graph(name, frames=3, seed=40 + i), "client_id": client_id})
            assert status == 200
            ids.append(body["prompt_id"])
        done = set()
        while len(done) < 2:
            msg = ws.recv()
            if isinstance(msg, str) and '"execution_success"' in msg:
                done.update(i for i in ids if i in msg)
    finally:
        ws.close()
    for i, name in enumerate(names):
        expected = reference_decode(state_dict, clip_latents(3, seed=40 + i)).clamp(0, 1)[0].permute(0, 2, 3, 1)
        assert (saved(comfy, name)["images"] - expected).abs().max() < 1e-5


def test_models_unloaded_by_comfyui_between_runs_reload_correctly(comfy, state_dict):
    first, second = unique("u0"), unique("u1")
    assert comfy.run(graphs.decode_graph(first, frames=3, seed=50)).succeeded
    assert comfy.post_json("/free", {"unload_models": True, "free_memory": True})[0] == 200
    time.sleep(1.0)  # /free is applied between prompts
    assert comfy.run(graphs.decode_graph(second, frames=3, seed=50)).succeeded
    assert torch.equal(saved(comfy, first)["images"], saved(comfy, second)["images"])


def test_soak_fifty_runs_of_decode_stream_and_previews_do_not_grow_memory_or_threads(comfy):
    def one_round(i):
        graph = graphs.sampling_graph(frames=4, size=64, steps=2, preview={"budget_percent": 100}, save_name=f"soak_{i % 3}")
        graph["30"] = graphs.latent_clip(frames=2, seed=i)
        graph["31"] = graphs.stream(samples="30", name=f"soak{i % 12}", reset=(i % 7 == 0))
        graph["32"] = graphs.save_tensor(f"soak_stream_{i % 3}", images="31")
        run = comfy.run(graph)
        assert run.succeeded, run.error_text()

    for i in range(10):  # warm-up: allocator pools, caches and the stream store fill up
        one_round(i)
    before = server_stats(comfy)
    for i in range(10, 60):
        one_round(i)
    after = server_stats(comfy)
    growth = (after["rss"] - before["rss"]) / before["rss"]
    print(f"soak: rss {before['rss'] / 2**20:.0f} -> {after['rss'] / 2**20:.0f} MiB ({100 * growth:+.1f}%), "
          f"threads {before['threads']} -> {after['threads']}, streams {after['streams']}")
    assert growth <= 0.05
    assert after["threads"] == before["threads"], (before["thread_names"], after["thread_names"])
    assert after["streams"] <= 16
