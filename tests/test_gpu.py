"""On a GPU: the engine's device paths, and the nodes under ComfyUI's real device manager.

These run where torch has CUDA; the server tests also need the test server started without
--cpu (TAESDV_TEST_DEVICE=cuda). `bash scripts/test-gpu.sh` on a GPU machine sets both. Elsewhere
they are collected and skipped with the reason.
"""
import os
import uuid

import pytest
import torch
from safetensors.torch import load_file

import graphs
from reference_taesdv import reference_decode
from taesdv_core import DecodeStream, decode, model_from_state_dict
from taesdv_core.engine import allow_tf32, working_bytes_per_latent_frame

CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not CUDA, reason="needs CUDA: this torch has no GPU (CPU build or no device); "
                                                  "run `bash scripts/test-gpu.sh` on a GPU machine")]
gpu_server = pytest.mark.skipif(os.environ.get("TAESDV_TEST_DEVICE") != "cuda",
                                reason="needs the test server on the GPU: TAESDV_TEST_DEVICE=cuda "
                                       "(scripts/test-gpu.sh sets it); the default server runs with --cpu")


def rel_err(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).abs().max() / b.abs().max()).item()


def on_gpu(state_dict, dtype=torch.float16):
    return model_from_state_dict(state_dict, dtype=dtype, device="cuda")


# -- the engine on CUDA (no ComfyUI) ------------------------------------------------------------

def test_fp32_is_exact_and_tf32_is_the_documented_error(state_dict):
    latents = torch.randn(1, 6, 4, 16, 16)
    expected = reference_decode(state_dict, latents)
    model = on_gpu(state_dict, torch.float32)
    fp32 = decode(model.decoder, latents.cuda(), clamp=False)
    assert rel_err(fp32, expected) < 1e-5  # 1.9e-6 measured on an H100
    tf32 = decode(allow_tf32(model, True).decoder, latents.cuda(), clamp=False)
    if torch.cuda.get_device_capability()[0] >= 8:  # TF32 exists from Ampere on
        assert 1e-5 < rel_err(tf32, expected) < 1e-2  # 1.4e-3 measured on an H100


@pytest.mark.parametrize("chunk", [1, 3, None, 64])
@pytest.mark.parametrize("layout", ["NTCHW", "NTHWC"])
def test_frames_copied_to_the_host_equal_frames_kept_on_the_gpu(state_dict, chunk, layout):
    model = on_gpu(state_dict)
    latents = torch.randn(2, 11, 4, 8, 12, device="cuda", dtype=torch.float16)
    on_device = decode(model.decoder, latents, chunk_frames=chunk, out_device="cuda", layout=layout)
    on_host = decode(model.decoder, latents, chunk_frames=chunk, layout=layout)
    assert on_host.device.type == "cpu" and on_host.dtype == torch.float32
    assert torch.equal(on_host, on_device.cpu())


def test_a_stream_follows_its_model_from_the_gpu_to_the_cpu(state_dict):
    model = on_gpu(state_dict, torch.float32)
    latents = torch.randn(1, 7, 4, 8, 8)
    stream = DecodeStream(model.decoder)
    first = stream.decode(latents[:, :3].cuda())
    model.to("cpu")  # as when ComfyUI offloads it between queue runs
    second = stream.decode(latents[:, 3:])
    assert stream.memory[0].device.type == "cpu"
    expected = reference_decode(state_dict, latents).clamp(0, 1)
    assert rel_err(torch.cat([first, second], 1), expected) < 1e-5


def test_a_real_out_of_memory_halves_the_chunk_and_the_frames_are_unchanged(state_dict):
    model = on_gpu(state_dict)
    latents = torch.randn(1, 32, 4, 64, 64, device="cuda", dtype=torch.float16)  # 512 px frames
    lengths, real = [], model.decoder.forward_chunk

    def recording(x, memory):
        lengths.append(x.shape[1])
        return real(x, memory)

    per_frame = working_bytes_per_latent_frame(model.decoder, 64, 64, 2)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(max(0, free - 4 * per_frame), dtype=torch.uint8, device="cuda")  # room for ~4 frames
    model.decoder.forward_chunk = recording
    try:
        got = decode(model.decoder, latents, chunk_frames=32)
    finally:
        del model.decoder.forward_chunk, hog
        torch.cuda.empty_cache()
    assert lengths[0] == 32 and min(lengths) < 32, lengths  # the first try failed, the retry halved
    expected = decode(model.decoder, latents, chunk_frames=lengths[-1])  # the length the retry settled on
    # Same chunking, same frames; cuDNN may pick another algorithm under memory pressure, so
    # fp16 rounding may differ in the last place.
    assert (got - expected).abs().max() <= 2e-3


# -- the nodes on a server that uses the GPU -------------------------------------------------------

def unique(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def report(run, node):
    return run.outputs(node)["device"][0]


def device_report(model="1", images=None, action="report"):
    inputs = {"taesdv": [model, 0], "action": action}
    if images:
        inputs["images"] = [images, 0]
    return {"class_type": "TAESDVTest_DeviceReport", "inputs": inputs}


def clip(frames, seed, height=8, width=8):
    return torch.randn(frames, 4, height, width, generator=torch.Generator().manual_seed(seed))[None]


@gpu_server
@pytest.mark.parametrize("dtype", ["auto", "fp32", "tf32", "fp16"])
def test_loader_hands_the_model_to_the_device_manager_which_loads_and_offloads_it(comfy, dtype):
    name = unique(f"dm_{dtype}")
    graph = {"1": graphs.loader(dtype), "2": graphs.latent_clip(frames=4, height=8, width=8, seed=11),
             "3": graphs.decode(), "4": graphs.save_tensor(name, images="3"),
             "5": device_report(images="3", action="unload_all")}
    run = comfy.run(graph)
    assert run.succeeded, run.error_text()
    seen = report(run, "5")
    assert seen["load_device"].startswith("cuda") and seen["offload_device"] == "cpu"
    assert seen["param_device"].startswith("cuda") and seen["loaded"]
    expected = {"auto": seen["auto_dtype"], "fp32": "torch.float32", "tf32": "torch.float32", "fp16": "torch.float16"}
    assert seen["dtype"] == expected[dtype]
    assert seen["allow_tf32"] == (dtype == "tf32")
    assert seen["images_device"] == "cpu"  # IMAGE lands on the intermediate device
    assert seen["param_device_after"] == "cpu"
    frames = load_file(os.path.join(comfy.base, "output", f"{name}.safetensors"))["images"]
    assert frames.shape == (4, 64, 64, 3) and frames.dtype == torch.float32


@gpu_server
def test_previews_run_beside_a_loaded_unet_and_leave_its_output_unchanged(comfy):
    outputs = {}
    for preview in (None, {"budget_percent": 100}):
        name = unique("unet")
        graph = graphs.sampling_graph(frames=8, size=64, steps=4, preview=preview, seed=123, save_name=name)
        graph["30"] = device_report(images="14")
        run = comfy.run(graph)
        assert run.succeeded, run.error_text()
        outputs[preview is None] = load_file(os.path.join(comfy.base, "output", f"{name}.safetensors"))["images"]
        if preview:
            clips = [m["data"] for m in run.messages if m["type"] == "taesdv.preview"]
            assert len(clips) >= 1 and all(c["frame_count"] == 8 for c in clips)
        assert "BaseModel" in report(run, "30")["loaded_models"]  # the UNet stays loaded beside TAESDV
    assert torch.equal(outputs[True], outputs[False])


@gpu_server
def test_a_stream_continues_after_the_device_manager_offloads_its_model(comfy, state_dict):
    stream_name, got = unique("moving"), []
    pieces = [(0, 3), (3, 2), (5, 4)]
    for i, (start, count) in enumerate(pieces):
        name = unique(f"piece{i}")
        graph = {"1": graphs.loader("fp32"), "2": graphs.latent_clip(frames=9, height=8, width=8, seed=12,
                                                                     start=start, count=count),
                 "3": graphs.stream(name=stream_name, reset=(i == 0)), "4": graphs.save_tensor(name, images="3"),
                 "5": device_report(images="3", action="unload_all")}  # the model leaves the GPU after each piece
        run = comfy.run(graph)
        assert run.succeeded, run.error_text()
        assert report(run, "5")["param_device"].startswith("cuda")
        assert report(run, "5")["param_device_after"] == "cpu"
        got.append(load_file(os.path.join(comfy.base, "output", f"{name}.safetensors"))["images"])
    expected = reference_decode(state_dict, clip(9, 12)).clamp(0, 1)[0].permute(0, 2, 3, 1)
    assert (torch.cat(got) - expected).abs().max() < 1e-5
