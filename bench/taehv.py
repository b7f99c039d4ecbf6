"""TAEHV benchmark: the pack's engine (auto mode) against the host ComfyUI's own TAEHV (0.33.0 unless TAESDV_TEST_COMFYUI names another).

    .venv/bin/python bench/taehv.py [--quick] [--threads 2]

A Wan-shaped clip: 16 latent channels, 13 latent frames of 30x52 -> 49 frames of 240x416,
random weights of the official taew2_1 layout, CPU. Modes:
- auto:          taesdv_core.engine.decode(decoder, latents) (chunk length chosen by the engine), fp32
- auto-dtype:    the same with the decoder in dtype auto: bf16 on CPUs with native bf16, else fp32
                 (taesdv_core/precision.py; the header names the CPU and what auto is there)
- host-sequential: comfy/taesd/taehv.py TAEHV(parallel=False), what ComfyUI's VAE runs by default
- host-parallel:   the same with parallel=True (all frames at once)
Times are medians of 3 runs taken round-robin (mode A, B, C, A, B, C, ...) after a warm-up, so
another process's load spreads over all modes. "rel err vs host" is each output's largest
difference from host-sequential's, relative to its largest value: the fp32 modes agree within
1e-5; auto-dtype differs by bf16's rounding (about 2e-2 on these random weights).
Peak memory is measured per mode and clip length in a fresh process: VmHWM after writing 5 to
/proc/self/clear_refs, minus the resident size before the decode; "above output" subtracts
the fp32 output frames themselves. The child runs with glibc's mmap threshold fixed at 1 MiB
(LIVE_MEMORY_ENV), so freed blocks do not stay resident and the figure is the live peak.
Writes bench/results/taehv-cpu-fp32.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = os.environ.get("TAESDV_TEST_COMFYUI", os.path.join(ROOT, ".host", "ComfyUI"))  # setup-host.sh links the current host there
for p in (ROOT, os.path.join(ROOT, "tests"), HOST):
    if p not in sys.path:
        sys.path.insert(0 if p != HOST else len(sys.path), p)

from process_memory import peak_rss_bytes, reset_peak_rss  # noqa: E402
from reference_taehv import random_state_dict  # noqa: E402  (random weights, official layout)
from taesdv_core.engine import decode  # noqa: E402
from taesdv_core.precision import auto_dtype, describe_cpu  # noqa: E402
from taesdv_core.taehv import taehv_from_state_dict  # noqa: E402

RESULTS = os.path.join(ROOT, "bench", "results", "taehv-cpu-fp32.json")
MODES = ("auto", "auto-dtype", "host-sequential", "host-parallel")
# glibc returns blocks over 1 MiB to the system when freed. Its default threshold grows with the
# sizes freed (up to 32 MiB), after which freed memory stays resident and is reused: the same
# decode then reads anywhere from 150 to 400 MiB in either mode, depending on what the warm-up
# left. With the threshold fixed, the peak is that of the memory actually live at once.
LIVE_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
# By default glibc returns large freed blocks to the system, and the next allocation faults
# fresh zeroed pages in: both decoders pay for that per frame, the host far more (it allocates
# more). The second timing runs in a process whose allocator keeps what it was given (as
# jemalloc or tcmalloc would), so the table shows how much of the gap that accounts for.
KEEP_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


def host_module():
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # no CUDA here; model_management would ask for it at import
    import comfy.taesd.taehv

    return comfy.taesd.taehv


def make_runners(sd):
    """mode -> function(latents NTCHW) -> frames NTCHW in [0, 1]."""
    _, decoder, _ = taehv_from_state_dict(sd)
    decoder = decoder.eval().requires_grad_(False)
    host = host_module().TAEHV(latent_channels=16, show_progress_bar=False).eval().requires_grad_(False)
    host.load_state_dict(sd)

    def run_host(parallel):
        def run(latents):
            host.parallel = parallel
            with torch.inference_mode():  # ComfyUI's VAE.decode runs under inference mode too
                # [B, C, T, H, W] in and out, as ComfyUI's VAE calls it; its VAE does not clamp here
                return host.decode(latents.movedim(1, 2)).movedim(1, 2).clamp(0, 1)
        return run

    fast_decoder = taehv_from_state_dict(sd)[1].to(auto_dtype("cpu")).eval().requires_grad_(False)
    return {"auto": lambda latents: decode(decoder, latents),
            "auto-dtype": lambda latents: decode(fast_decoder, latents),
            "host-sequential": run_host(False), "host-parallel": run_host(True)}


def timing(sd, t, h, w, repeats):
    runners = make_runners(sd)
    latents = torch.randn(1, t, 16, h, w, generator=torch.Generator().manual_seed(0))
    warm = latents[:, :2]
    for run in runners.values():
        run(warm)
    times = {m: [] for m in MODES}
    cpu = {m: [] for m in MODES}
    outputs = {}
    for _ in range(repeats):
        for mode in MODES:
            start, start_cpu = time.perf_counter(), time.process_time()
            out = runners[mode](latents)
            times[mode].append(time.perf_counter() - start)
            cpu[mode].append(time.process_time() - start_cpu)
            outputs[mode] = out
            del out
    ref = outputs["host-sequential"]
    errors = {m: ((o - ref).abs().max() / ref.abs().max()).item() for m, o in outputs.items()}
    return ({m: statistics.median(v) for m, v in times.items()}, times, errors, tuple(ref.shape),
            {m: statistics.median(v) for m, v in cpu.items()})


def timing_child(t, h, w, repeats):
    sd = random_state_dict("wan2_1", seed=0)
    medians, all_times, errors, _, cpu = timing(sd, t, h, w, repeats)
    print(json.dumps({"median_seconds": medians, "all_seconds": all_times, "median_cpu_seconds": cpu,
                      "rel_err_vs_host_sequential": errors}))


def print_timing(medians, all_times, cpu, errors):
    fastest_host = min(medians["host-sequential"], medians["host-parallel"])
    fastest_host_cpu = min(cpu["host-sequential"], cpu["host-parallel"])
    # CPU seconds (all threads of this process) are reported beside wall time: with other
    # processes on the machine they move much less than wall time does.
    print(f"{'mode':16} {'median s':>9}  {'runs':24} {'x fastest host':>14}  {'median CPU s':>12} {'x (CPU)':>8}  {'rel err vs host':>15}")
    for mode in MODES:
        runs = ", ".join(f"{x:.2f}" for x in all_times[mode])
        print(f"{mode:16} {medians[mode]:9.2f}  {runs:24} {fastest_host / medians[mode]:14.2f}  "
              f"{cpu[mode]:12.2f} {fastest_host_cpu / cpu[mode]:8.2f}  {errors[mode]:15.1e}", flush=True)
    return {mode: (fastest_host / medians[mode], fastest_host_cpu / cpu[mode]) for mode in ("auto", "auto-dtype")}


def memory_child(mode, t, h, w):
    sd = random_state_dict("wan2_1", seed=0)
    run = make_runners(sd)[mode]
    latents = torch.randn(1, t, 16, h, w)
    run(latents[:, :2])  # warm the allocator and kernels
    before = reset_peak_rss()
    start = time.perf_counter()
    out = run(latents)
    seconds = time.perf_counter() - start
    peak = max(0, peak_rss_bytes() - before)
    output = out.numel() * out.element_size()
    print(json.dumps({"mode": mode, "latent_frames": t, "frames": out.shape[1], "peak_bytes": peak,
                      "output_bytes": output, "peak_above_output_bytes": max(0, peak - output), "seconds": seconds}))


def available_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def memory_sweep(lengths, h, w, threads):
    rows = []
    for t in lengths:
        for mode in MODES:
            frames = 4 * t - 3
            # host-parallel holds several full-size 64-channel activations of every frame at once
            estimate = (4 * t) * 64 * (8 * h) * (8 * w) * 4 * 4
            if mode == "host-parallel" and estimate > 0.6 * available_bytes():
                rows.append({"mode": mode, "latent_frames": t, "frames": frames,
                             "skipped": f"estimated {estimate / 2**30:.1f} GiB > 60% of available memory"})
                continue
            cmd = [sys.executable, __file__, "--memory-child", mode, str(t), str(h), str(w), "--threads", str(threads)]
            result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **LIVE_MEMORY_ENV})
            if result.returncode != 0:
                rows.append({"mode": mode, "latent_frames": t, "error": (result.stderr.strip().splitlines() or ["?"])[-1][:200]})
            else:
                rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print("  ", rows[-1], flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller clip (5 latent frames of 16x24) and lengths 3, 5, 9")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-child", nargs=4, metavar=("MODE", "T", "H", "W"), help=argparse.SUPPRESS)
    parser.add_argument("--timing-child", nargs=3, type=int, metavar=("T", "H", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        mode, t, h, w = args.memory_child
        memory_child(mode, int(t), int(h), int(w))
        return
    if args.timing_child:
        timing_child(*args.timing_child, args.repeats)
        return
    t, h, w = (5, 16, 24) if args.quick else (13, 30, 52)
    lengths = (3, 5, 9) if args.quick else (13, 25, 49)
    sd = random_state_dict("wan2_1", seed=0)
    print(f"TAEHV decode, Wan 2.1 layout, {t} latent frames of {h}x{w} -> {4 * t - 3} frames of "
          f"{8 * h}x{8 * w}, {describe_cpu()}, dtype auto = {auto_dtype('cpu')}, torch {torch.__version__}",
          flush=True)
    medians, all_times, errors, shape, cpu = timing(sd, t, h, w, args.repeats)
    speedups = print_timing(medians, all_times, cpu, errors)
    print("the same, in a process whose allocator keeps freed memory (no fresh page faults):", flush=True)
    cmd = [sys.executable, __file__, "--timing-child", str(t), str(h), str(w),
           "--threads", str(args.threads), "--repeats", str(args.repeats)]
    child = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **KEEP_MEMORY_ENV}, check=True)
    keep_memory = json.loads(child.stdout.strip().splitlines()[-1])
    keep_speedups = print_timing(keep_memory["median_seconds"], keep_memory["all_seconds"],
                                   keep_memory["median_cpu_seconds"], keep_memory["rel_err_vs_host_sequential"])
    print("peak memory (fresh process each), MiB: total / above the output", flush=True)
    memory = memory_sweep(lengths, h, w, args.threads)
    print(f"{'mode':16} " + " ".join(f"{'T=' + str(n):>16}" for n in lengths))
    for mode in MODES:
        cells = []
        for n in lengths:
            row = next(r for r in memory if r["mode"] == mode and r["latent_frames"] == n)
            cells.append(f"{row['peak_bytes'] / 2**20:7.0f} / {row['peak_above_output_bytes'] / 2**20:6.0f}"
                         if "peak_bytes" in row else ("skipped" if "skipped" in row else "error"))
        print(f"{mode:16} " + " ".join(f"{c:>16}" for c in cells))
    result = {
        "clip": {"latent": [1, t, 16, h, w], "frames": list(shape)}, "device": "cpu", "cpu": describe_cpu(),
        "dtype": "fp32", "auto_dtype": str(auto_dtype("cpu")),
        "threads": args.threads, "torch": torch.__version__, "repeats": args.repeats, "quick": args.quick,
        "median_seconds": medians, "all_seconds": all_times, "rel_err_vs_host_sequential": errors,
        "speedup_vs_fastest_host": {m: wall for m, (wall, _) in speedups.items()}, "median_cpu_seconds": cpu,
        "cpu_speedup_vs_fastest_host": {m: cpu_s for m, (_, cpu_s) in speedups.items()}, "memory": memory,
        "allocator_keeps_memory": {**keep_memory, "env": KEEP_MEMORY_ENV,
                                   "speedup_vs_fastest_host": {m: wall for m, (wall, _) in keep_speedups.items()}},
    }
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    path = RESULTS.replace(".json", "-quick.json") if args.quick else RESULTS
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
