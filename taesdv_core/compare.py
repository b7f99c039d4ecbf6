"""Side-by-side comparison of decoders on the same latents: speed, peak memory and quality.

    frames, rows = compare([("TAESDV", fn1), ("TAESD", fn2)], latents, reference, "cuda")
    print(format_table(rows))

Each decoder is (label, callable latents -> frames NTCHW RGB in [0, 1], or a Clip that gives
them piece by piece). Quality is measured against `reference_frames` (e.g. the full VAE's
decode) or, when None, against the first decoder's output. Frames of another size are resized
(bilinear, antialiased) to the reference's size and every clip is truncated to the shortest
length; rows say so in `note`.

Memory: the side-by-side is allocated once, in ComfyUI's IMAGE layout, and each decoder's
frames are written into its panel as they come: given as a Clip, a decoder's whole output never
exists anywhere else. The metrics then read the panels in place, a band of rows at a time
(metrics.py). So a comparison holds its side-by-side, one piece of frames and about a frame of
metrics work: what it holds above the decoders' outputs is the same share of an output at any
length (2 decoders, 512 px: 16% at 24 and 48 frames, 15% at 96, the label strips 10 of it;
bench/compare_memory.py). The memory freed after each piece and before each metric is handed
back to the system, or glibc would keep a varying, growing part of it resident. `free_bytes`
refuses a side-by-side that cannot fit before anything is decoded.

Peak memory: on CUDA, torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus
the memory allocated before the call (tensors the decoder created and freed included). On
CPU, the process's peak resident set: writing "5" to /proc/self/clear_refs resets VmHWM to
the current RSS (Linux), so VmHWM after the call minus VmRSS before is the peak growth of the
whole process (allocator caches, other threads and the decoder's panel of the side-by-side
included: an upper bound, coarse to pages). Where /proc is unavailable the row has None.
"""
from __future__ import annotations

import ctypes
import json
import os
import time
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import metrics
from .engine import DecodeStream, check_finite, preferred_chunk_frames
from .errors import CheckpointError, InputError
from .families import where_to_get


class Clip(NamedTuple):
    """A decoder's output given piece by piece, so that compare() writes each piece into its panel.

    shape: (N, T, 3, H, W) of the whole output; pieces: its frames in order, (N, t, 3, H, W) each."""
    shape: tuple[int, ...]
    pieces: Iterable[torch.Tensor]


DecodeFn = Callable[[torch.Tensor], "torch.Tensor | Clip"]
LABEL_STRIP = 14  # pixels per line of the label strip above each panel, at the smallest text (10 px)
# A clip is decoded in about this many pieces (at least a latent frame each, at most a chunk of the
# engine's): the piece held beside the side-by-side is then about 1/32 of one output, whatever
# the clip's length. On accelerators short clips thus decode in shorter chunks than the engine's
# preferred ones (a few % slower per frame, alike for every decoder of the table). Each piece's
# memory is handed back after it is written (_release_freed_memory): ~1 ms a piece, and the next
# piece's pages are new (on a CPU, 512 px, 2-frame pieces: ~2.5 ms a frame in all, alike for
# every decoder).
PIECES = 32


def format_bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def memory_available() -> int | None:
    """Memory the system can give this process without swapping (Linux MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


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


def _release_freed_memory() -> None:
    """Hand the memory freed in the heap back to the system (glibc's malloc_trim; elsewhere nothing).

    Once a large tensor is freed, glibc serves tensors up to its size from the heap instead of
    mapping them, and keeps what they free resident; new ones then land partly on those pages,
    partly on fresh ones. Over a clip's pieces that kept up to 18 MiB more resident for 96 frames
    of 512 px, varying from run to run (bench/compare_memory.py). About 1 ms a call."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _reset_cpu_peak() -> int | None:
    """Reset VmHWM to the current RSS; return the RSS in bytes (None where unsupported).

    Freed memory that stays resident would let a decode after another one reuse it and show a
    peak of 0: it is handed back first, so each decoder's peak counts what it needs (not on other
    allocators than glibc's: peaks may then undercount reused memory).
    """
    _release_freed_memory()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    rss = _proc_status_kb("VmRSS")
    return None if rss is None else rss * 1024


def _measure(run: Callable[[], object], device: torch.device) -> tuple[object, float, int | None]:
    """(what run() returns, seconds, peak extra bytes or None)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _reset_cpu_peak()
    start = time.perf_counter()
    with torch.inference_mode():
        result = run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        hwm = _proc_status_kb("VmHWM")
        peak = None if base is None or hwm is None else max(0, hwm * 1024 - base)
    return result, seconds, peak


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


class _Board:
    """The side-by-side (N, T, S + H, W * panels, 3), in ComfyUI's IMAGE layout: each panel's label
    strip (S px, see side_by_side) on top, its frames written into it as they come."""

    def __init__(self, labels: Sequence[str], n: int, t: int, size: tuple[int, int], free_bytes: int | None = None):
        h, w = size
        font = _label_font(w)
        lines = [_wrap(label, font, w - 4) for label in labels]
        self.strip = (font.size + 4) * max(map(len, lines))
        self.size, self.length = size, t
        shape = (n, t, self.strip + h, w * len(labels), 3)
        need = 4 * n * t * (self.strip + h) * w * len(labels) * 3
        if free_bytes is not None and need > free_bytes:
            frames = f"{t}" if n == 1 else f"{n}x{t}"
            raise InputError(f"the side-by-side of {len(labels)} panels of {frames} frames of {w}x{h} (and their "
                             f"labels) needs {format_bytes(need)}, but {format_bytes(free_bytes)} is free; compare "
                             "fewer frames or smaller sizes")
        self.frames = torch.empty(shape)
        for i, label_lines in enumerate(lines):
            self.frames[:, :, :self.strip, i * w:(i + 1) * w] = _label_strip(label_lines, font, w, self.strip).permute(1, 2, 0)

    def panel(self, index: int, length: int | None = None) -> torch.Tensor:
        """Panel `index`'s first `length` frames (all: None), NTCHW, a view."""
        w = self.size[1]
        return self.frames[:, :length, self.strip:, index * w:(index + 1) * w].permute(0, 1, 4, 2, 3)

    def write(self, index: int, clip: Clip) -> tuple[int, int]:
        """Write the clip's pieces into panel `index`, resized to the panel's size and clamped to
        [0, 1]; frames past the board's length are dropped. Returns (frames the clip gave, NaN or
        infinite values among them)."""
        panel = self.panel(index)
        given = nonfinite = 0
        for piece in clip.pieces:
            piece = _ntchw(piece)
            nonfinite += self._write_piece(panel, given, piece)
            given += piece.shape[1]
            del piece  # not held while the next piece decodes
            _release_freed_memory()
        return given, nonfinite

    def _write_piece(self, panel: torch.Tensor, first: int, piece: torch.Tensor) -> int:
        """Write piece (N, t, 3, h, w) into the panel from frame `first` on, a frame at a time, so
        that a whole clip given as one piece (a reference) needs one frame's temporaries, not the
        clip's. Returns the piece's NaN or infinite values."""
        nonfinite = 0
        for j in range(piece.shape[1]):
            frame = piece[:, j:j + 1]
            nonfinite += _nonfinite_values(frame)
            if first + j < self.length:
                panel[:, first + j:first + j + 1].copy_(_resize(frame, self.size)).clamp_(0, 1)
        return nonfinite


def _nonfinite_values(x: torch.Tensor) -> int:
    """How many values of x are NaN or infinite. A finite sum shows there are none without a mask
    of x's size; otherwise (or when the sum overflows) they are counted."""
    if bool(torch.isfinite(x.sum())):
        return 0
    return x.numel() - int(torch.isfinite(x).sum())


def side_by_side(panels: Sequence[tuple[str, torch.Tensor]]) -> torch.Tensor:
    """Panels (label, frames (N, T, 3, H, W) of one size and length) -> (N, T, 3, S + H, W * k).

    Each label is wrapped to its panel's width; the strip S above every panel holds the longest
    one (LABEL_STRIP pixels per line at 10 px text, more for wide panels)."""
    n, t, _, h, w = panels[0][1].shape
    board = _Board([label for label, _ in panels], n, t, (h, w))
    for i, (_, frames) in enumerate(panels):
        board.write(i, Clip(tuple(frames.shape), [frames]))
    return board.frames.permute(0, 1, 4, 2, 3)


# --- the comparison ------------------------------------------------------------------------------

def _finite(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def _quality(metric: Callable[[torch.Tensor, torch.Tensor], float], panel: torch.Tensor,
             reference_panel: torch.Tensor) -> float:
    """metric(panel, reference_panel), after handing back the memory freed before it: each metric
    allocates its work buffers anew, and they would otherwise land beside the resident pages that
    the decodes and the metrics before it freed, adding up to a few MiB."""
    _release_freed_memory()
    return metric(panel, reference_panel)


def _as_clip(frames: torch.Tensor | Clip) -> Clip:
    return frames if isinstance(frames, Clip) else Clip(tuple(_ntchw(frames).shape), [frames])


def _checked_reference(frames: torch.Tensor) -> torch.Tensor:
    if not isinstance(frames, torch.Tensor) or frames.ndim not in (4, 5) or not frames.is_floating_point():
        what = f"shape {tuple(frames.shape)} {frames.dtype}" if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise InputError(f"the reference must be frames NTCHW or TCHW in [0, 1] (floating point), got {what}")
    frames = _ntchw(frames)
    if frames.shape[2] != 3:
        raise InputError(f"the reference has {frames.shape[2]} channels at dim 2 of {tuple(frames.shape)}; "
                         "give RGB frames, 3 channels (NTCHW or TCHW)")
    if 0 in frames.shape:
        raise InputError(f"the reference is empty {tuple(frames.shape)}")
    check_finite(frames, "the reference frames")
    return frames


def stream_in_pieces(decoder, latents: torch.Tensor, decode_piece: Callable[[torch.Tensor, DecodeStream], torch.Tensor],
                     device: torch.device) -> Clip:
    """latents (N, T, C, h, w) through `decoder` as one stream, a few latent frames at a time:
    decode_piece(latents of the piece, the stream) -> its frames NTCHW. About PIECES pieces (whole
    windows for windowed decoders), at most the device's preferred chunk each."""
    stream = DecodeStream(decoder)
    n, t, _, h, w = latents.shape
    multiple = decoder.chunk_multiple
    step = min(-(-t // PIECES), preferred_chunk_frames(device))
    step = -(-step // multiple) * multiple
    scale = decoder.spatial_scale
    pieces = (decode_piece(latents[:, s:s + step], stream) for s in range(0, t, step))
    return Clip((n, stream.output_frames(t), 3, h * scale, w * scale), pieces)


def compare(decoders: Sequence[tuple[str, DecodeFn]], latents: torch.Tensor,
            reference_frames: torch.Tensor | None = None, device: torch.device | str = "cpu",
            free_bytes: int | None = None) -> tuple[torch.Tensor, list[dict]]:
    """Decode `latents` with each decoder; return (side-by-side frames, table rows).

    latents: passed to each callable as given (each decoder's own input space).
    reference_frames: NTCHW/TCHW in [0, 1], or None to measure against the first decoder.
    free_bytes: memory free where the side-by-side goes (host memory); a side-by-side larger
    than that is refused (InputError) before anything is decoded.
    Returns frames (N, T, 3, S + H, W * panels) in [0, 1] on the CPU, S the label strip of
    side_by_side (14 px for one line of 10 px text; reference panel first when given), a view
    of frames laid out (N, T, S + H, W * panels, 3) as ComfyUI's IMAGE; and one JSON-able dict
    per decoder: label, frames, ms_per_frame, peak_memory_mb, psnr (None when identical), ssim,
    flicker (those three None where NaN or infinite values leave nothing to measure), note.
    """
    if not decoders:
        raise ValueError("give at least one decoder")
    device = torch.device(device)
    reference = None if reference_frames is None else _checked_reference(reference_frames)
    labels = (["reference"] if reference is not None else []) + [label for label, _ in decoders]
    first_panel = len(labels) - len(decoders)
    board = None
    decoded = []  # (label, output shape, frames given, NaN/inf values, seconds, peak) per decoder
    for index, (label, fn) in enumerate(decoders, start=first_panel):
        def decode_into_panel(fn=fn, index=index, label=label):
            nonlocal board
            clip = _as_clip(fn(latents))
            if board is None:  # the reference's size and length, or the first decoder's
                n, t, _, h, w = clip.shape if reference is None else reference.shape
                board = _Board(labels, n, t, (h, w), free_bytes)
                if reference is not None:
                    board.write(0, Clip(tuple(reference.shape), [reference]))
            if clip.shape[0] != board.frames.shape[0]:
                raise InputError(f"{label} gives {clip.shape[0]} clip(s), the reference has {board.frames.shape[0]} "
                                 "clips; give one reference clip per decoded clip")
            return clip.shape, *board.write(index, clip)
        (shape, given, nonfinite), seconds, peak = _measure(decode_into_panel, device)
        decoded.append((label, shape, given, nonfinite, seconds, peak))
    length = min([board.length] + [given for _, _, given, *_ in decoded])
    reference_panel = board.panel(0, length)
    reference_broken = reference is None and decoded[0][3] > 0
    rows = []
    for index, (label, shape, given, nonfinite, seconds, peak) in enumerate(decoded, start=first_panel):
        notes = []
        if tuple(shape[-2:]) != board.size:
            notes.append(f"resized {shape[-1]}x{shape[-2]} -> {board.size[1]}x{board.size[0]}")
        if given != length:
            notes.append(f"truncated {given} -> {length} frames")
        if reference is not None and reference.shape[1] != length:
            notes.append(f"reference truncated {reference.shape[1]} -> {length} frames")
        if reference is None and index == first_panel:
            notes.append("the reference")
        if nonfinite:
            notes.append(f"{nonfinite} NaN or infinite values: not measured")
        elif reference_broken:
            notes.append(f"the reference ({decoded[0][0]}) has NaN or infinite values: not measured")
        measurable = not nonfinite and not reference_broken
        panel = board.panel(index, length)
        total_frames = shape[0] * given
        rows.append({
            "label": label,
            "frames": int(total_frames),
            "ms_per_frame": round(1000 * seconds / max(total_frames, 1), 3),
            "peak_memory_mb": None if peak is None else round(peak / 2 ** 20, 1),
            "psnr": _finite(_quality(metrics.psnr, panel, reference_panel)) if measurable else None,
            "ssim": round(_quality(metrics.ssim, panel, reference_panel), 4) if measurable else None,
            "flicker": round(_quality(metrics.flicker_index, panel, reference_panel), 5) if measurable else None,
            "note": "; ".join(notes),
        })
    return board.frames[:, :length].permute(0, 1, 4, 2, 3), rows


def format_table(rows: Sequence[dict]) -> str:
    """A markdown table of compare()'s rows: PSNR "inf" for identical clips (psnr None, SSIM
    measured), "n/a" for anything not measured."""
    head = "| decoder | frames | ms/frame | peak MB | PSNR dB | SSIM | flicker | note |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        def cell(key, fmt):
            v = r.get(key)
            if v is None:
                return "inf" if key == "psnr" and r.get("ssim") is not None else "n/a"
            return format(v, fmt)
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
    default) -> a Clip of frames NTCHW in [0, 1], decoded through the engine piece by piece."""
    def run(latents: torch.Tensor) -> Clip:
        return stream_in_pieces(decoder, _ntchw(to_input(latents)), lambda piece, stream: stream.decode(piece),
                                next(decoder.parameters()).device)
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
    return _ntchw(_load_tensor(path, "LATENTS").float()), False


def _load_tensor(path: str, name: str) -> torch.Tensor:
    """The tensor of a .npy, .safetensors or .pt file (a dict's 'samples' or first value); `name`
    says which argument gave the path."""
    if not os.path.isfile(path):
        raise InputError(f"{name} '{path}' does not exist")
    try:
        if path.endswith(".npy"):
            obj = torch.from_numpy(np.load(path))
        elif path.endswith(".safetensors"):
            from safetensors.torch import load_file

            obj = next(iter(load_file(path).values()), None)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                obj = obj.get("samples", next(iter(obj.values()), None))
    except Exception as e:  # numpy, safetensors and torch each raise their own errors for a bad file
        raise InputError(f"{name} '{path}' is not a readable tensor file (.npy of numbers, .safetensors or .pt): "
                         f"{type(e).__name__}: {e}") from None
    if not isinstance(obj, torch.Tensor):
        raise InputError(f"{name} '{path}' holds no tensor (found {type(obj).__name__})")
    return obj


def add_cli(subparsers) -> None:
    """Add the `compare` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser("compare", help="decode the same latents with several decoders; table + side-by-side")
    p.add_argument("latents", help="a ComfyUI Save Latent .latent file (mapped for each decoder as ComfyUI's VAE "
                                   "Decode maps it), or .safetensors (key 'latents') / .pt / .npy latents, NTCHW or "
                                   "TCHW, in the decoders' input space (taef2 takes FLUX.2's folded 128 channels too)")
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
    from .loading import comfy_latent_to_input, raw_latents_to_input

    device = torch.device(args.device)
    latents, vae_space = _read_latents(args.latents)
    check_finite(latents, "latents")
    decoders = []
    for spec in args.decoder:
        label, _, path = spec.rpartition("=")
        label = label or os.path.splitext(os.path.basename(path))[0]
        decoder = load_decoder(path, device)
        # a Save Latent file holds the VAE's latents: each decoder gets them as ComfyUI's VAE Decode maps them
        to_input = ((lambda x, d=decoder: comfy_latent_to_input(d, x, channel_dim=2)) if vae_space
                    else (lambda x, d=decoder: raw_latents_to_input(d, x)))
        decoders.append((label, decode_fn(decoder, to_input)))
    reference = _load_tensor(args.reference, "--reference").float() if args.reference else None
    frames, rows = compare(decoders, latents, reference, device, free_bytes=memory_available())
    os.makedirs(args.out, exist_ok=True)
    table = format_table(rows)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "rows.json"), "w") as f:
        json.dump(rows, f, indent=1)
    from PIL import Image

    for t in range(min(args.max_png, frames.shape[1])):
        img = (frames[0, t].permute(1, 2, 0).nan_to_num().numpy() * 255).round().astype(np.uint8)
        Image.fromarray(img).save(os.path.join(args.out, f"side_by_side_{t:04d}.png"))
    print(table)
    return 0
