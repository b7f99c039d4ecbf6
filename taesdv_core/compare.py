"""Side-by-side comparison of decoders on the same latents: speed, peak memory and quality.

    frames, rows = compare([("TAESDV", fn1), ("TAESD", fn2)], latents, reference, "cuda")
    print(format_table(rows))

Each decoder is (label, callable latents -> frames NTCHW RGB in [0, 1]). Quality is measured
against `reference_frames` (e.g. the full VAE's decode) or, when None, against the first
decoder's output. Frames of another size are resized (bilinear, antialiased) to the
reference's size and every clip is truncated to the shortest length; rows say so in `note`.

Peak memory: on CUDA, torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus
the memory allocated before the call (tensors the decoder created and freed included). On
CPU, the process's peak resident set: writing "5" to /proc/self/clear_refs resets VmHWM to
the current RSS (Linux), so VmHWM after the call minus VmRSS before is the peak growth of the
whole process (allocator caches and other threads included: an upper bound, coarse to pages).
Where /proc is unavailable the row has None.
"""
from __future__ import annotations

import ctypes
import json
import os
import time
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import metrics
from .errors import CheckpointError, InputError
from .families import where_to_get

DecodeFn = Callable[[torch.Tensor], torch.Tensor]
LABEL_STRIP = 14  # pixels per line of the label strip above each panel, at the smallest text (10 px)


# --- memory -----------------------------------------------------------------------------------

def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_cpu_peak() -> int | None:
    """Reset VmHWM to the current RSS; return the RSS in bytes (None where unsupported).

    glibc keeps freed memory resident, so a decode after another one would reuse it and show a
    peak of 0: it is handed back first (malloc_trim), so each decoder's peak counts what it needs.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: peaks may then undercount reused memory
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    rss = _proc_status_kb("VmRSS")
    return None if rss is None else rss * 1024


def _measure(fn: DecodeFn, latents: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, float, int | None]:
    """(frames, seconds, peak extra bytes or None)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _reset_cpu_peak()
    start = time.perf_counter()
    with torch.inference_mode():
        frames = fn(latents)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        hwm = _proc_status_kb("VmHWM")
        peak = None if base is None or hwm is None else max(0, hwm * 1024 - base)
    return frames, seconds, peak


# --- frames -----------------------------------------------------------------------------------

def _ntchw(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0) if x.ndim == 4 else x


def _resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    n, t = frames.shape[:2]
    out = F.interpolate(frames.flatten(0, 1).float(), size=size, mode="bilinear", align_corners=False,
                        antialias=True)
    return out.unflatten(0, (n, t))


def _label_font(width: int):
    """PIL's default font, larger on wider panels (10 px up to 240 px wide), so labels stay
    readable where a UI shows the whole side-by-side scaled down."""
    from PIL import ImageFont

    return ImageFont.load_default(size=max(10, width // 24))


def _wrap(text: str, font, width: int) -> list[str]:
    """`text` in lines no wider than `width` pixels: broken at spaces; a longer word goes on
    over as many lines as it needs."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
            continue
        lines.append("")
        for ch in word:
            if lines[-1] and font.getlength(lines[-1] + ch) > width:
                lines.append("")
            lines[-1] += ch
    return lines or [""]


def _label_strip(lines: list[str], font, width: int, height: int) -> torch.Tensor:
    """(3, height, width): the lines in white on black."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((2, 1 + i * (font.size + 4)), line, font=font, fill=(255, 255, 255))
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255


def side_by_side(panels: Sequence[tuple[str, torch.Tensor]]) -> torch.Tensor:
    """Panels (label, frames (N, T, 3, H, W) of one size and length) -> (N, T, 3, S + H, W * k).

    Each label is wrapped to its panel's width; the strip S above every panel holds the longest
    one (LABEL_STRIP pixels per line at 10 px text, more for wide panels)."""
    width = panels[0][1].shape[-1]
    font = _label_font(width)
    labels = [_wrap(label, font, width - 4) for label, _ in panels]
    height = (font.size + 4) * max(map(len, labels))
    columns = []
    for lines, (_, frames) in zip(labels, panels):
        n, t = frames.shape[:2]
        strip = _label_strip(lines, font, width, height).to(frames.device).expand(n, t, 3, height, width)
        columns.append(torch.cat([strip, frames.float().clamp(0, 1)], 3))
    return torch.cat(columns, 4)


# --- the comparison ------------------------------------------------------------------------------

def _finite(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def compare(decoders: Sequence[tuple[str, DecodeFn]], latents: torch.Tensor,
            reference_frames: torch.Tensor | None = None, device: torch.device | str = "cpu"
            ) -> tuple[torch.Tensor, list[dict]]:
    """Decode `latents` with each decoder; return (side-by-side frames, table rows).

    latents: passed to each callable as given (each decoder's own input space).
    reference_frames: NTCHW/TCHW in [0, 1], or None to measure against the first decoder.
    Returns frames (N, T, 3, S + H, W * panels) in [0, 1] on the CPU, S the label strip of
    side_by_side (14 px for one line of 10 px text; reference panel first when given), and
    one JSON-able dict per decoder: label, frames, ms_per_frame,
    peak_memory_mb, psnr (None when identical), ssim, flicker, note.
    """
    if not decoders:
        raise ValueError("give at least one decoder")
    device = torch.device(device)
    outputs, timings = [], []
    for label, fn in decoders:
        frames, seconds, peak = _measure(fn, latents, device)
        frames = _ntchw(frames).detach().float().cpu()
        outputs.append((label, frames))
        timings.append((seconds, peak))
    reference_label = "reference" if reference_frames is not None else decoders[0][0]
    reference = _ntchw(reference_frames).float().cpu() if reference_frames is not None else outputs[0][1]
    size = tuple(reference.shape[-2:])
    length = min([reference.shape[1]] + [f.shape[1] for _, f in outputs])
    reference = reference[:, :length]
    rows, panels = [], ([("reference", reference)] if reference_frames is not None else [])
    for (label, frames), (seconds, peak) in zip(outputs, timings):
        notes = []
        if tuple(frames.shape[-2:]) != size:
            notes.append(f"resized {frames.shape[-1]}x{frames.shape[-2]} -> {size[1]}x{size[0]}")
        if frames.shape[1] != length:
            notes.append(f"truncated {frames.shape[1]} -> {length} frames")
        if frames.shape[0] != reference.shape[0]:
            raise ValueError(f"{label} gave {frames.shape[0]} clips, the reference {reference.shape[0]}")
        total_frames = frames.shape[0] * frames.shape[1]
        frames = _resize(frames, size)[:, :length].clamp(0, 1)
        panels.append((label, frames))
        if reference_frames is None and label == reference_label and not rows:
            notes.append("the reference")
        rows.append({
            "label": label,
            "frames": int(total_frames),
            "ms_per_frame": round(1000 * seconds / max(total_frames, 1), 3),
            "peak_memory_mb": None if peak is None else round(peak / 2 ** 20, 1),
            "psnr": _finite(metrics.psnr(frames, reference)),
            "ssim": round(metrics.ssim(frames, reference), 4),
            "flicker": round(metrics.flicker_index(frames, reference), 5),
            "note": "; ".join(notes),
        })
    return side_by_side(panels), rows


def format_table(rows: Sequence[dict]) -> str:
    """A markdown table of compare()'s rows."""
    head = "| decoder | frames | ms/frame | peak MB | PSNR dB | SSIM | flicker | note |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        def cell(key, fmt):
            v = r.get(key)
            return ("inf" if key == "psnr" else "n/a") if v is None else format(v, fmt)
        lines.append(f"| {r['label']} | {r['frames']} | {cell('ms_per_frame', '.2f')} | {cell('peak_memory_mb', '.1f')} "
                     f"| {cell('psnr', '.2f')} | {cell('ssim', '.4f')} | {cell('flicker', '+.4f')} | {r.get('note', '')} |")
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------------------------

def load_decoder(path: str, device: torch.device, dtype: torch.dtype = torch.float32):
    """The decoder of any tiny-autoencoder file this pack knows, recognised from its tensors."""
    from .loading import load_autoencoder

    name = os.path.basename(path)
    advice = f"give the path of a decoder file (the official {name} comes from {where_to_get(name)})"
    decoder = load_autoencoder(path, dtype, device, missing_advice=advice).decoder
    if decoder is None:
        raise CheckpointError(f"'{name}' holds no decoder")
    return decoder


def decode_fn(decoder, to_input: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> DecodeFn:
    """latents (NTCHW or TCHW; `to_input` maps them to the decoder's input space, identity by
    default) -> frames NTCHW in [0, 1], through the engine."""
    from .engine import decode

    def run(latents: torch.Tensor) -> torch.Tensor:
        return decode(decoder, _ntchw(to_input(latents)))
    return run


def _read_latents(path: str) -> tuple[torch.Tensor, bool]:
    """(latents NTCHW, whether they are the VAE's latents of a Save Latent file) from .latent,
    .safetensors (the decode command's reader), .pt or .npy."""
    if path.endswith((".latent", ".safetensors")):
        from .media import read_latents

        vae_space = False

        def keep_vae_latents(x: torch.Tensor) -> torch.Tensor:  # called only for a Save Latent file's VAE latents
            nonlocal vae_space
            vae_space = True
            return x
        return read_latents(path, keep_vae_latents), vae_space
    return _ntchw(_load_tensor(path).float()), False


def _load_tensor(path: str) -> torch.Tensor:
    if not os.path.isfile(path):
        raise InputError(f"'{path}' does not exist")
    if path.endswith(".npy"):
        return torch.from_numpy(np.load(path))
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        tensors = load_file(path)
        return next(iter(tensors.values()))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        obj = obj.get("samples", next(iter(obj.values())))
    return obj


def add_cli(subparsers) -> None:
    """Add the `compare` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser("compare", help="decode the same latents with several decoders; table + side-by-side")
    p.add_argument("latents", help="a ComfyUI Save Latent .latent file (mapped for each decoder as ComfyUI's VAE "
                                   "Decode maps it), or .safetensors (key 'latents') / .pt / .npy latents, NTCHW or "
                                   "TCHW, in the decoders' input space")
    p.add_argument("--decoder", action="append", required=True, metavar="LABEL=PATH",
                   help="a decoder file of any family (TAESDV, TAEHV, image TAESD, TAE-192, DecoderTinyTemporal), "
                        "recognised by its tensors; repeat for 2 to 4 decoders")
    p.add_argument("--reference", help="reference frames NTCHW in [0, 1] (.pt/.npy); default: the first decoder")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where the decoders run (default: CUDA if available, else CPU)")
    p.add_argument("--out", default="compare-out", help="folder for table.md, rows.json and side-by-side PNGs")
    p.add_argument("--max-png", type=int, default=16, help="side-by-side frames written as PNG (first clip)")
    p.set_defaults(run=run_cli)


def run_cli(args) -> int:
    from .loading import comfy_latent_to_input

    device = torch.device(args.device)
    latents, vae_space = _read_latents(args.latents)
    decoders = []
    for spec in args.decoder:
        label, _, path = spec.rpartition("=")
        label = label or os.path.splitext(os.path.basename(path))[0]
        decoder = load_decoder(path, device)
        # a Save Latent file holds the VAE's latents: each decoder gets them as ComfyUI's VAE Decode maps them
        to_input = (lambda x, d=decoder: comfy_latent_to_input(d, x)) if vae_space else (lambda x: x)
        decoders.append((label, decode_fn(decoder, to_input)))
    reference = _load_tensor(args.reference).float() if args.reference else None
    frames, rows = compare(decoders, latents, reference, device)
    os.makedirs(args.out, exist_ok=True)
    table = format_table(rows)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "rows.json"), "w") as f:
        json.dump(rows, f, indent=1)
    from PIL import Image

    for t in range(min(args.max_png, frames.shape[1])):
        img = (frames[0, t].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(img).save(os.path.join(args.out, f"side_by_side_{t:04d}.png"))
    print(table)
    return 0
