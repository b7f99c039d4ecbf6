"""Small builders of API-format ComfyUI graphs for the tests."""
import os


# The loader dtype the shared host tests use: fp32, so their 1e-5 comparisons with the fp32
# reference hold on any machine ("auto" is bf16 on CPUs with native bf16, fp16 on GPUs).
LOADER_DTYPE = os.environ.get("TAESDV_TEST_LOADER_DTYPE", "fp32")


def loader(dtype=None, name="taesdv.pth"):
    dtype = dtype or LOADER_DTYPE
    return {"class_type": "TAESDVLoader", "inputs": {"model_name": name, "dtype": dtype}}


def latent_clip(frames=8, height=4, width=4, seed=0, start=0, count=-1, channels=4, video_5d=False, fill="random"):
    return {"class_type": "TAESDVTest_LatentClip",
            "inputs": {"frames": frames, "height": height, "width": width, "channels": channels, "seed": seed,
                       "start": start, "count": count, "video_5d": video_5d, "fill": fill}}


def decode(model="1", samples="2", chunk=0):
    return {"class_type": "TAESDVDecode",
            "inputs": {"taesdv": [model, 0], "samples": [samples, 0], "chunk_frames": chunk, "latent_scale": 0.18215}}


def stream(model="1", samples="2", name="s", reset=False, chunk=0):
    return {"class_type": "TAESDVStreamingDecode",
            "inputs": {"taesdv": [model, 0], "samples": [samples, 0], "stream_name": name, "reset": reset,
                       "chunk_frames": chunk, "latent_scale": 0.18215}}


def encode(model="1", pixels="3", chunk=0):
    return {"class_type": "TAESDVEncode",
            "inputs": {"taesdv": [model, 0], "pixels": [pixels, 0], "chunk_frames": chunk, "latent_scale": 0.18215}}


def save_tensor(name, images=None, samples=None):
    inputs = {"name": name}
    if images:
        inputs["images"] = [images, 0]
    if samples:
        inputs["samples"] = [samples, 0]
    return {"class_type": "TAESDVTest_SaveTensor", "inputs": inputs}


def save_image(images, prefix="taesdv"):
    return {"class_type": "SaveImage", "inputs": {"images": [images, 0], "filename_prefix": prefix}}


def decode_graph(save_name, **clip):
    return {"1": loader(), "2": latent_clip(**clip), "3": decode(), "4": save_tensor(save_name, images="3")}


def ksampler(seed, steps):
    """KSampler node 13: model 10, conditioning 11 (both sides), latent 12; euler, cfg 2."""
    return {"class_type": "KSampler", "inputs": {
        "model": ["10", 0], "positive": ["11", 0], "negative": ["11", 0], "latent_image": ["12", 0],
        "seed": seed, "steps": steps, "cfg": 2.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}}


def with_preview(g, preview, default_fps):
    """`g` with node 20, TAESDV Latent Preview of loader 1 on model 10, feeding the sampler 13
    (unchanged when preview is None; its keys: max_size, fps, budget_percent, and dtype: "fp32"
    previews through TAESDVTest_PreviewDtype (node 21) in fp32 instead of dtype auto)."""
    if preview is not None:
        taesdv = ["1", 0]
        if "dtype" in preview:
            g["21"] = {"class_type": "TAESDVTest_PreviewDtype", "inputs": {"taesdv": taesdv, "dtype": preview["dtype"]}}
            taesdv = ["21", 0]
        g["20"] = {"class_type": "TAESDVLatentPreview", "inputs": {
            "model": ["10", 0], "taesdv": taesdv, "max_size": preview.get("max_size", 256),
            "fps": preview.get("fps", default_fps), "budget_percent": preview.get("budget_percent", 100.0)}}
        g["13"]["inputs"]["model"] = ["20", 0]
    return g


def sampling_graph(frames=8, size=64, steps=4, channels=32, preview=None, seed=None, save_name=None):
    """A real KSampler on a tiny random SD1.5-format model, optionally through TAESDV Latent Preview.

    A fresh seed by default, so ComfyUI's cache never skips the sampler.
    """
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "big")
    g = {
        "1": loader(),
        "10": {"class_type": "TAESDVTest_TinySD15Model", "inputs": {"channels": channels, "seed": 0, "latent_format": "SD15"}},
        "11": {"class_type": "TAESDVTest_Conditioning", "inputs": {"seed": 1}},
        "12": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": frames}},
        "13": ksampler(seed, steps),
        "14": decode(samples="13"),
        "15": save_tensor(save_name or "sampled", images="14"),
    }
    return with_preview(g, preview, default_fps=8.0)


def wan_sampling_graph(taehv_name, width=64, height=48, length=13, steps=3, dim=32, preview=None, seed=None,
                       latent_format="Wan21"):
    """A real KSampler on a tiny random Wan-format video model (TAESDVTest_TinyWanModel), with the
    TAEHV file `taehv_name` (in models/vae_approx) loaded and, optionally, previewing through it.

    length frames give (length - 1) // 4 + 1 latent frames, as EmptyHunyuanLatentVideo makes them.
    """
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "big")
    g = {
        "1": loader(name=taehv_name),
        "10": {"class_type": "TAESDVTest_TinyWanModel", "inputs": {"dim": dim, "seed": 0, "latent_format": latent_format}},
        "11": {"class_type": "TAESDVTest_Conditioning", "inputs": {"seed": 1, "tokens": 8}},
        "12": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": width, "height": height, "length": length,
                                                                  "batch_size": 1}},
        "13": ksampler(seed, steps),
        "15": save_tensor("wan_sampled", samples="13"),
    }
    return with_preview(g, preview, default_fps=16.0)


def flux2_sampling_graph(taef2_name, size=64, batch=2, steps=3, preview=None, seed=None):
    """A real KSampler on a tiny random FLUX.2-format model (TAESDVTest_TinyFlux2Model): `batch`
    128-channel LATENTs of size/16, from Empty Flux 2 Latent; the taef2 file `taef2_name` (in
    models/vae_approx) loaded and, optionally, previewing through it."""
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "big")
    g = {
        "1": loader(name=taef2_name),
        "10": {"class_type": "TAESDVTest_TinyFlux2Model", "inputs": {"seed": 0}},
        "11": {"class_type": "TAESDVTest_Conditioning", "inputs": {"seed": 1, "tokens": 8}},
        "12": {"class_type": "EmptyFlux2LatentImage", "inputs": {"width": size, "height": size, "batch_size": batch}},
        "13": ksampler(seed, steps),
        "15": save_tensor("flux2_sampled", samples="13"),
    }
    return with_preview(g, preview, default_fps=8.0)


def sampler_progress(run, sampler="13") -> list[int]:
    """The step numbers the sampler's progress messages reported. ComfyUI 0.33 sends the first and
    the last step always and those between at most one per 100 ms (comfy.utils.ProgressBar);
    0.3.75 sends every step."""
    return [p["value"] for p in run.of_type("progress") if p["node"] == sampler]
