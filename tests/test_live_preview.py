"""Live TAESDV previews: the previewer's logic, and whole clips over the real server's websocket."""
import base64
import urllib.error
import urllib.request
import io
import json
import os
import threading
import time

import pytest
import torch
from PIL import Image

import graphs
from helpers import ROOT, random_image_taesd
from taesdv_core import decode, model_from_state_dict
from taesdv_core.preview import (PreviewBudget, Previewer, PreviewSettings, assumed_throughput,
                                  preview_latents, sprite_sheet)

ARTIFACTS = os.path.join(ROOT, "test-artifacts")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def decoder(state_dict):
    return model_from_state_dict(state_dict).decoder


# -- the previewer, no ComfyUI ----------------------------------------------------------------

def test_preview_frames_equal_a_full_decode_of_the_same_x0(decoder):
    x0 = torch.randn(9, 4, 6, 5)  # frames as the batch, as AnimateDiff/SVD samplers give it
    clip = Previewer(decoder, PreviewSettings(max_size=1024, budget=1.0)).render(0, 10, x0)
    assert clip.frames.shape == (9, 3, 48, 40)
    assert torch.equal(clip.frames, decode(decoder, x0.unsqueeze(0))[0])


def test_video_shaped_x0_previews_its_first_clip(decoder):
    x0 = torch.randn(2, 4, 5, 4, 4)  # [B, C, T, h, w]
    clip = Previewer(decoder, PreviewSettings(max_size=1024, budget=1.0)).render(0, 1, x0)
    assert torch.equal(clip.frames, decode(decoder, x0[0].movedim(0, 1).unsqueeze(0))[0])


def test_large_latents_are_decoded_at_preview_size(decoder):
    x0 = torch.randn(3, 4, 64, 48)
    latents = preview_latents(x0, 256)
    assert latents.shape == (1, 3, 4, 32, 24)
    assert torch.allclose(latents[0], torch.nn.functional.avg_pool2d(x0, 2))
    clip = Previewer(decoder, PreviewSettings(max_size=256, budget=1.0)).render(0, 1, x0)
    assert clip.frames.shape == (3, 3, 256, 192)


def test_sprite_sheet_holds_every_frame_in_row_major_order():
    frames = torch.stack([torch.full((3, 8, 8), i / 10) for i in range(7)])
    image, jpeg, columns, rows = sprite_sheet(frames, quality=100)
    assert (columns, rows) == (3, 3) and image.size == (24, 24)
    decoded = Image.open(io.BytesIO(jpeg)).convert("L")
    for i in range(7):
        r, c = divmod(i, columns)
        assert abs(decoded.getpixel((c * 8 + 4, r * 8 + 4)) - round(i / 10 * 255)) <= 3


def test_budget_thins_previews_to_the_allowed_fraction():
    clock = FakeClock()
    budget = PreviewBudget(0.05, clock)
    allowed = 0
    for step in range(100):
        clock.now += 1.0  # one sampler step takes 1 s
        if budget.allow(0.5):
            allowed += 1
            clock.now += 0.5  # a preview takes 0.5 s
            budget.record(0.5)
    assert budget.spent <= 0.05 * (clock.now - budget.spent) + 1e-9
    assert 8 <= allowed <= 10  # 5% of 100 s of sampling is 5 s: 10 previews of 0.5 s at most


def test_budget_of_one_previews_every_step():
    clock = FakeClock()
    budget = PreviewBudget(1.0, clock)
    assert all(budget.allow(99.0) for _ in range(10))


def test_out_of_memory_in_a_preview_shrinks_and_skips_instead_of_failing(decoder):
    previewer = Previewer(decoder, PreviewSettings(max_size=256, budget=1.0))
    real = decoder.forward_chunk

    def oom(x, memory):
        raise torch.OutOfMemoryError("injected: CUDA out of memory")

    decoder.forward_chunk = oom
    try:
        assert previewer.render(0, 4, torch.randn(2, 4, 8, 8)) is None
    finally:
        decoder.forward_chunk = real
    assert previewer.max_size == 128 and previewer.out_of_memory_count == 1
    clip = previewer.render(1, 4, torch.randn(2, 4, 32, 32))
    assert clip is not None and clip.frames.shape[-1] == 128


def test_any_other_preview_error_turns_previews_off_for_the_run_without_raising(decoder):
    previewer = Previewer(decoder, PreviewSettings(budget=1.0))
    assert previewer.render(0, 4, torch.randn(2, 3)) is None  # not a clip
    assert previewer.disabled_reason and previewer.render(1, 4, torch.randn(2, 4, 4, 4)) is None


def test_interrupts_pass_through_the_previewer(decoder):
    class Interrupt(Exception):
        pass

    previewer = Previewer(decoder, PreviewSettings(budget=1.0), interrupt_types=(Interrupt,))
    real = decoder.forward_chunk

    def interrupted(x, memory):
        raise Interrupt()

    decoder.forward_chunk = interrupted
    try:
        with pytest.raises(Interrupt):
            previewer.render(0, 4, torch.randn(2, 4, 4, 4))
    finally:
        decoder.forward_chunk = real


def test_non_finite_x0_is_skipped(decoder):
    x0 = torch.randn(2, 4, 4, 4)
    x0[0, 0, 0, 0] = float("nan")
    assert Previewer(decoder, PreviewSettings(budget=1.0)).render(0, 1, x0) is None


# -- on the real server -------------------------------------------------------------------------

def clip_events(run):
    return [m["data"] for m in run.messages if m["type"] == "taesdv.preview"]


def test_sampler_sends_one_complete_clip_per_previewed_step_with_its_identity(comfy):
    run = comfy.run(graphs.sampling_graph(frames=8, size=64, steps=5, preview={"budget_percent": 100, "fps": 12}))
    assert run.succeeded, run.error_text()
    clips = clip_events(run)
    assert [c["step"] for c in clips] == [1, 2, 3, 4, 5]
    assert [c["sequence"] for c in clips] == [1, 2, 3, 4, 5]
    for c in clips:
        assert c["protocol"] == 1 and c["prompt_id"] == run.prompt_id
        assert c["node_id"] == c["display_node_id"] == "13" and c["total_steps"] == 5
        assert (c["frame_count"], c["frame_width"], c["frame_height"], c["fps"]) == (8, 64, 64, 12.0)
        sheet = Image.open(io.BytesIO(base64.b64decode(c["image"].split(",", 1)[1])))
        assert sheet.size == (c["columns"] * 64, c["rows"] * 64)
        assert c["columns"] * c["rows"] >= 8


def test_clients_without_the_extension_get_a_standard_preview_image(comfy):
    run = comfy.run(graphs.sampling_graph(frames=4, size=64, steps=3, preview={"budget_percent": 100}))
    previews = [b for b in run.binaries if int.from_bytes(b[:4], "big") == 4]  # PREVIEW_IMAGE_WITH_METADATA
    assert len(previews) == 3
    meta_len = int.from_bytes(previews[0][4:8], "big")
    meta = json.loads(previews[0][8:8 + meta_len])
    assert meta["node_id"] == "13" and meta["prompt_id"] == run.prompt_id
    assert Image.open(io.BytesIO(previews[0][8 + meta_len:])).size == (128, 128)  # 2x2 contact sheet


def test_clients_with_the_extension_get_clips_and_a_one_frame_still_for_thumbnails(comfy):
    ws, client_id = comfy.connect()
    try:
        status, _ = comfy.post_json("/taesdv/preview/client", {"client_id": client_id})
        assert status == 200
        run = comfy.run(graphs.sampling_graph(frames=4, size=64, steps=3, preview={"budget_percent": 100}),
                        ws_and_id=(ws, client_id))
    finally:
        ws.close()
    assert len(clip_events(run)) == 3
    stills = [b for b in run.binaries if int.from_bytes(b[:4], "big") in (1, 4)]
    assert len(stills) == 3  # the queue and job thumbnails stay filled
    meta_len = int.from_bytes(stills[0][4:8], "big")
    assert Image.open(io.BytesIO(stills[0][8 + meta_len:])).size == (64, 64)  # one frame, not the sheet


def test_default_budget_keeps_preview_time_within_five_percent_of_sampling(comfy):
    import time

    times = []
    run = comfy.run(graphs.sampling_graph(frames=8, size=64, steps=12, channels=64, preview={"budget_percent": 5}),
                    on_message=lambda m: times.append(time.perf_counter()) if isinstance(m, dict) and m["type"] == "progress" else None)
    assert run.succeeded
    clips = clip_events(run)
    sampling_seconds = times[-1] - times[0]
    spent = sum(c["decode_ms"] for c in clips) / 1000
    assert len(clips) < 12  # decoding 8 frames costs more than a tiny model's step: previews are thinned
    largest = max((c["decode_ms"] for c in clips), default=0) / 1000
    assert spent <= 0.05 * sampling_seconds + largest  # at most one preview over, from the first estimate
    steps = graphs.sampler_progress(run)
    assert steps[0] == 1 and steps[-1] == 12 and steps == sorted(steps)  # progress still reported to the end


def test_sampler_output_is_identical_with_and_without_previews(comfy):
    with_preview, without = graphs.sampling_graph(preview={"budget_percent": 100}, save_name="p_on", seed=3), \
        graphs.sampling_graph(save_name="p_off", seed=3)
    assert comfy.run(with_preview).succeeded and comfy.run(without).succeeded
    from safetensors.torch import load_file

    on = load_file(os.path.join(comfy.base, "output", "p_on.safetensors"))["images"]
    off = load_file(os.path.join(comfy.base, "output", "p_off.safetensors"))["images"]
    assert torch.equal(on, off)


def test_latents_taesdv_cannot_serve_keep_comfyuis_own_preview(comfy):
    graph = graphs.sampling_graph(frames=4, size=64, steps=3, preview={"budget_percent": 100})
    graph["10"]["inputs"]["latent_format"] = "SDXL"
    run = comfy.run(graph)
    assert run.succeeded, run.error_text()
    assert clip_events(run) == []
    assert len(run.of_type("progress")) >= 3


@pytest.mark.parametrize("via", ["node", "global switch"])
def test_sdxl_video_batches_play_whole_clips_through_an_image_taesd_decoder_tagged_sdxl(comfy, via):
    # AnimateDiff-SDXL / Hotshot-XL: N frames as the batch of SDXL latents; no memory decoder exists
    # for them, so taesdxl decodes each frame of the step's x0 and the node plays all N together.
    torch.save(random_image_taesd("decoder", seed=7), os.path.join(comfy.base, "models", "vae_approx", "taesdxl_decoder.pth"))
    graph = graphs.sampling_graph(frames=6, size=64, steps=3, preview={"budget_percent": 100} if via == "node" else None)
    graph["10"]["inputs"]["latent_format"] = "SDXL"
    if via == "node":
        graph["2"] = graphs.loader(name="taesdxl_decoder.pth")
        graph["20"]["inputs"]["taesdv"] = ["2", 0]
    else:
        assert comfy.post_json("/taesdv/preview/settings", {"enabled": True, "budget": 1.0})[0] == 200
    try:
        run = comfy.run(graph)
    finally:
        assert comfy.post_json("/taesdv/preview/settings", {"enabled": False, "budget": 0.05})[0] == 200
    assert run.succeeded, run.error_text()
    clips = clip_events(run)
    assert [c["step"] for c in clips] == [1, 2, 3]
    assert all((c["frame_count"], c["frame_width"], c["frame_height"]) == (6, 64, 64) for c in clips)


def test_global_switch_previews_samplers_without_the_node_and_can_be_turned_off(comfy):
    assert comfy.post_json("/taesdv/preview/settings", {"enabled": True, "budget": 1.0, "fps": 10})[0] == 200
    try:
        run = comfy.run(graphs.sampling_graph(frames=4, size=64, steps=3))
        clips = clip_events(run)
        assert [c["step"] for c in clips] == [1, 2, 3] and clips[0]["fps"] == 10
    finally:
        assert comfy.post_json("/taesdv/preview/settings", {"enabled": False, "budget": 0.05, "fps": 8})[0] == 200
    assert not clip_events(comfy.run(graphs.sampling_graph(frames=4, size=64, steps=3)))


@pytest.mark.parametrize("method, global_switch_previews", [
    ("default", True), ("auto", True), ("taesd", True), ("latent2rgb", False), ("none", False)])
def test_the_prompts_preview_method_decides_whether_the_global_switch_previews(comfy, method, global_switch_previews):
    # The frontend's per-prompt "Live preview method": none means no previews for that prompt and
    # latent2rgb asks for core's; default leaves it to the server, auto and taesd ask for tiny decoders.
    assert comfy.post_json("/taesdv/preview/settings", {"enabled": True, "budget": 1.0})[0] == 200
    try:
        run = comfy.run(graphs.sampling_graph(frames=4, size=64, steps=3), extra_data={"preview_method": method})
    finally:
        assert comfy.post_json("/taesdv/preview/settings", {"enabled": False, "budget": 0.05})[0] == 200
    assert run.succeeded, run.error_text()
    assert [c["step"] for c in clip_events(run)] == ([1, 2, 3] if global_switch_previews else [])


@pytest.mark.parametrize("method", ["none", "latent2rgb"])
def test_a_preview_node_in_the_graph_previews_whatever_the_prompts_preview_method(comfy, method):
    graph = graphs.sampling_graph(frames=4, size=64, steps=3, preview={"budget_percent": 100})
    run = comfy.run(graph, extra_data={"preview_method": method})
    assert run.succeeded, run.error_text()
    assert [c["step"] for c in clip_events(run)] == [1, 2, 3]


def test_a_preview_node_under_the_global_switch_gives_one_clip_per_step_not_two(comfy):
    # Two ways in (the prepare_callback wrap and the node's OUTER_SAMPLE wrapper) hand over through
    # live_preview.SettledCallback: the node leaves a callback the wrap has settled alone.
    assert comfy.post_json("/taesdv/preview/settings", {"enabled": True, "budget": 1.0})[0] == 200
    try:
        run = comfy.run(graphs.sampling_graph(frames=4, size=64, steps=3, preview={"budget_percent": 100}))
    finally:
        assert comfy.post_json("/taesdv/preview/settings", {"enabled": False, "budget": 0.05})[0] == 200
    assert run.succeeded, run.error_text()
    assert [c["step"] for c in clip_events(run)] == [1, 2, 3]


def test_settings_route_refuses_bad_values(comfy):
    status, body = comfy.post_json("/taesdv/preview/settings", {"max_size": 5})
    assert status == 400 and "max_size" in body["error"]
    assert comfy.get_json("/taesdv/preview/settings")["max_size"] == 256


def test_hook_wraps_comfyui_prepare_callback_on_the_real_host(comfy):
    # The one internal this pack wraps must still be in place after start-up.
    run = comfy.run({"1": {"class_type": "TAESDVTest_HookState", "inputs": {}}})
    assert run.succeeded, run.error_text()
    assert run.outputs("1")["hook"] == [{"wrapped": True, "wraps_original": True}]


def slow_by(decoder, clock, seconds):
    """Make every decoder call advance the fake clock, as a real decode takes time."""
    real = type(decoder).forward_chunk

    def forward_chunk(latents, memory):
        clock.now += seconds
        return real(decoder, latents, memory)
    decoder.forward_chunk = forward_chunk


def as_if_measured(previewer, variant, x0, seconds):
    """Let earlier previews have shown that `variant` decodes `x0` in `seconds`."""
    latents = preview_latents(x0, previewer.max_size, previewer.decoder.spatial_scale)
    previewer.variants[variant].preview_seconds_per_flop = seconds / previewer.flops(variant, latents)


def test_time_spent_sending_counts_in_the_budget(state_dict):
    decoder = model_from_state_dict(state_dict).decoder
    clock = FakeClock()
    previewer = Previewer(decoder, PreviewSettings(budget=0.5), clock=clock)
    slow_by(decoder, clock, 1.0)  # a one-frame preview costs 1 s of decoding
    clock.now += 10.0  # ten seconds of sampling
    assert previewer.render(0, 4, torch.randn(1, 4, 2, 2)) is not None
    assert previewer.budget.spent == pytest.approx(1.0)
    previewer.charge(3.0)  # sending it took 3 s more
    assert previewer.budget.spent == pytest.approx(4.0)
    assert previewer.predicted_cost(0, torch.zeros(1, 1, 4, 2, 2)) == pytest.approx(4.0)
    clock.now += 4.0  # 10 s of sampling so far, 4 s of preview: the next (4 s) would exceed 50%
    assert previewer.render(1, 4, torch.randn(1, 4, 2, 2)) is None
    clock.now += 8.0  # 18 s of sampling: 4 + 4 <= 9
    assert previewer.render(2, 4, torch.randn(1, 4, 2, 2)) is not None


def test_a_cheaper_variant_previews_when_the_full_one_does_not_fit(state_dict):
    full, cheap = model_from_state_dict(state_dict).decoder, model_from_state_dict(state_dict).decoder
    clock = FakeClock()
    previewer = Previewer([full, cheap], PreviewSettings(budget=0.1), clock=clock)
    slow_by(full, clock, 5.0)
    slow_by(cheap, clock, 0.5)
    x0 = torch.randn(1, 4, 2, 2)
    as_if_measured(previewer, 0, x0, 5.0)
    as_if_measured(previewer, 1, x0, 0.5)
    clock.now += 10.0  # 10% of 10 s of sampling: 1 s of previews allowed
    clip = previewer.render(0, 4, x0)
    assert clip is not None and previewer.last_variant == 1
    clock.now += 100.0
    assert previewer.render(1, 4, x0) is not None and previewer.last_variant == 0


def previews_of_a_run(state_dict, costs, steps, run_steps, step_seconds=3.0, budget=0.1):
    """`steps` sampler steps of `step_seconds` (of a run of `run_steps`) previewed by variants that
    cost `costs` seconds, fullest first -> (the previewer, each step's variant or None)."""
    variants = [model_from_state_dict(state_dict).decoder for _ in costs]
    clock = FakeClock()
    previewer = Previewer(variants, PreviewSettings(budget=budget), clock=clock)
    x0 = torch.randn(1, 4, 2, 2)
    for i, seconds in enumerate(costs):
        slow_by(variants[i], clock, seconds)
        as_if_measured(previewer, i, x0, seconds)
    shown = []
    for step in range(steps):
        clock.now += step_seconds
        clip = previewer.render(step, run_steps, x0)
        shown.append(None if clip is None else clip.variant)
    return previewer, shown


def test_steps_save_up_for_whole_clips_the_run_can_afford_instead_of_spending_on_cheaper_ones(state_dict):
    # 20 steps of 3 s at a 10% budget: 0.3 s of previews a step, 6 s in the run. A whole clip costs
    # 1 s: never affordable in one step's share, yet the run affords it 6 times. Spending each
    # step's share on the 0.3 s clip would never show a whole one.
    previewer, shown = previews_of_a_run(state_dict, costs=(1.0, 0.3, 0.05), steps=20, run_steps=20)
    assert set(shown) == {None, 0} and shown.count(0) >= 5, shown
    assert previewer.budget.allow(0.0)  # the previews took at most 10% of the run


def test_cheaper_clips_serve_where_the_run_cannot_afford_whole_ones_often_enough(state_dict):
    # The same run with a 4 s whole clip: the run affords it once (6 s), not PREVIEWS_PER_RUN times,
    # so the 0.3 s clip previews instead of long waits for one whole clip.
    _, shown = previews_of_a_run(state_dict, costs=(4.0, 0.3), steps=8, run_steps=20)
    assert shown.count(1) >= 6 and 0 not in shown[:3], shown


def test_a_taehv_clip_the_budget_cannot_afford_plays_one_frame_per_latent_frame_then_at_latent_size():
    from reference_taehv import random_state_dict
    from taesdv_core.taehv import taehv_from_state_dict

    _, full, _ = taehv_from_state_dict(random_state_dict("wan2_1"))
    no_time, no_time_or_space = full.cheaper_variants()
    clock = FakeClock()
    previewer = Previewer([full, no_time, no_time_or_space], PreviewSettings(max_size=64, budget=0.1), clock=clock)
    x0 = torch.randn(1, 16, 4, 8, 8)  # a Wan x0: [B, C, T, h, w], 4 latent frames (13 frames in full)
    for i, (variant, seconds) in enumerate(((full, 5.0), (no_time, 0.8), (no_time_or_space, 0.1))):
        slow_by(variant, clock, seconds / 4)  # per latent frame: the CPU decodes frame by frame
        as_if_measured(previewer, i, x0, seconds)
    clock.now += 10.0  # 10% of 10 s of sampling: 1 s of previews allowed
    clip = previewer.render(0, 4, x0)
    assert (clip.variant, clip.frame_step, tuple(clip.frames.shape)) == (1, 4, (4, 3, 64, 64))
    clip = previewer.render(1, 4, x0)  # 0.8 s spent: only the 0.1 s variant still fits
    assert (clip.variant, clip.frame_step, tuple(clip.frames.shape)) == (2, 4, (4, 3, 8, 8))
    clock.now += 100.0
    clip = previewer.render(2, 4, x0)
    assert (clip.variant, clip.frame_step, tuple(clip.frames.shape)) == (0, 1, (13, 3, 64, 64))


def test_a_variant_that_has_not_run_yet_is_predicted_at_the_speed_the_others_showed():
    from reference_taehv import random_state_dict
    from taesdv_core.taehv import taehv_from_state_dict

    _, full, _ = taehv_from_state_dict(random_state_dict("wan2_1"))
    variants = [full, *full.cheaper_variants()]
    clock = FakeClock()
    previewer = Previewer(variants, PreviewSettings(max_size=64, budget=1.0), clock=clock)
    x0 = torch.randn(1, 16, 2, 8, 8)
    latents = preview_latents(x0, 64)
    slow_by(variants[0], clock, 1.0)  # the CPU is far slower than assumed: 2 s for the whole clip
    previewer.render(0, 4, x0)
    speed = variants[0].preview_seconds_per_flop
    assert speed == pytest.approx(2.0 / previewer.flops(0, latents))
    for i in (1, 2):  # not run yet: their FLOPs at the measured speed, not at the assumed one
        assert previewer.predicted_cost(i, latents) == pytest.approx(previewer.flops(i, latents) * speed)
    assert previewer.flops(0, latents) > previewer.flops(1, latents) > previewer.flops(2, latents)


def test_a_new_sampling_run_predicts_its_previews_at_the_speed_the_decoder_showed_before(state_dict):
    # Each run makes a new Previewer over the same preview decoders (one per device and dtype: a
    # bf16 copy decodes about twice as fast as an fp32 one on CPUs with native bf16). Its first
    # previews are predicted from what that decoder measured, not restarted from the assumed speed.
    decoder, other = model_from_state_dict(state_dict).decoder, model_from_state_dict(state_dict).decoder
    clock = FakeClock()
    slow_by(decoder, clock, 0.25)
    x0 = torch.randn(2, 4, 8, 8)
    first_run = Previewer(decoder, PreviewSettings(budget=1.0), clock=clock)
    cost = first_run.render(0, 4, x0).decode_seconds
    first_run.charge(0.1)  # sending it
    latents = preview_latents(x0, 256)
    next_run = Previewer(decoder, PreviewSettings(budget=1.0), clock=clock)
    assert next_run.predicted_cost(0, latents) == pytest.approx(cost + 0.1)
    smaller = preview_latents(x0, 32)  # another size costs its FLOPs at that speed
    assert next_run.predicted_cost(0, smaller) == pytest.approx(
        (cost + 0.1) * next_run.flops(0, smaller) / next_run.flops(0, latents))
    unmeasured = Previewer(other, PreviewSettings(budget=1.0), clock=clock)
    assert unmeasured.predicted_cost(0, latents) == unmeasured.flops(0, latents) / assumed_throughput(torch.device("cpu"))

# -- the newest clip over HTTP, for third-party clients ------------------------------------------

def test_clips_over_http_are_off_by_default_and_say_how_to_turn_them_on(comfy):
    run = comfy.run(graphs.sampling_graph(frames=4, size=64, steps=2, preview={"budget_percent": 100}))
    assert run.succeeded, run.error_text()
    try:
        comfy.get_bytes(f"/taesdv/preview/latest?prompt_id={run.prompt_id}")
        raise AssertionError("the clip was served while the switch is off")
    except urllib.error.HTTPError as e:
        assert e.code == 404 and "TAESDV_PREVIEW_HTTP=1" in e.read().decode()


def test_the_newest_clip_of_a_prompt_is_an_animated_webp_of_all_its_frames(comfy_serving_clips):
    host = comfy_serving_clips
    run = host.run(graphs.sampling_graph(frames=6, size=64, steps=3, preview={"budget_percent": 100}))
    assert run.succeeded and len(clip_events(run)) == 3
    with urllib.request.urlopen(f"{host.url}/taesdv/preview/latest?prompt_id={run.prompt_id}", timeout=30) as r:
        assert r.headers["Content-Type"] == "image/webp"
        assert r.headers["X-TAESDV-Step"] == "3/3" and r.headers["X-TAESDV-Node-Id"] == "13"
        clip = Image.open(io.BytesIO(r.read()))
    assert clip.format == "WEBP" and clip.n_frames == 6 and clip.size == (64, 64)
    last = clip_events(run)[-1]
    clip.seek(1)
    clip.load()  # Pillow reads a WebP frame's duration when it decodes the frame
    assert clip.info["duration"] == round(1000 / last["fps"])
    status = None
    try:
        urllib.request.urlopen(f"{host.url}/taesdv/preview/latest?prompt_id=not-a-prompt", timeout=30)
    except urllib.error.HTTPError as e:
        status = e.code
    assert status == 404


def test_other_routes_answer_within_100_ms_while_16_clients_fetch_a_clip(comfy_serving_clips):
    # Encoding the animated WebP used to run on the server's event loop: 16 fetches of one clip
    # held every other request (the settings route took seconds). Now it is encoded once per clip,
    # off the loop, and the other fetches wait for that encode without holding the loop.
    host = comfy_serving_clips
    run = host.run(graphs.sampling_graph(frames=33, size=128, steps=1, preview={"budget_percent": 100, "max_size": 128}))
    assert run.succeeded and len(clip_events(run)) == 1, run.error_text()
    url = f"{host.url}/taesdv/preview/latest?prompt_id={run.prompt_id}"
    bodies = []

    def fetch():
        with urllib.request.urlopen(url, timeout=120) as r:
            bodies.append(r.read())

    fetchers = [threading.Thread(target=fetch) for _ in range(16)]
    for t in fetchers:
        t.start()
    latencies = []
    while not latencies or any(t.is_alive() for t in fetchers):
        started = time.perf_counter()
        host.get_json("/taesdv/preview/settings")
        latencies.append(time.perf_counter() - started)
        time.sleep(0.01)
    for t in fetchers:
        t.join()
    assert len(bodies) == 16 and len(set(bodies)) == 1 and Image.open(io.BytesIO(bodies[0])).n_frames == 33
    report = {"fetches": 16, "frames": 33, "frame_size": 128, "route_requests": len(latencies),
              "route_max_ms": round(1000 * max(latencies), 1),
              "route_median_ms": round(1000 * sorted(latencies)[len(latencies) // 2], 1)}
    os.makedirs(ARTIFACTS, exist_ok=True)
    with open(os.path.join(ARTIFACTS, "route_latency_during_clip_fetches.json"), "w") as f:
        json.dump(report, f)
    print("route latency during 16 clip fetches:", report)
    assert max(latencies) < 0.1, report


# -- video models: TAEHV clips of the whole latent video ----------------------------------------

def test_a_wan_sampler_plays_the_whole_taehv_clip_of_each_step(comfy):
    from reference_taehv import random_state_dict
    from safetensors.torch import save_file

    name = "taew2_1-test.safetensors"
    save_file(random_state_dict("wan2_1", seed=1), os.path.join(comfy.base, "models", "vae_approx", name))
    graph = graphs.wan_sampling_graph(name, width=64, height=48, length=13, steps=3,
                                      preview={"max_size": 256, "fps": 16.0, "budget_percent": 100.0})
    run = comfy.run(graph)
    assert run.succeeded, run.error_text()
    clips = clip_events(run)
    assert [c["step"] for c in clips] == [1, 2, 3]
    for c in clips:  # 13 frames -> 4 latent frames -> all 4*4-3 = 13 frames of the step, 8x space
        assert (c["frame_count"], c["frame_width"], c["frame_height"]) == (13, 64, 48)
        assert (c["frame_step"], c["fps"]) == (1, 16.0)  # the whole clip: every frame, at the node's fps


def test_the_global_switch_previews_a_wan_sampler_with_the_taehv_file_that_serves_it(comfy):
    from reference_taehv import random_state_dict
    from safetensors.torch import save_file

    name = "taew2_1-global.safetensors"  # beside taesdv.pth, which cannot serve Wan latents
    path = os.path.join(comfy.base, "models", "vae_approx", name)
    save_file(random_state_dict("wan2_1", seed=2), path)
    graph = graphs.wan_sampling_graph(name, width=64, height=48, length=9, steps=2)  # no preview node
    assert comfy.post_json("/taesdv/preview/settings", {"enabled": True, "budget": 1.0, "fps": 12})[0] == 200
    try:
        run = comfy.run(graph)
    finally:
        assert comfy.post_json("/taesdv/preview/settings", {"enabled": False, "budget": 0.05, "fps": 8})[0] == 200
        os.remove(path)  # the shared server's other tests list vae_approx
    assert run.succeeded, run.error_text()
    clips = clip_events(run)  # 9 frames -> 3 latent frames -> 4*3-3 = 9 frames per step
    assert [(c["step"], c["frame_count"], c["frame_width"], c["fps"]) for c in clips] == [(1, 9, 64, 12), (2, 9, 64, 12)]


# -- FLUX.2: 128-channel LATENTs, taef2's 32-channel latents folded 2x2 ---------------------------

def random_taef2_decoder(seed):
    """A taef2 decoder state dict (32 channels, the midblock GN pools), random weights."""
    from taesdv_core.taesd import TAESDDecoder

    torch.manual_seed(seed)
    return TAESDDecoder(32, pooled=True).state_dict()


@pytest.mark.parametrize("via", ["node", "global switch"])
def test_a_flux2_sampler_previews_through_taef2(comfy, via):
    # The sampler's x0 is FLUX.2's 128 channels at 1/16 size; taef2 decodes it unfolded, 16 px per
    # latent pixel, each LATENT of the batch a frame of the clip.
    name = f"taef2_preview_{via.replace(' ', '_')}.pth"  # beside taesdv.pth, which cannot serve FLUX.2
    path = os.path.join(comfy.base, "models", "vae_approx", name)
    torch.save(random_taef2_decoder(seed=5), path)
    graph = graphs.flux2_sampling_graph(name, size=64, batch=2, steps=3,
                                        preview={"budget_percent": 100.0} if via == "node" else None)
    if via == "global switch":
        assert comfy.post_json("/taesdv/preview/settings", {"enabled": True, "budget": 1.0})[0] == 200
    try:
        run = comfy.run(graph)
    finally:
        assert comfy.post_json("/taesdv/preview/settings", {"enabled": False, "budget": 0.05})[0] == 200
        os.remove(path)  # the shared server's other tests list vae_approx
    assert run.succeeded, run.error_text()
    clips = clip_events(run)
    assert [c["step"] for c in clips] == [1, 2, 3]
    assert all((c["frame_count"], c["frame_width"], c["frame_height"]) == (2, 64, 64) for c in clips)
