"""TAESDV benchmark: one command, a table on stdout, bench/results/results.json and chart.png.

    .venv/bin/python bench/run.py [--quick] [--device cpu|cuda] [--dtype fp32|tf32|fp16|bf16|auto] [--threads 2]
    .venv/bin/python bench/run.py --only precision   # just the dtype auto rows (CPU)

On CPUs it also prints the precision rows: TAESDV's auto decode in fp32 and in dtype auto (bf16
on CPUs with native bf16) beside the reference-style fp32 baseline, their peak memory, and the
whole `taesdv decode` process at --dtype fp32 and auto on the real FLUX.2 tiny decoder
(../shared/weights) for 60 frames of 256 px, naming the CPU and whether its bf16 is native.

On CUDA it first prints and writes the GPU rows (gpu_rows: 512 px, T=64, ms/frame and peak memory
of the official-style baseline, auto with output kept on the GPU, auto with the default float32
host output, chunks 8/16/32/64, streaming one frame per call, and the SD VAE per frame).

All rows in one run use the same random weights of the official layout. Times are medians of
several runs after warm-up; ratios are taken within the run. Peak memory is measured per mode
and clip length in a fresh process each. No timing is asserted anywhere in the tests.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from baseline import baseline_decode  # noqa: E402
from process_memory import peak_rss_bytes, reset_peak_rss  # noqa: E402
from taesdv_core import DecodeStream, TAESDV, decode, encode  # noqa: E402
import taesdv_core.engine as engine  # noqa: E402
from taesdv_core.metrics import psnr  # noqa: E402
from taesdv_core.model import TAESDVDecoder  # noqa: E402
from taesdv_core.precision import auto_dtype, describe_cpu  # noqa: E402

RESULTS = os.path.join(ROOT, "bench", "results")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "tf32": torch.float32}
SHARED = os.path.join(ROOT, "..", "shared")


def resolve_dtype(name, device):
    """A DTYPES name, or "auto": what the loader and the CLI pick on this device (precision.py)."""
    return auto_dtype(device) if name == "auto" else DTYPES[name]


def one_batch(run):
    """Run with chunks as one batch (the GPU path) instead of frame by frame, on any device."""
    saved = engine.runs_frame_by_frame
    engine.runs_frame_by_frame = lambda device: False
    try:
        return run()
    finally:
        engine.runs_frame_by_frame = saved


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def make_model(device, dtype, seed=0):
    torch.manual_seed(seed)
    model = TAESDV()
    with torch.no_grad():  # weights scaled like trained ones so activations stay O(1)
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * ((1.0 / (p.shape[1] * 9)) ** 0.5 if p.ndim == 4 else 0.05))
    model.load_state_dict(model.state_dict())  # refresh derived weights
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def tf32_if(model, dtype_name):
    return engine.allow_tf32(model, dtype_name == "tf32")


def calibrate(device, dtype, size, repeats):
    """GFLOP/s of one 3x3 conv, 64->64 and 128->64, channels_last, at `size` x `size` pixels (the
    decoder's largest stage), best over batch sizes 1, 2 and 4: the practical ceiling."""
    rows = {}
    for c_in in (64, 128):
        best = 0.0
        for batch in (1, 2, 4):
            x = torch.randn(batch, c_in, size, size, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
            w = torch.randn(64, c_in, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
            b = torch.randn(64, device=device, dtype=dtype)
            with torch.inference_mode():
                seconds, _ = timed(lambda: F.conv2d(x, w, b, padding=1), device, repeats * 2, warmup=2)
            best = max(best, 2 * batch * c_in * 64 * 9 * size * size / seconds / 1e9)
        rows[f"conv3x3_{c_in}to64_{size}px"] = best
    return rows


def round_robin(modes, device, repeats):
    """Each mode once (warm-up; its output kept), then `repeats` rounds of every mode in turn, so
    drift on a shared machine hits all modes alike. Returns (outputs, seconds per mode)."""
    outputs = {name: fn() for name, fn in modes.items()}
    times = {name: [] for name in modes}
    for _ in range(repeats):
        for name, fn in modes.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return outputs, times


def decode_modes(model, device, dtype, latent, frames, repeats, quick):
    """Every mode on the same latents, run round-robin within each repeat so drift on a shared
    machine hits all modes alike; medians per mode."""
    latents = torch.randn(1, frames, 4, latent, latent, device=device, dtype=dtype)
    px = latent * 8
    flops = frames * TAESDVDecoder().flops_per_frame(px, px)

    def stream_frames():
        stream = DecodeStream(model.decoder)
        return torch.cat([stream.decode(latents[:, i:i + 1], chunk_frames=1, clamp=False) for i in range(frames)], 1)

    modes = {"baseline (reference-style parallel)": lambda: baseline_decode(model.decoder, latents),
             "parallel (one batch, as on GPUs)": lambda: one_batch(lambda: decode(model.decoder, latents,
                                                                                  chunk_frames=frames, clamp=False)),
             "parallel": lambda: decode(model.decoder, latents, chunk_frames=frames, clamp=False),
             "auto": lambda: decode(model.decoder, latents, clamp=False)}
    for c in ((1, 2, 4, 8) if not quick else (1, 4)):
        modes[f"chunked {c}"] = lambda c=c: decode(model.decoder, latents, chunk_frames=c, clamp=False)
    modes["streaming (1 frame per call)"] = stream_frames
    outputs, times = round_robin(modes, device, repeats)
    base_name = next(iter(modes))
    base_out = outputs[base_name].float().cpu()
    base_s = statistics.median(times[base_name])
    rows = []
    for name in modes:
        seconds = statistics.median(times[name])
        out = outputs[name].float().cpu()
        rows.append({"mode": name, "seconds": seconds, "all_seconds": times[name], "latent": f"{latent}x{latent}",
                     "pixels": px, "frames": frames, "fps": frames / seconds, "gflops": flops / seconds / 1e9,
                     "vs_baseline": base_s / seconds,
                     "max_rel_diff": float((out - base_out).abs().max() / base_out.abs().max())})
    return rows


def stream_latency(model, device, dtype, latent, frames, repeats):
    latents = torch.randn(1, frames, 4, latent, latent, device=device, dtype=dtype)
    first, per_frame = [], []
    for _ in range(repeats + 1):
        stream = DecodeStream(model.decoder)
        sync(device)
        t0 = time.perf_counter()
        stream.decode(latents[:, :1], chunk_frames=1)
        sync(device)
        t1 = time.perf_counter()
        for i in range(1, frames):
            stream.decode(latents[:, i:i + 1], chunk_frames=1)
        sync(device)
        first.append(t1 - t0)
        per_frame.append((time.perf_counter() - t1) / (frames - 1))
    return {"latent": f"{latent}x{latent}", "time_to_first_frame_s": statistics.median(first[1:]),
            "steady_seconds_per_frame": statistics.median(per_frame[1:])}


def encode_speed(model, device, dtype, px, frames, repeats):
    x = torch.rand(1, frames, 3, px, px, device=device, dtype=dtype)
    s, _ = timed(lambda: encode(model.encoder, x), device, repeats)
    return {"pixels": px, "frames": frames, "seconds_per_frame": s / frames}


def load_sd_vae(device, dtype):
    """An SD-config VAE decoder with random weights: ComfyUI's own class (comfy.sd.VAE) if a ComfyUI
    tree is there (.host/ComfyUI or TAESDV_TEST_COMFYUI), else diffusers' AutoencoderKL if installed.
    Returns (decode(unscaled latents NCHW on any device) -> images, description) or (None, why)."""
    comfy_dir = os.environ.get("TAESDV_TEST_COMFYUI", os.path.join(ROOT, ".host", "ComfyUI"))
    if os.path.isdir(comfy_dir):
        sys.path.insert(0, comfy_dir)
        saved_argv = sys.argv
        sys.argv = [sys.argv[0], "--cpu"] if device.type == "cpu" else [sys.argv[0]]
        try:
            import comfy.options

            comfy.options.enable_args_parsing()
            import comfy.ldm.models.autoencoder
            import comfy.sd
        finally:
            sys.argv = saved_argv
        ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                    "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
        torch.manual_seed(0)
        sd = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=ddconfig, embed_dim=4).state_dict()
        sd = {k: torch.randn_like(v) * 0.02 if v.is_floating_point() else v for k, v in sd.items()}
        vae = comfy.sd.VAE(sd=sd)
        return vae.decode, f"comfy.sd.VAE ({vae.vae_dtype})"
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        return None, "no ComfyUI at .host/ComfyUI (run scripts/setup-host.sh) and no diffusers"
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    vae = vae.to(device=device, dtype=dtype).eval().requires_grad_(False)

    @torch.inference_mode()
    def decode_fn(samples):
        return vae.decode(samples.to(device=device, dtype=dtype)).sample
    return decode_fn, f"diffusers AutoencoderKL ({dtype})"


def sd_vae_ratio(model, device, latent, frames, repeats):
    """ComfyUI's own VAE class (comfy.sd.VAE, SD config, random weights) against TAESDV, per frame."""
    vae_decode, what = load_sd_vae(device, next(model.parameters()).dtype)
    if vae_decode is None:
        return {"skipped": what}
    samples = torch.randn(frames, 4, latent, latent)
    vae_s, _ = timed(lambda: vae_decode(samples), device, max(1, repeats // 2))
    lat = (samples * 0.18215).unsqueeze(0).to(device=device, dtype=next(model.parameters()).dtype)
    tae_s, _ = timed(lambda: decode(model.decoder, lat), device, repeats)
    return {"latent": f"{latent}x{latent}", "frames": frames, "sd_vae_seconds_per_frame": vae_s / frames,
            "taesdv_seconds_per_frame": tae_s / frames, "ratio": vae_s / tae_s, "sd_vae": what}


# -- dtype auto against fp32 (CPU) ----------------------------------------------------------

def precision_rows(device, latent, frames, repeats, threads):
    """TAESDV's auto decode in fp32 and in dtype auto, beside the reference-style fp32 baseline,
    on the same weights and latents, round-robin; PSNR of each against fp32's frames; peak
    memory of each in a fresh process (T = frames)."""
    fast = resolve_dtype("auto", device)
    exact_model = make_model(device, torch.float32)
    fast_model = make_model(device, fast)
    latents = torch.randn(1, frames, 4, latent, latent, device=device)
    modes = {"baseline (reference-style), fp32": lambda: baseline_decode(exact_model.decoder, latents).clamp(0, 1),
             "auto, fp32": lambda: decode(exact_model.decoder, latents),
             f"auto, dtype auto ({str(fast).split('.')[-1]})": lambda: decode(fast_model.decoder, latents)}
    outputs, times = round_robin(modes, device, repeats)
    base_s = statistics.median(times["baseline (reference-style), fp32"])
    exact_s = statistics.median(times["auto, fp32"])
    rows = []
    for name, dtype in zip(modes, ("fp32", "fp32", "auto")):
        seconds = statistics.median(times[name])
        peak = memory_child_run("auto" if name.startswith("auto") else "baseline", frames, latent, str(device), dtype,
                                threads)
        rows.append({"mode": name, "seconds": seconds, "all_seconds": times[name], "latent": f"{latent}x{latent}",
                     "frames": frames, "vs_baseline": base_s / seconds, "vs_fp32_auto": exact_s / seconds,
                     "psnr_vs_fp32": psnr(outputs[name].float().cpu(), outputs["auto, fp32"].float().cpu()),
                     "peak_bytes": peak.get("peak_bytes")})
    return rows


def cli_rows(repeats, frames=60):
    """The whole `taesdv decode` process at --dtype fp32 and auto, alternating, on the real FLUX.2
    tiny decoder: `frames` latent frames of the real clip (../shared/media, repeated) at 256 px.
    Wall and CPU seconds (CPU: the child's user + system time, which other processes on the
    machine move much less), and the PSNR of auto's frames against fp32's."""
    weights = os.path.join(SHARED, "weights")
    clip = os.path.join(SHARED, "media", "taesdv_test_video.gif")
    if not (os.path.exists(os.path.join(weights, "taef2_decoder.pth")) and os.path.exists(clip)):
        return [{"skipped": "needs ../shared/weights/taef2_*.pth and ../shared/media/taesdv_test_video.gif"}]
    from safetensors.torch import load_file, save_file
    from taesdv_core.loading import load_autoencoder
    from taesdv_core.media import read_frames

    frames_in, _ = read_frames(clip)
    frames_in = frames_in.repeat(-(-frames // frames_in.shape[0]), 1, 1, 1)[:frames]
    encoder = load_autoencoder(os.path.join(weights, "taef2_encoder.pth")).encoder
    with tempfile.TemporaryDirectory() as tmp:
        latents_path = os.path.join(tmp, "latents.safetensors")
        save_file({"latents": encode(encoder, frames_in.unsqueeze(0)).contiguous()}, latents_path)
        runs = {"fp32": [], "auto": []}
        for _ in range(repeats):
            for dtype in runs:
                cmd = [sys.executable, "-m", "taesdv_core", "decode", latents_path, "-w",
                       os.path.join(weights, "taef2_decoder.pth"), "-o", os.path.join(tmp, f"{dtype}.safetensors"),
                       "--dtype", dtype, "--device", "cpu"]
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
                wall = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                runs[dtype].append((wall, cpu))
        exact = load_file(os.path.join(tmp, "fp32.safetensors"))["frames"]
        fast = load_file(os.path.join(tmp, "auto.safetensors"))["frames"]
    rows = []
    for dtype, measured in runs.items():
        wall = statistics.median(w for w, _ in measured)
        cpu = statistics.median(c for _, c in measured)
        rows.append({"dtype": dtype if dtype == "fp32" else f"auto ({str(auto_dtype('cpu')).split('.')[-1]})",
                     "frames": frames, "pixels": 256, "wall_seconds": wall, "cpu_seconds": cpu,
                     "all_runs": measured, "psnr_vs_fp32": psnr(fast if dtype == "auto" else exact, exact)})
    for r in rows:
        r["speedup_wall"] = rows[0]["wall_seconds"] / r["wall_seconds"]
        r["speedup_cpu"] = rows[0]["cpu_seconds"] / r["cpu_seconds"]
    return rows


def print_precision(results):
    print(f"\nprecision, {results['config']['cpu']}: dtype auto = {results['config']['auto_dtype']} here")
    print(table(results["precision"], [
        ("latent", lambda r: r["latent"]), ("mode", lambda r: r["mode"]), ("seconds", lambda r: f"{r['seconds']:.3f}"),
        ("vs baseline", lambda r: f"{r['vs_baseline']:.2f}x"), ("vs fp32 auto", lambda r: f"{r['vs_fp32_auto']:.2f}x"),
        ("PSNR vs fp32", lambda r: f"{r['psnr_vs_fp32']:.1f} dB"),
        ("peak MiB", lambda r: f"{r['peak_bytes'] / 2**20:.0f}" if r["peak_bytes"] is not None else "error")]))
    print(f"\nwhole process: taesdv decode, real FLUX.2 tiny decoder, {results['cli'][0].get('frames', 60)} frames "
          "of 256 px (CPU s: the process's user + system time)")
    if "skipped" in results["cli"][0]:
        print("skipped:", results["cli"][0]["skipped"])
        return
    print(table(results["cli"], [
        ("--dtype", lambda r: r["dtype"]), ("wall s", lambda r: f"{r['wall_seconds']:.2f}"),
        ("CPU s", lambda r: f"{r['cpu_seconds']:.2f}"), ("x fp32 (wall)", lambda r: f"{r['speedup_wall']:.2f}x"),
        ("x fp32 (CPU)", lambda r: f"{r['speedup_cpu']:.2f}x"),
        ("PSNR vs fp32", lambda r: f"{r['psnr_vs_fp32']:.1f} dB")]))


# -- the GPU rows ------------------------------------------------------------------------------

def gpu_rows(model, device, dtype, latent=64, frames=64, repeats=3, sd_vae_frames=4):
    """ms/frame and peak memory above the start (CUDA only; None elsewhere) of each way to decode
    one clip of `frames` latent frames of latent x latent, on the same latents, medians of `repeats`
    after a warm-up. The issue's GPU table; on a CPU it runs too (tiny sizes: a smoke test)."""
    latents = torch.randn(1, frames, 4, latent, latent, device=device, dtype=dtype)
    host = torch.device("cpu")

    def stream_frames():
        stream = DecodeStream(model.decoder)
        return [stream.decode(latents[:, i:i + 1], chunk_frames=1) for i in range(frames)]

    ways = {"baseline (official-style parallel, output on GPU)": lambda: baseline_decode(model.decoder, latents),
            "auto, output kept on the GPU": lambda: decode(model.decoder, latents, out_device=device),
            "auto, float32 output on the host (default)": lambda: decode(model.decoder, latents, out_device=host)}
    for c in (8, 16, 32, 64):
        if c <= frames:
            ways[f"chunk {c}, output on the GPU"] = lambda c=c: decode(model.decoder, latents, chunk_frames=c,
                                                                       out_device=device)
    ways["chunk 8, float32 output on the host"] = lambda: decode(model.decoder, latents, chunk_frames=8, out_device=host)
    ways["streaming, 1 frame per call (host output)"] = stream_frames
    vae_decode, vae_what = load_sd_vae(device, dtype)
    rows = []
    for name, fn in ways.items():
        rows.append(_measure(name, fn, device, repeats, frames))
    if vae_decode is not None:
        samples = torch.randn(sd_vae_frames, 4, latent, latent, device=device)
        rows.append(_measure(f"SD VAE per frame: {vae_what}", lambda: vae_decode(samples), device,
                             max(1, repeats // 2), sd_vae_frames))
    else:
        rows.append({"way": "SD VAE per frame", "skipped": vae_what})
    fastest = min(r["ms_per_frame"] for r in rows if "ms_per_frame" in r and not r["way"].startswith("SD VAE"))
    for r in rows:
        if "ms_per_frame" in r:
            r["vs_fastest_taesdv"] = r["ms_per_frame"] / fastest
        r.update(latent=f"{latent}x{latent}", pixels=latent * 8, clip_frames=frames)
    return rows


def _measure(name, fn, device, repeats, frames):
    fn()  # warm-up (cuDNN algorithm choice, allocator)
    sync(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - start)
        del out
    peak = torch.cuda.max_memory_allocated() - before if device.type == "cuda" else None
    return {"way": name, "ms_per_frame": 1000 * statistics.median(times) / frames,
            "all_seconds": times, "peak_bytes": peak}


# -- peak memory, one fresh process per (mode, T) ----------------------------------------------

def memory_child(mode, frames, latent, device, dtype):
    dev = torch.device(device)
    model = tf32_if(make_model(dev, resolve_dtype(dtype, dev)), dtype)
    latents = torch.randn(1, frames, 4, latent, latent, device=dev, dtype=resolve_dtype(dtype, dev))
    decode(model.decoder, latents[:, :2], chunk_frames=2)  # warm the allocator and kernels
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = reset_peak_rss()
    if mode == "baseline":
        out = baseline_decode(model.decoder, latents)
    elif mode == "parallel-batched":
        out = one_batch(lambda: decode(model.decoder, latents, chunk_frames=frames))
    elif mode == "parallel":
        out = decode(model.decoder, latents, chunk_frames=frames)
    elif mode == "auto":
        out = decode(model.decoder, latents)
    elif mode == "streaming":  # frames are consumed as they come (written out, shown), not kept
        stream = DecodeStream(model.decoder)
        for i in range(frames):
            out = stream.decode(latents[:, i:i + 1], chunk_frames=1)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = peak_rss_bytes() - before
    print(json.dumps({"mode": mode, "frames": frames, "peak_bytes": max(0, peak)}))


def memory_sweep(device, dtype, latent, lengths, threads):
    return [memory_child_run(mode, frames, latent, device, dtype, threads)
            for mode in ("baseline", "parallel-batched", "parallel", "auto", "streaming") for frames in lengths]


def memory_child_run(mode, frames, latent, device, dtype, threads):
    """memory_child in a fresh process: {"mode", "frames", "peak_bytes"} or {..., "error"}."""
    cmd = [sys.executable, __file__, "--memory-child", mode, str(frames), str(latent), "--device", device,
           "--dtype", dtype, "--threads", str(threads)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        return {"mode": mode, "frames": frames, "error": result.stderr.strip().splitlines()[-1][:200]}
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- report ----------------------------------------------------------------------------------

def table(rows, columns):
    widths = [max(len(c[0]), *(len(c[1](r)) for r in rows)) for c in columns]
    lines = ["  ".join(c[0].ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c[1](r).ljust(w) for c, w in zip(columns, widths)))
    return "\n".join(lines)


def gpu_table(rows):
    return table(rows, [
        ("way", lambda r: r["way"]),
        ("ms/frame", lambda r: f"{r['ms_per_frame']:.2f}" if "ms_per_frame" in r else r.get("skipped", "")),
        ("vs fastest", lambda r: f"{r['vs_fastest_taesdv']:.2f}x" if "vs_fastest_taesdv" in r else ""),
        ("peak", lambda r: f"{r['peak_bytes'] / 1e9:.2f} GB" if r.get("peak_bytes") is not None else "-")])


def chart(results, path):
    """Bar chart of frames/s per mode and latent size, drawn with Pillow (no plotting dependency)."""
    from PIL import Image, ImageDraw

    rows = results["decode"]
    sizes = sorted({r["latent"] for r in rows}, key=lambda s: int(s.split("x")[0]))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    width, bar_h, gap, left = 900, 16, 6, 280
    height = 60 + len(sizes) * (len(modes) * (bar_h + gap) + 30)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), f"TAESDV decode, frames/s ({results['config']['device']}, {results['config']['dtype']}, "
                        f"{results['config']['threads']} threads, T={rows[0]['frames']})", fill="black")
    y = 40
    for size in sizes:
        sub = [r for r in rows if r["latent"] == size]
        top = max(r["fps"] for r in sub)
        draw.text((10, y), f"latent {size} ({sub[0]['pixels']} px)", fill="black")
        y += 20
        for r in sub:
            length = int((width - left - 80) * r["fps"] / top)
            color = (170, 170, 170) if r["mode"].startswith("baseline") else (60, 110, 200)
            draw.text((10, y + 2), r["mode"], fill="black")
            draw.rectangle([left, y, left + length, y + bar_h], fill=color)
            draw.text((left + length + 6, y + 2), f"{r['fps']:.2f} ({r['vs_baseline']:.2f}x)", fill="black")
            y += bar_h + gap
        y += 10
    image.save(path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes (a smoke run)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=[*DTYPES, "auto"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--only", choices=["precision"], help="precision: only the dtype auto rows (CPU)")
    parser.add_argument("--memory-child", nargs=3, metavar=("MODE", "FRAMES", "LATENT"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        mode, frames, latent = args.memory_child
        return memory_child(mode, int(frames), int(latent), args.device, args.dtype)

    device, dtype = torch.device(args.device), resolve_dtype(args.dtype, torch.device(args.device))
    repeats = 2 if args.quick else 3
    config = {"device": str(device), "dtype": args.dtype, "threads": args.threads, "torch": torch.__version__,
              "cpu": describe_cpu() if device.type == "cpu" else platform.processor() or platform.machine(),
              "auto_dtype": str(auto_dtype(device)).split(".")[-1], "quick": args.quick}
    if device.type == "cuda":
        config["gpu"] = torch.cuda.get_device_name()
    print(f"TAESDV benchmark: {config}")

    results = {"config": config}
    if device.type == "cpu":
        results["precision"] = precision_rows(device, 32, 16, repeats, args.threads)
        results["cli"] = cli_rows(repeats)
        print_precision(results)
    if args.only == "precision":
        write_json(results, args.out, f"precision-{device.type}" + ("-quick" if args.quick else ""))
        return
    model = tf32_if(make_model(device, dtype), args.dtype)
    if device.type == "cuda":
        results["gpu"] = gpu_rows(model, device, dtype, latent=64, frames=16 if args.quick else 64,
                                  repeats=repeats)
        print(f"\nGPU rows: {results['gpu'][0]['pixels']} px, T={results['gpu'][0]['clip_frames']}, "
              f"{args.dtype} (peak: memory above the start, output included where it is on the GPU)")
        print(gpu_table(results["gpu"]))
    latents = (32,) if args.quick else (32, 64)
    results["calibration_gflops"] = {}
    for latent in latents:
        results["calibration_gflops"].update(calibrate(device, dtype, latent * 8, repeats))
    print("\ncalibration (one 3x3 conv, channels_last, best batch of 1/2/4):",
          ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in results["calibration_gflops"].items()))

    decode_rows = []
    for latent in latents:  # the 64x64 baseline takes ~30 s a run on 2 CPU threads
        decode_rows += decode_modes(model, device, dtype, latent, 16, repeats + (2 if latent <= 32 else 0), args.quick)
    for r in decode_rows:  # against the best conv at the same frame size
        ceiling = max(v for k, v in results["calibration_gflops"].items() if k.endswith(f"_{r['pixels']}px"))
        r["fraction_of_ceiling"] = r["gflops"] / ceiling
    results["decode"] = decode_rows
    print("\ndecode, T=16 (max_rel_diff: against the baseline's output)")
    print(table(decode_rows, [
        ("latent", lambda r: r["latent"]), ("mode", lambda r: r["mode"]), ("seconds", lambda r: f"{r['seconds']:.3f}"),
        ("frames/s", lambda r: f"{r['fps']:.2f}"), ("GFLOP/s", lambda r: f"{r['gflops']:.1f}"),
        ("of ceiling", lambda r: f"{100 * r['fraction_of_ceiling']:.0f}%"),
        ("vs baseline", lambda r: f"{r['vs_baseline']:.2f}x"), ("max_rel_diff", lambda r: f"{r['max_rel_diff']:.1e}")]))

    results["streaming"] = [stream_latency(model, device, dtype, latent, 16, repeats) for latent in ((32,) if args.quick else (32, 64))]
    print("\nstreaming, one frame per call")
    print(table(results["streaming"], [
        ("latent", lambda r: r["latent"]), ("first frame (s)", lambda r: f"{r['time_to_first_frame_s']:.3f}"),
        ("per frame (s)", lambda r: f"{r['steady_seconds_per_frame']:.3f}")]))

    results["encode"] = [encode_speed(model, device, dtype, px, 8, repeats) for px in ((256,) if args.quick else (256, 512))]
    print("\nencode")
    print(table(results["encode"], [("pixels", lambda r: str(r["pixels"])), ("s/frame", lambda r: f"{r['seconds_per_frame']:.4f}")]))

    results["sd_vae"] = sd_vae_ratio(model, device, 32, 4 if args.quick else 8, repeats)
    print("\nComfyUI's SD VAE decode vs TAESDV, per frame:", json.dumps(results["sd_vae"]))

    lengths = (8, 32) if args.quick else (8, 16, 32, 64, 128, 256)
    results["memory"] = memory_sweep(args.device, args.dtype, 16, lengths, args.threads)
    print("\npeak memory above the start of decoding, MiB (latent 16x16 = 128 px; streaming consumes frames as they come)")
    modes = list(dict.fromkeys(r["mode"] for r in results["memory"]))
    mem_rows = [{"mode": m, **{str(r["frames"]): (f"{r['peak_bytes'] / 2**20:.0f}" if "peak_bytes" in r else "error")
                               for r in results["memory"] if r["mode"] == m}} for m in modes]
    print(table(mem_rows, [("mode", lambda r: r["mode"])] + [(f"T={t}", lambda r, t=t: r.get(str(t), "")) for t in lengths]))

    tag = f"{device.type}-{args.dtype}" + ("-quick" if args.quick else "")
    write_json(results, args.out, f"results-{tag}")
    chart(results, os.path.join(args.out, f"chart-{tag}.png"))
    print(f"wrote {args.out}/chart-{tag}.png")


def write_json(results, out, name):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {out}/{name}.json")


if __name__ == "__main__":
    main()
