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
"""
from __future__ import annotations

import math
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


def preferred_chunk_frames(device: torch.device) -> int:
    """Latent frames per chunk that run fastest on this kind of device when memory is no limit.

    On CPUs chunks run frame by frame anyway (fused_ops), so the length only sets how often
    progress is reported and an interrupt is noticed. Accelerators want big batches.
    """
    return 8 if runs_frame_by_frame(device) else 64


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

    An out-of-memory error in a chunk retries it at half the length (work must commit nothing
    before it returns); one at the smallest length is raised.
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
        """Frames the next piece of `latent_frames` gives (a clip's start drops frames_to_trim)."""
        trim = self.decoder.frames_to_trim if self.latent_frames == 0 else 0
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
        if memory is not None and (memory[0].device != device or memory[0].dtype != dtype):
            # ComfyUI may have moved the model between queue runs: the state follows it
            memory = [m.to(device=device, dtype=dtype) for m in memory]
        if chunk_frames is None:
            chunk_frames = auto_chunk_frames(decoder, t, h, w, param.element_size(), device, free_bytes, clips=n)
        scale, trim = decoder.spatial_scale, self.output_frames(t) - t * decoder.time_scale
        n_out = t * decoder.time_scale + trim
        out = torch.empty(_shape_in(layout, n, n_out, h * scale, w * scale), device=out_device, dtype=out_dtype)
        state = {"memory": memory}

        def work(start: int, length: int) -> None:
            frames, new_memory = self._forward(latents[:, start:start + length].to(device, dtype), state["memory"])
            first = start * decoder.time_scale + trim  # trim < 0 drops the clip's first frames
            if first < 0:
                frames, first = frames[:, -first:], 0
            if clamp:
                frames = frames.clamp_(0, 1)
            out[:, first:first + frames.shape[1]].copy_(_place(frames, layout), non_blocking=True)
            state["memory"] = new_memory

        with torch.inference_mode():
            run_in_chunks(t, max(1, int(chunk_frames)), work, device, progress)
        # The whole piece succeeded: commit it
        self.memory = state["memory"]
        self.latent_shape = (n, c, h, w)
        self.frames_decoded += n_out
        self.latent_frames += t
        return out[0] if squeeze else out

    def _forward(self, latents: torch.Tensor, memory) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One chunk from `memory`; returns its frames and the memory after it."""
        forward = self.decoder.forward_chunk
        if not runs_frame_by_frame(latents.device) or latents.shape[1] == 1:
            return forward(latents, memory)
        frames = []
        for i in range(latents.shape[1]):
            frame, memory = forward(latents[:, i:i + 1], memory)
            frames.append(frame)
        return torch.cat(frames, 1), memory


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

    with torch.inference_mode():
        run_in_chunks(t_padded, max(ts, int(chunk_frames)), work, device, progress, multiple=ts)
    return out[0] if squeeze else out
