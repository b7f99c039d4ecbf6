"""Test-only nodes (never shipped): inputs the real graph needs where no model weights exist."""
import weakref

import torch
from comfy_api.latest import ComfyExtension, io


class TestLatentClip(io.ComfyNode):
    """A deterministic random SD latent clip, frames as the batch (unscaled, like any LATENT)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TAESDVTest_LatentClip", category="testing",
            inputs=[io.Int.Input("frames", default=8, min=0, max=4096), io.Int.Input("height", default=32, max=8192),
                    io.Int.Input("width", default=32, max=8192), io.Int.Input("channels", default=4),
                    io.Int.Input("seed", default=0), io.Int.Input("start", default=0), io.Int.Input("count", default=-1),
                    io.Boolean.Input("video_5d", default=False), io.Combo.Input("fill", options=["random", "nan"], default="random")],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, frames, height, width, channels, seed, start, count, video_5d, fill):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(frames, channels, height, width, generator=g) / 0.18215
        if fill == "nan":
            x[0, 0, 0, 0] = float("nan")
        x = x[start:] if count < 0 else x[start:start + count]
        if video_5d:
            x = x.movedim(0, 1).unsqueeze(0)
        return io.NodeOutput({"samples": x})


class TestLatentStats(io.ComfyNode):
    """Saves a LATENT's tensor to the output folder as .safetensors (for exact comparisons)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TAESDVTest_SaveTensor", category="testing", is_output_node=True,
                         inputs=[io.Latent.Input("samples", optional=True), io.Image.Input("images", optional=True),
                                 io.String.Input("name", default="tensor")],
                         outputs=[])

    @classmethod
    def execute(cls, name, samples=None, images=None):
        import os
        import folder_paths
        from safetensors.torch import save_file

        tensors = {}
        if samples is not None:
            tensors["samples"] = samples["samples"].contiguous()
        if images is not None:
            tensors["images"] = images.contiguous()
        save_file(tensors, os.path.join(folder_paths.get_output_directory(), f"{name}.safetensors"))
        return io.NodeOutput()


def randomized_patcher(model, seed: int):
    """A tiny diffusion model's patcher, its weights small random values (seeded: ComfyUI's ops
    leave weights uninitialised)."""
    import comfy.model_management as mm
    import comfy.model_patcher

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.02 if p.ndim > 1 else 0.01))
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


class TestTinySD15Model(io.ComfyNode):
    """A real SD1.5-format diffusion model (ComfyUI's own UNet and model classes) with small random
    weights, so a real KSampler runs here without any downloaded checkpoint."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TAESDVTest_TinySD15Model", category="testing",
                         inputs=[io.Int.Input("channels", default=32, min=8, max=320), io.Int.Input("seed", default=0),
                                 io.Combo.Input("latent_format", options=["SD15", "SDXL"], default="SD15")],
                         outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, channels, seed, latent_format="SD15"):
        import comfy.supported_models

        unet_config = {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
                       "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": channels,
                       "num_res_blocks": [1, 1], "transformer_depth": [1, 1], "channel_mult": [1, 2],
                       "transformer_depth_middle": 1, "use_linear_in_transformer": False, "context_dim": 32,
                       "num_heads": 2, "num_head_channels": -1, "transformer_depth_output": [1, 1, 1, 1], "dims": 2}
        model = comfy.supported_models.SD15(unet_config).get_model({}, "", device="cpu")
        if latent_format == "SDXL":  # 4 channels, but another VAE and scale: not TAESDV's to preview
            import comfy.latent_formats
            model.latent_format = comfy.latent_formats.SDXL()
        return io.NodeOutput(randomized_patcher(model, seed))


class TestTinyWanModel(io.ComfyNode):
    """A real Wan 2.1 / 2.2-format video diffusion model (ComfyUI's own WanModel and model classes)
    with a tiny random transformer, so a real KSampler samples 16/48-channel video latents here."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TAESDVTest_TinyWanModel", category="testing",
                         inputs=[io.Int.Input("dim", default=32, min=16, max=2048), io.Int.Input("seed", default=0),
                                 io.Combo.Input("latent_format", options=["Wan21", "Wan22"], default="Wan21")],
                         outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, dim, seed, latent_format="Wan21"):
        import comfy.latent_formats
        import comfy.supported_models

        channels = 16 if latent_format == "Wan21" else 48
        unet_config = {"image_model": "wan2.1", "model_type": "t2v", "dim": dim, "ffn_dim": dim * 2, "num_heads": 2,
                       "num_layers": 1, "in_dim": channels, "out_dim": channels, "text_dim": 32, "freq_dim": 32}
        model = comfy.supported_models.WAN21_T2V(unet_config).get_model({}, "", device="cpu")
        model.latent_format = getattr(comfy.latent_formats, latent_format)()
        return io.NodeOutput(randomized_patcher(model, seed))


class TestTinyFlux2Model(io.ComfyNode):
    """A real FLUX.2-format image diffusion model (ComfyUI's own Flux2 model classes, the Flux2
    latent format: 128-channel LATENTs at 1/16 size) with a tiny random transformer."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TAESDVTest_TinyFlux2Model", category="testing",
                         inputs=[io.Int.Input("seed", default=0)], outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, seed):
        import comfy.supported_models

        # what comfy.model_detection reads from a FLUX.2 checkpoint, at a width of 64 (2 heads of 32)
        unet_config = {"image_model": "flux2", "in_channels": 128, "out_channels": 128, "patch_size": 1,
                       "hidden_size": 64, "num_heads": 2, "axes_dim": [8, 8, 8, 8], "mlp_ratio": 3.0, "theta": 2000,
                       "depth": 1, "depth_single_blocks": 1, "context_in_dim": 32, "vec_in_dim": None,
                       "guidance_embed": False, "global_modulation": True, "mlp_silu_act": True, "qkv_bias": False,
                       "ops_bias": False, "default_ref_method": "index", "ref_index_scale": 10.0, "txt_ids_dims": [3]}
        import dataclasses
        import comfy.ldm.flux.model
        if "txt_ids_dims" not in {f.name for f in dataclasses.fields(comfy.ldm.flux.model.FluxParams)}:
            del unet_config["txt_ids_dims"]  # ComfyUI 0.3.75's FLUX.2 has no such setting
        model = comfy.supported_models.Flux2(unet_config).get_model({}, "", device="cpu")
        return io.NodeOutput(randomized_patcher(model, seed))


class TestConditioning(io.ComfyNode):
    """Conditioning for the tiny model (context width 32), in place of a CLIP text encoder."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TAESDVTest_Conditioning", category="testing",
                         inputs=[io.Int.Input("seed", default=0), io.Int.Input("tokens", default=77, min=1, max=512, optional=True)],
                         outputs=[io.Conditioning.Output()])

    @classmethod
    def execute(cls, seed, tokens=77):
        g = torch.Generator().manual_seed(seed)
        # pooled_output: ComfyUI 0.3.75's FLUX models read it whatever their config (the others ignore it)
        return io.NodeOutput([[torch.randn(1, tokens, 32, generator=g), {"pooled_output": torch.zeros(1, 32)}]])


class TestHookState(io.ComfyNode):
    """Reports whether latent_preview.prepare_callback is the pack's wrap around ComfyUI's original."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TAESDVTest_HookState", category="testing", is_output_node=True, inputs=[], outputs=[])

    @classmethod
    def fingerprint_inputs(cls):
        return float("nan")

    @classmethod
    def execute(cls):
        import latent_preview

        fn = latent_preview.prepare_callback
        original = getattr(fn, "__wrapped__", None)
        state = {"wrapped": bool(getattr(fn, "taesdv_hook", False)),
                 "wraps_original": original is not None and original.__module__ == "latent_preview"}
        return io.NodeOutput(ui={"hook": [state]})


TAESDV = io.Custom("TAESDV")


class TestInjectOutOfMemory(io.ComfyNode):
    """Makes the next `times` decoder calls of this TAESDV (its decode or its previews) fail with
    an out-of-memory error, each where the call holds more than `max_ok_frames` frames."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TAESDVTest_InjectOOM", category="testing",
                         inputs=[TAESDV.Input("taesdv"), io.Int.Input("max_ok_frames", default=1),
                                 io.Int.Input("times", default=3), io.Combo.Input("target", options=["decode", "preview"])],
                         outputs=[TAESDV.Output()])

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return float("nan")

    @classmethod
    def execute(cls, taesdv, max_ok_frames, times, target):
        failures = {"left": times}

        def failing(decoder):
            real = type(decoder).forward_chunk

            def forward_chunk(latents, memory):
                if failures["left"] > 0 and latents.shape[1] > max_ok_frames:
                    failures["left"] -= 1
                    if failures["left"] == 0:
                        del decoder.forward_chunk
                    raise torch.OutOfMemoryError("injected by TAESDVTest_InjectOOM: out of memory")
                return real(decoder, latents, memory)
            decoder.forward_chunk = forward_chunk

        if target == "decode":
            failing(taesdv.model.decoder)
        else:
            import comfy.model_management as mm
            failing(taesdv.preview_decoders(mm.get_torch_device())[0])
        return io.NodeOutput(taesdv)


class TestBreakPreview(io.ComfyNode):
    """Makes this TAESDV's previews fail as they are set up (any error, not only out-of-memory)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TAESDVTest_BreakPreview", category="testing",
                         inputs=[TAESDV.Input("taesdv")], outputs=[TAESDV.Output()])

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return float("nan")

    @classmethod
    def execute(cls, taesdv):
        import copy

        broken = copy.copy(taesdv)

        def preview_decoders(device):
            raise RuntimeError("injected by TAESDVTest_BreakPreview")
        broken.preview_decoders = preview_decoders
        return io.NodeOutput(broken)



class TestPreviewDtype(io.ComfyNode):
    """This TAESDV with its live previews in fp32 instead of dtype auto (bf16 on CPUs with native
    bf16), so one server can time both (bench/preview_overhead.py); "auto" passes it on unchanged.
    The fp32 copies are built once per loaded file and device, as the loader builds its auto ones."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TAESDVTest_PreviewDtype", category="testing",
                         inputs=[TAESDV.Input("taesdv"), io.Combo.Input("dtype", options=["auto", "fp32"])],
                         outputs=[TAESDV.Output()])

    @classmethod
    def execute(cls, taesdv, dtype):
        import copy
        import functools

        if dtype == "auto":
            return io.NodeOutput(taesdv)
        fixed = copy.copy(taesdv)
        fixed.preview_decoders = functools.partial(_fp32_preview_decoders, taesdv)
        return io.NodeOutput(fixed)


def _fp32_preview_decoders(taesdv, device):
    """As ManagedAutoencoder.preview_decoders, in fp32: the decoder, then its cheaper variants."""
    import copy

    key = str(device)
    decoders = _FP32_PREVIEW_DECODERS.setdefault(taesdv, {})
    if key not in decoders:
        full = copy.deepcopy(taesdv.decoder).to(device=device, dtype=torch.float32)
        decoders[key] = [full, *full.cheaper_variants()]
    return decoders[key]


_FP32_PREVIEW_DECODERS = weakref.WeakKeyDictionary()  # loaded TAESDV -> {device: fp32 preview decoders}

class TestAnyValue(io.ComfyNode):
    """Any value for the fuzz test, as LATENT, IMAGE, TAESDV and MODEL at once: a tensor of the given
    shape, dtype and fill, wrapped as `wrap` says."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TAESDVTest_AnyValue", category="testing",
                         inputs=[io.String.Input("shape", default="2,4,4,4"), io.String.Input("dtype", default="float32"),
                                 io.String.Input("fill", default="random"), io.String.Input("wrap", default="latent")],
                         outputs=[io.Latent.Output(), io.Image.Output(), TAESDV.Output(), io.Model.Output()])

    @classmethod
    def execute(cls, shape, dtype, fill, wrap):
        dims = [int(d) for d in shape.split(",") if d.strip()]
        x = torch.randn(dims, generator=torch.Generator().manual_seed(0)).clamp(0, 1)
        if fill == "nan":
            x.view(-1)[:1] = float("nan")
        elif fill == "inf":
            x.view(-1)[:1] = float("inf")
        elif fill == "huge":
            x.fill_(3e38)
        x = x.to(getattr(torch, dtype))
        value = {"latent": {"samples": x}, "raw": x, "list": {"samples": x.tolist() if x.numel() < 64 else [1]},
                 "string": {"samples": "text"}, "none": None, "empty_dict": {}, "nested": {"samples": torch.nested.nested_tensor([x.float(), x.float()]) if x.ndim else x},
                 "tensor_list": [x]}[wrap]
        return io.NodeOutput(value, value, value, value)


class TestServerStats(io.ComfyNode):
    """Process memory, threads and TAESDV stream counts of the server, as UI output."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TAESDVTest_ServerStats", category="testing", is_output_node=True,
                         inputs=[TAESDV.Input("taesdv", optional=True)], outputs=[])

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return float("nan")

    @classmethod
    def execute(cls, taesdv=None):
        import gc
        import threading

        import psutil

        gc.collect()
        stats = {"rss": psutil.Process().memory_info().rss, "threads": threading.active_count(),
                 "thread_names": sorted(t.name for t in threading.enumerate())}
        if taesdv is not None:
            stats.update(streams=len(taesdv.streams), stream_state_bytes=taesdv.streams.state_bytes())
        return io.NodeOutput(ui={"stats": [stats]})


class TestDeviceReport(io.ComfyNode):
    """What ComfyUI's device manager did with this TAESDV (devices, dtypes, loaded models), as UI
    output; action unload_all then offloads every model (comfy.model_management.unload_all_models)
    and reports where the weights went. `images` only orders it after a decode."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TAESDVTest_DeviceReport", category="testing", is_output_node=True,
                         inputs=[TAESDV.Input("taesdv"), io.Image.Input("images", optional=True),
                                 io.Combo.Input("action", options=["report", "unload_all"], default="report")],
                         outputs=[])

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return float("nan")

    @classmethod
    def execute(cls, taesdv, action, images=None):
        import comfy.model_management as mm

        def where():
            return str(next(taesdv.model.parameters()).device)

        report = {"load_device": str(taesdv.load_device), "offload_device": str(taesdv.offload_device),
                  "dtype": str(taesdv.dtype), "param_device": where(),
                  "auto_dtype": str(mm.vae_dtype(taesdv.load_device, allowed_dtypes=[torch.float16, torch.bfloat16,
                                                                                      torch.float32])),
                  "loaded": any(lm.model is taesdv.patcher for lm in mm.current_loaded_models),
                  "loaded_models": [type(lm.model.model).__name__ for lm in mm.current_loaded_models],
                  "allow_tf32": bool(getattr(taesdv.model.decoder, "allow_tf32", False)),
                  "images_device": None if images is None else str(images.device)}
        if action == "unload_all":
            mm.unload_all_models()
            report["param_device_after"] = where()
        return io.NodeOutput(ui={"device": [report]})


def _pack_module(suffix):
    """A module of the TAESDV pack as ComfyUI loaded it (its sys.modules name is the pack's path)."""
    import sys

    for name, module in list(sys.modules.items()):
        if name.endswith(suffix) and "taesdv_test_nodes" not in name and hasattr(module, "SamplerPreview"):
            return module
    raise RuntimeError(f"no loaded module ends with {suffix}")


class TestOutgoingQueue(io.ComfyNode):
    """What waits in ComfyUI's outgoing websocket queue (PromptServer.messages) now: messages and
    bytes per event (JSON events as serialized; preview images as raw pixels, as they wait there).
    `max_backlog` >= 0 first sets the pack's preview backlog limit (live_preview.MAX_BACKLOG);
    the limit in force is reported."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TAESDVTest_OutgoingQueue", category="testing", is_output_node=True,
                         inputs=[io.Int.Input("max_backlog", default=-1, min=-1, max=2**31 - 1)], outputs=[])

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return float("nan")

    @classmethod
    def execute(cls, max_backlog):
        import json

        from server import PromptServer

        live_preview = _pack_module("live_preview")
        if max_backlog >= 0:
            live_preview.MAX_BACKLOG = max_backlog
        for _ in range(100):  # the event loop's thread may append while we copy
            try:
                waiting = list(PromptServer.instance.messages._queue)
                break
            except RuntimeError:
                continue
        per_event = {}
        for event, data, _sid in waiting:
            if isinstance(data, tuple) and data:  # ("JPEG", PIL image, size), or that and its metadata
                image = data[0][1] if isinstance(data[0], tuple) else data[1]
                size = image.width * image.height * len(image.getbands())
            elif isinstance(data, (bytes, bytearray)):
                size = len(data)
            else:
                size = len(json.dumps(data, default=str))
            entry = per_event.setdefault(str(event), {"messages": 0, "bytes": 0})
            entry["messages"] += 1
            entry["bytes"] += size
        report = {"messages": len(waiting), "bytes": sum(e["bytes"] for e in per_event.values()),
                  "per_event": per_event, "max_backlog": live_preview.MAX_BACKLOG}
        return io.NodeOutput(ui={"queue": [report]})


class TestFillClientPipe(io.ComfyNode):
    """Sends the running prompt's client 256 KiB messages, one at a time, until the server's send
    loop stops taking them (the client does not read and the socket buffers are full) or `max_mb`
    were sent. Reports the bytes sent and whether the loop stalled."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TAESDVTest_FillClientPipe", category="testing", is_output_node=True,
                         inputs=[io.Int.Input("max_mb", default=64, min=1, max=1024)], outputs=[])

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return float("nan")

    @classmethod
    def execute(cls, max_mb):
        import threading
        import time

        from server import PromptServer

        server = PromptServer.instance
        chunk, sent, stalled = 256 * 1024, 0, False
        while sent < max_mb * 2**20 and not stalled:
            queued = threading.Event()

            def put(message=("taesdvtest.filler", {"pad": "x" * chunk}, server.client_id)):
                server.messages.put_nowait(message)  # what send_sync does, and then we know it is queued
                queued.set()
            server.loop.call_soon_threadsafe(put)
            queued.wait(30)
            sent += chunk
            deadline = time.time() + 2.0
            while server.messages.qsize() > 0 and time.time() < deadline:
                time.sleep(0.01)
            stalled = server.messages.qsize() > 0  # not taken within 2 s: the loop waits on the client
        return io.NodeOutput(ui={"pipe": [{"bytes_sent": sent, "stalled": stalled}]})


class TestNodes(ComfyExtension):
    async def get_node_list(self):
        return [TestLatentClip, TestLatentStats, TestTinySD15Model, TestTinyWanModel, TestTinyFlux2Model, TestConditioning,
                TestHookState,
                TestInjectOutOfMemory, TestBreakPreview, TestPreviewDtype, TestAnyValue, TestServerStats, TestDeviceReport,
                TestOutgoingQueue, TestFillClientPipe]


async def comfy_entrypoint():
    return TestNodes()
