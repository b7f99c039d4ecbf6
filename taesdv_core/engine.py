"""The one decode engine: whole clips, chunks, streams and previews of every family run here.

A clip is decoded in chunks of consecutive latent frames. Each chunk runs the decoder's
layers for all of its frames (frame by frame on CPUs, as one batch elsewhere: fused_ops) and
hands each MemBlock's memory of its last frame to the next chunk, so any chunking (1 frame,
7 frames, the whole clip) gives the same frames as one parallel pass. `DecodeStream` keeps
that memory between calls for clips that arrive piece by piece; a piece is all or nothing.

The decoder is any `layers.ChunkDecoder`: it says its latent channels, spatial scale, time
scale (frames per latent frame) and how many frames to drop at a clip's start.

Layouts: latents NTCHW in the decoder's own input space; frames NTCHW (or NTHWC, ComfyUI's
IMAGE order) RGB in [0, 1].

Frames leave the device through `FrameSink` (below): laid out on the device in the working
dtype, copied to page-locked host memory on a side stream while the next chunk computes, then
converted once into the output. Decoding runs inside `fp32_precision`: fp32 weights compute in
true fp32 unless the model allows TF32 (`allow_tf32`, the `tf32` dtype choice).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch

from .errors import InputError
from .families import which_file_fits
from .fused_ops import runs_frame_by_frame
from .layers import ChunkDecoder, ChunkEncoder

# Called after each chunk with (latent frames done, total); may raise to stop the work
# (ComfyUI's interrupt exception does exactly that).
ProgressFn = Callable[[int, int], None]
LAYOUTS = ("NTCHW", "NTHWC")


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors and for a failed CPU allocation."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text.lower() or "can't allocate memory" in text)


def as_ntchw(tensor: torch.Tensor, name: str, channels: int, model: str = "this model") -> torch.Tensor:
    """Accept NTCHW or TCHW (one clip); check type, channels and sizes."""
    if not isinstance(tensor, torch.Tensor):
        raise InputError(f"{name} must be a tensor, got {type(tensor).__name__}")
    if tensor.ndim == 4:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 5:
        raise InputError(f"{name} must be NTCHW or TCHW, got {tensor.ndim} dimensions {tuple(tensor.shape)}")
    if tensor.shape[2] != channels:
        hint = f" {which_file_fits(tensor.shape[2])}" if name == "latents" else ""
        raise InputError(f"{name} have {tensor.shape[2]} channels at dim 2 of {tuple(tensor.shape)}; "
                         f"{model} expects {channels}.{hint}")
    if tensor.shape[1] == 0:
        raise InputError(f"{name} have 0 frames {tuple(tensor.shape)}; give at least one frame")
    if tensor.shape[-1] == 0 or tensor.shape[-2] == 0 or tensor.shape[0] == 0:
        raise InputError(f"{name} are empty {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise InputError(f"{name} must be floating point, got {tensor.dtype}")
    return tensor


def check_finite(tensor: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise InputError(f"{name} contain {bad} NaN or infinite values; the sampler or an upstream node produced "
                         "invalid numbers (check CFG, the model and fp16 overflow)")


def working_bytes_per_latent_frame(decoder: ChunkDecoder, h: int, w: int, element_size: int) -> int:
    """Peak working memory of one latent frame of a chunk (all the frames it becomes)."""
    return decoder.working_bytes_per_frame(h * decoder.spatial_scale, w * decoder.spatial_scale,
                                           element_size) * decoder.time_scale


# Latent frames per chunk on accelerators (see preferred_chunk_frames).
ACCELERATOR_CHUNK_FRAMES = 16


def preferred_chunk_frames(device: torch.device) -> int:
    """Latent frames per chunk for this kind of device when memory is no limit.

    On CPUs chunks run frame by frame anyway (fused_ops), so the length only sets how often
    progress is reported and an interrupt is noticed: 8.

    On accelerators a chunk runs as one batch: longer chunks run a little faster per frame but
    need memory in proportion. Measured on an H100 (fp16, 512x512 frames, T=64, random weights of
    the official layout, output kept on the GPU):

        chunk  ms/frame  vs fastest  peak memory
        8      1.68      +6%         2.1 GB
        64     1.58      (fastest)   12.4 GB
        (official taesdv.py, whole clip as one batch: 1.75 ms/frame, 16.4 GB)

    The rule: the smallest length within a few percent of the fastest, capped by free memory
    (auto_chunk_frames). 8 misses by 6%; 64 costs 6x the memory of 8 for that 6%. 16 is chosen:
    twice 8's batch recovers most of its gap (per-chunk overheads halve), at about a third of 64's
    memory (~4 GB at 512 px by the peak's proportion to the chunk). Shorter chunks also leave
    less un-overlapped work at a clip's ends (FrameSink overlaps each chunk's copy to the host
    with the next chunk's compute). Chunks of 16 and 32 are not in the table:
    `bench/run.py --device cuda --dtype fp16` prints their rows.
    """
    return 8 if runs_frame_by_frame(device) else ACCELERATOR_CHUNK_FRAMES


def auto_chunk_frames(decoder: ChunkDecoder, n_frames: int, h: int, w: int, element_size: int,
                      device: torch.device, free_bytes: int | None, clips: int = 1) -> int:
    """Latent frames per chunk: the device's preferred length, capped so a chunk uses <= half the
    free memory (on CPUs a chunk holds one frame's work at a time)."""
    chunk = min(n_frames, preferred_chunk_frames(device))
    if free_bytes is not None and not runs_frame_by_frame(device):
        per_frame = working_bytes_per_latent_frame(decoder, h, w, element_size) * clips
        chunk = min(chunk, max(1, (free_bytes // 2) // max(per_frame, 1)))
    return max(1, int(chunk))


def run_in_chunks(total: int, chunk: int, work: Callable[[int, int], None], device: torch.device,
                  progress: ProgressFn | None = None, multiple: int = 1) -> None:
    """Call work(start, length) over [0, total) in chunks of `chunk` (a multiple of `multiple`).

    An out-of-memory error in a chunk retries it at half the length (work may have written output
    that the retry writes again identically, but must not commit state before it returns); one at
    the smallest length is raised.
    """
    chunk = max(multiple, chunk // multiple * multiple)
    done = 0
    while done < total:
        length = min(chunk, total - done)
        try:
            work(done, length)
        except Exception as e:
            if not is_out_of_memory(e) or length <= multiple:
                raise
            chunk = max(multiple, length // 2 // multiple * multiple)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        done += length
        if progress is not None:
            progress(done, total)


def allow_tf32(model: torch.nn.Module, allowed: bool) -> torch.nn.Module:
    """Let fp32 convolutions of `model` (and of its encoder/decoder) use TF32 on CUDA, or not."""
    for module in (model, getattr(model, "encoder", None), getattr(model, "decoder", None)):
        if module is not None:
            module.allow_tf32 = bool(allowed)
    return model


@contextmanager
def fp32_precision(module: torch.nn.Module):
    """Run fp32 convolutions and matmuls in true fp32, unless `module.allow_tf32` is set.

    PyTorch lets cuDNN use TF32 for fp32 convolutions by default: on an H100 an fp32 TAESDV decode
    then differs from float64 by 1.4e-3 (relative, max) instead of 1.9e-6. The flags are
    process-wide; they are set for the work and restored after (work runs on one thread).
    fp16/bf16 weights are unaffected. A no-op in effect on CPUs.
    """
    allow = bool(getattr(module, "allow_tf32", False))
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch >= 2.9: the precision API
        matmul = torch.backends.cuda.matmul
        saved = (conv.fp32_precision, matmul.fp32_precision)
        conv.fp32_precision = matmul.fp32_precision = "tf32" if allow else "ieee"
        try:
            yield
        finally:
            conv.fp32_precision, matmul.fp32_precision = saved
    else:  # older torch: the allow_tf32 flags
        saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allow
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class PinnedCopies:
    """CUDA -> host copies that do not stall the device: each chunk is copied into page-locked
    memory (PyTorch's caching host allocator) on a side stream that first waits for the chunk's
    compute; an event marks its arrival. The compute stream goes on with the next chunk meanwhile.
    """

    def __init__(self, device: torch.device):
        self.stream = torch.cuda.Stream(device)

    def start(self, laid: torch.Tensor):
        """Begin copying `laid` (on the device) to the host; returns (host tensor, event)."""
        host = torch.empty(laid.shape, dtype=laid.dtype, pin_memory=True)
        self.stream.wait_stream(torch.cuda.current_stream(laid.device))
        with torch.cuda.stream(self.stream):
            host.copy_(laid, non_blocking=True)
            arrived = torch.cuda.Event()
            arrived.record(self.stream)
        return host, arrived


def host_transfer(device: torch.device, out_device: torch.device):
    """How frames computed on `device` reach an output on `out_device`: PinnedCopies from CUDA to
    the CPU, else None (the output is written directly: CPU to CPU, or kept on the GPU)."""
    if device.type == "cuda" and out_device.type == "cpu":
        return PinnedCopies(device)
    return None


class FrameSink:
    """Writes each chunk's frames into the output, so that frames leave the device without
    stalling it.

    put(first, frames): clamp (in place) and lay out (NTHWC is a permuted view; free for the
    decoders' channels_last output) on the device, in the working dtype. Without a transfer (the
    output on the same device, e.g. CPU, or GPU output) the frames are written into the output at
    once: layout and dtype conversion in one pass. With one (CUDA -> host), the chunk is made
    contiguous on the device, its copy to pinned memory is started, and only then is the chunk
    before it finished: wait for its copy, convert it once into the float32 output. So the copy
    of chunk k runs during the compute of chunk k+1, and the host's conversion of chunk k while
    the device works on chunk k+1 (which the host queued first). flush() finishes the last chunk;
    close() waits for copies still in flight (after an error) and drops them.

    Why a half-precision staging copy rather than a pinned float32 output converted on the
    device: per output value (fp16 working dtype) the staging way moves 2 bytes over PCIe and
    holds 2 chunks of pinned memory whatever the clip's length; the host then reads 2 and
    writes 4 bytes, the one write of the output every way needs. A pinned float32 output moves
    4 bytes over PCIe and saves the host's read, but page-locks the whole output (an extra
    pass over every page at allocation, power-of-two rounding in PyTorch's host allocator, up
    to 2x), and ComfyUI would then keep page-locked IMAGE memory that cannot be swapped.
    """

    def __init__(self, out: torch.Tensor, layout: str, clamp: bool, transfer=None):
        self.out, self.layout, self.clamp, self.transfer = out, layout, clamp, transfer
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor, object]] = []  # first, laid, host, event

    def put(self, first: int, frames: torch.Tensor) -> None:
        if self.clamp:
            frames = frames.clamp_(0, 1)
        laid = _place(frames, self.layout)
        if self.transfer is None:
            self.out[:, first:first + laid.shape[1]].copy_(laid)
            return
        laid = laid.contiguous()
        host, arrived = self.transfer.start(laid)
        self.pending.append((first, laid, host, arrived))  # laid stays referenced until its copy is done
        while len(self.pending) > 1:
            self._finish(self.pending.pop(0))

    def flush(self) -> None:
        while self.pending:
            self._finish(self.pending.pop(0))

    def close(self) -> None:
        while self.pending:
            self.pending.pop(0)[3].synchronize()

    def _finish(self, item) -> None:
        first, _laid, host, arrived = item
        arrived.synchronize()
        self.out[:, first:first + host.shape[1]].copy_(host)


def _place(frames: torch.Tensor, layout: str) -> torch.Tensor:
    return frames.permute(0, 1, 3, 4, 2) if layout == "NTHWC" else frames


def _shape_in(layout: str, n: int, t: int, height: int, width: int) -> tuple[int, ...]:
    return (n, t, height, width, 3) if layout == "NTHWC" else (n, t, 3, height, width)


@dataclass
class DecodeStream:
    """A clip decoded piece by piece: the decoder's memory of the last frame so far.

    Feed consecutive pieces (N, T, C, h, w) of the same N clips with `decode`; the frames equal
    a one-pass decode of the concatenated pieces. Memory stays constant for any length. A
    piece is all or nothing: if it fails or is interrupted, the stream is as it was before.
    """

    decoder: ChunkDecoder
    memory: list[torch.Tensor] | None = None
    latent_frames: int = 0
    frames_decoded: int = 0
    latent_shape: tuple[int, int, int, int] | None = field(default=None)  # N, C, h, w of the stream

    def reset(self) -> None:
        self.memory, self.latent_frames, self.frames_decoded, self.latent_shape = None, 0, 0, None

    def state_bytes(self) -> int:
        return sum(m.numel() * m.element_size() for m in self.memory) if self.memory else 0

    def output_frames(self, latent_frames: int) -> int:
        """Frames the next piece of `latent_frames` gives (a clip's start drops the decoder's start_trim)."""
        trim = self.decoder.start_trim(latent_frames) if self.latent_frames == 0 else 0
        return latent_frames * self.decoder.time_scale - trim

    def decode(self, latents: torch.Tensor, chunk_frames: int | None = None, progress: ProgressFn | None = None,
               out_device: torch.device | str = "cpu", out_dtype: torch.dtype = torch.float32,
               clamp: bool = True, free_bytes: int | None = None, layout: str = "NTCHW") -> torch.Tensor:
        """Decode the next piece of the stream.

        latents: (N, T, C, h, w) or (T, C, h, w), continuing the previous piece.
        chunk_frames: latent frames per chunk; None chooses from the device and `free_bytes`.
        progress: called after each chunk with (done, total) latent frames of this piece.
        layout: "NTCHW", or "NTHWC" (laid out on the device, as ComfyUI's IMAGE wants it).
        Returns frames (N, T', 3, H, W) or (N, T', H, W, 3) on out_device, clamped to [0, 1]
        unless clamp=False; T' = output_frames(T). On an out-of-memory error the chunk is
        retried at half the length (output unchanged).
        """
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}")
        decoder = self.decoder
        squeeze = latents.ndim == 4
        latents = as_ntchw(latents, "latents", decoder.latent_channels, decoder.family)
        n, t, c, h, w = latents.shape
        if self.latent_shape is not None and self.latent_shape != (n, c, h, w):
            raise InputError(
                f"latents of shape {(n, c, h, w)} (N, C, h, w) do not continue this stream, which has "
                f"{self.latent_shape}; reset the stream to start a new clip"
            )
        param = next(decoder.parameters())
        device, dtype = param.device, param.dtype
        memory = self.memory
        if memory and (memory[0].device != device or memory[0].dtype != dtype):  # memoryless decoders keep []
            # ComfyUI may have moved the model between queue runs: the state follows it
            memory = [m.to(device=device, dtype=dtype) for m in memory]
        if chunk_frames is None:
            chunk_frames = auto_chunk_frames(decoder, t, h, w, param.element_size(), device, free_bytes, clips=n)
        scale, trim = decoder.spatial_scale, self.output_frames(t) - t * decoder.time_scale
        n_out = t * decoder.time_scale + trim
        out = torch.empty(_shape_in(layout, n, n_out, h * scale, w * scale), device=out_device, dtype=out_dtype)
        sink = FrameSink(out, layout, clamp, host_transfer(device, out.device))
        state = {"memory": memory}

        def work(start: int, length: int) -> None:
            first = start * decoder.time_scale + trim  # trim < 0 drops the clip's first frames
            memory = state["memory"]
            for frames, memory in self._steps(latents[:, start:start + length].to(device, dtype), memory):
                kept = frames[:, max(0, -first):]
                if kept.shape[1]:
                    sink.put(max(0, first), kept)
                first += frames.shape[1]
                del frames, kept  # not held while the next step runs
            state["memory"] = memory

        with torch.inference_mode(), fp32_precision(decoder):
            try:
                multiple = decoder.chunk_multiple  # windowed decoders: whole windows only
                chunk = max(1, int(chunk_frames))
                run_in_chunks(t, -(-chunk // multiple) * multiple, work, device, progress, multiple=multiple)
                sink.flush()
            finally:
                sink.close()
        # The whole piece succeeded: commit it
        self.memory = state["memory"]
        self.latent_shape = (n, c, h, w)
        self.frames_decoded += n_out
        self.latent_frames += t
        return out[0] if squeeze else out

    def _steps(self, latents: torch.Tensor, memory):
        """Decode one chunk from `memory`, yielding (frames, memory after them) as they come: the
        whole chunk at once, or one latent frame at a time where that is faster (CPUs), so that
        a step's frames go to the output before the next step needs the memory they held."""
        forward = self.decoder.forward_chunk
        windowed = self.decoder.chunk_multiple > 1  # frames of a window see each other
        if windowed or not runs_frame_by_frame(latents.device) or latents.shape[1] == 1:
            yield forward(latents, memory)
            return
        for i in range(latents.shape[1]):
            step = forward(latents[:, i:i + 1], memory)
            memory = step[1]
            yield step
            del step  # the step's frames are the caller's now


def decode(decoder: ChunkDecoder, latents: torch.Tensor, chunk_frames: int | None = None,
           progress: ProgressFn | None = None, out_device: torch.device | str = "cpu",
           out_dtype: torch.dtype = torch.float32, clamp: bool = True, free_bytes: int | None = None,
           layout: str = "NTCHW") -> torch.Tensor:
    """Decode whole clips: latents (N, T, C, h, w) or (T, C, h, w) -> frames, as `DecodeStream.decode`.

    chunk_frames=None picks the length automatically; chunk_frames >= T is one parallel pass.
    Every chunking gives the same frames.
    """
    return DecodeStream(decoder).decode(latents, chunk_frames, progress, out_device, out_dtype, clamp,
                                        free_bytes, layout)


def encode(encoder: ChunkEncoder, frames: torch.Tensor, chunk_frames: int | None = None,
           progress: ProgressFn | None = None, out_device: torch.device | str = "cpu",
           out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Encode frames (N, T, 3, H, W) or (T, 3, H, W) in [0, 1] to latents (N, T', C, H/s, W/s).

    H and W must be multiples of the encoder's spatial scale s. An encoder that pools time
    (time_scale > 1) gets T padded at the end, repeating the last frame, to a multiple of its
    time_scale: T' = ceil(T / time_scale).
    """
    squeeze = frames.ndim == 4
    frames = as_ntchw(frames, "frames", 3, encoder.family)
    n, t, _, hh, ww = frames.shape
    s, ts = encoder.spatial_scale, encoder.time_scale
    if hh % s or ww % s:
        raise InputError(f"frames are {hh}x{ww} pixels; this encoder takes sizes that are multiples of {s} "
                         "(crop or resize first)")
    if t % ts:
        frames = torch.cat([frames, frames[:, -1:].expand(n, ts - t % ts, *frames.shape[2:])], 1)
    t_padded = frames.shape[1]
    param = next(encoder.parameters())
    device, dtype = param.device, param.dtype
    if chunk_frames is None:
        chunk_frames = preferred_chunk_frames(device) * 4
    out = torch.empty((n, t_padded // ts, encoder.latent_channels, hh // s, ww // s), device=out_device, dtype=out_dtype)
    state = {"memory": None}

    def work(start: int, length: int) -> None:
        latents, memory = encoder.forward_chunk(frames[:, start:start + length].to(device, dtype), state["memory"])
        out[:, start // ts:(start + length) // ts].copy_(latents)
        state["memory"] = memory

    with torch.inference_mode(), fp32_precision(encoder):
        run_in_chunks(t_padded, max(ts, int(chunk_frames)), work, device, progress, multiple=ts)
    return out[0] if squeeze else out
