"""The one decode engine: whole clips, chunks, streams and previews all run through here.

A clip is decoded in chunks of consecutive frames. Each chunk runs layer by layer for all of
its frames at once, and hands each MemBlock's memory of its last frame to the next chunk, so
any chunking (1 frame, 7 frames, the whole clip) gives the same frames as one parallel pass.
`DecodeStream` keeps that memory between calls for clips that arrive piece by piece.

Layouts: latents NTCHW (4 channels, model space: SD VAE latent x 0.18215); frames NTCHW RGB.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .model import LATENT_CHANNELS, SPATIAL_SCALE, WIDTH, TAESDVDecoder, TAESDVEncoder

# Called after each chunk with (frames done, frames total); may raise to stop the work
# (ComfyUI's interrupt exception does exactly that).
ProgressFn = Callable[[int, int], None]


class InputError(ValueError):
    """Latents or frames that cannot be decoded/encoded; the message names the input and the fix."""


InputError.__module__ = "taesdv"  # ComfyUI's error dialog shows "taesdv.InputError", not a loader path


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors and for a failed CPU allocation."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text.lower() or "can't allocate memory" in text)


def as_ntchw(tensor: torch.Tensor, name: str, channels: int) -> torch.Tensor:
    """Accept NTCHW or TCHW (one clip); check channels, sizes and values."""
    if not isinstance(tensor, torch.Tensor):
        raise InputError(f"{name} must be a tensor, got {type(tensor).__name__}")
    if tensor.ndim == 4:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 5:
        raise InputError(f"{name} must be NTCHW or TCHW, got {tensor.ndim} dimensions {tuple(tensor.shape)}")
    if tensor.shape[2] != channels:
        hint = ""
        if name == "latents" and tensor.shape[2] == 16:
            hint = " 16-channel latents come from Wan/Hunyuan/SD3/Flux models: decode them with their own VAE or a TAEHV-family decoder."
        elif name == "latents" and tensor.shape[2] in (48, 128):
            hint = " These are not SD latents: use the model's own VAE or a TAEHV-family decoder."
        raise InputError(f"{name} have {tensor.shape[2]} channels at dim 2 of {tuple(tensor.shape)}; TAESDV expects {channels} (SD1.x/SD2.x/SVD/AnimateDiff).{hint}")
    if tensor.shape[1] == 0:
        raise InputError(f"{name} have 0 frames {tuple(tensor.shape)}; give at least one frame")
    if tensor.shape[-1] == 0 or tensor.shape[-2] == 0 or tensor.shape[0] == 0:
        raise InputError(f"{name} are empty {tuple(tensor.shape)}")
    if not (tensor.is_floating_point()):
        raise InputError(f"{name} must be floating point, got {tensor.dtype}")
    return tensor


def check_finite(tensor: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise InputError(f"{name} contain {bad} NaN or infinite values; the sampler or an upstream node produced "
                         "invalid numbers (check CFG, the model and fp16 overflow)")


def decode_working_bytes_per_frame(height: int, width: int, element_size: int) -> int:
    """Peak working memory of one frame in a chunk at output size height x width.

    The last stage holds at full size: its input (64 ch), the MemBlock's memory conv and the
    shifted copy of it (64 each), two conv outputs (64 each) and the upsampled input (64, plus
    its 1/4-size source).
    """
    return int(height * width * element_size * (WIDTH * 6 + WIDTH // 4 + 3))


def stream_state_bytes(height: int, width: int, element_size: int) -> int:
    """Size of a stream's memory (10 MemBlocks, 64 channels, 1 frame) at output size h x w."""
    per_pixel = 3 / 64 + 3 / 16 + 3 / 4 + 1  # three blocks at 1/8, 1/4 and 1/2 size, one at full size
    return int(math.ceil(height * width * per_pixel * WIDTH * element_size))


def preferred_chunk_frames(device: torch.device) -> int:
    """Chunk length that runs fastest on this kind of device when memory is no limit.

    On CPUs one frame at a time wins (oneDNN's batch-1 convs are faster per frame, activations
    stay in cache and no shifted copies are made; measured by bench/, see README). Accelerators
    want big batches.
    """
    return 1 if device.type == "cpu" else 64


def auto_chunk_frames(n_frames: int, height: int, width: int, element_size: int, device: torch.device,
                      free_bytes: int | None, clips: int = 1) -> int:
    """Frames per chunk: the device's preferred length, capped so a chunk uses <= half the free memory."""
    chunk = min(n_frames, preferred_chunk_frames(device))
    if free_bytes is not None:
        per_frame = decode_working_bytes_per_frame(height, width, element_size) * clips
        chunk = min(chunk, max(1, (free_bytes // 2) // max(per_frame, 1)))
    return max(1, int(chunk))


def _to_work(latents: torch.Tensor, device, dtype) -> torch.Tensor:
    return latents.to(device=device, dtype=dtype, non_blocking=True)


@dataclass
class DecodeStream:
    """A clip decoded piece by piece: the decoder's memory of the last frame so far.

    Feed consecutive pieces (N, T, 4, h, w) of the same N clips with `decode`; the frames equal
    a one-pass decode of the concatenated pieces. Memory stays constant for any length.
    """

    decoder: TAESDVDecoder
    memory: list[torch.Tensor] | None = None
    frames_decoded: int = 0
    latent_shape: tuple[int, int, int, int] | None = field(default=None)  # N, C, h, w of the stream
    # How a chunk runs: frame by frame (True), as one batch (False), or by device (None): on CPUs
    # oneDNN's batch-1 convolutions are the fastest per frame (bench/), elsewhere batches win.
    frame_major: bool | None = None

    def reset(self) -> None:
        self.memory, self.frames_decoded, self.latent_shape = None, 0, None

    def state_bytes(self) -> int:
        return sum(m.numel() * m.element_size() for m in self.memory) if self.memory else 0

    def decode(self, latents: torch.Tensor, chunk_frames: int | None = None, progress: ProgressFn | None = None,
               out_device: torch.device | str = "cpu", out_dtype: torch.dtype = torch.float32,
               clamp: bool = True, free_bytes: int | None = None) -> torch.Tensor:
        """Decode the next piece of the stream.

        latents: (N, T, 4, h, w) or (T, 4, h, w), model space, continuing the previous piece.
        chunk_frames: frames per chunk; None chooses from the device and `free_bytes`.
        progress: called after each chunk with (done, total) frames of this piece.
        Returns frames (N, T, 3, 8h, 8w) on out_device, clamped to [0, 1] unless clamp=False.
        On an out-of-memory error the chunk is retried at half the length (output unchanged).
        """
        squeeze = latents.ndim == 4
        latents = as_ntchw(latents, "latents", LATENT_CHANNELS)
        n, t, c, h, w = latents.shape
        if self.latent_shape is not None and self.latent_shape != (n, c, h, w):
            raise InputError(
                f"latents of shape {(n, c, h, w)} (N, C, h, w) do not continue this stream, which has "
                f"{self.latent_shape}; reset the stream to start a new clip"
            )
        param = next(self.decoder.parameters())
        device, dtype = param.device, param.dtype
        if self.memory is not None and (self.memory[0].device != device or self.memory[0].dtype != dtype):
            # ComfyUI may have moved the model between queue runs: the state follows it
            self.memory = [m.to(device=device, dtype=dtype) for m in self.memory]
        if chunk_frames is None:
            chunk_frames = auto_chunk_frames(t, h * SPATIAL_SCALE, w * SPATIAL_SCALE, param.element_size(),
                                             device, free_bytes, clips=n)
        chunk_frames = max(1, int(chunk_frames))
        out = torch.empty((n, t, 3, h * SPATIAL_SCALE, w * SPATIAL_SCALE), device=out_device, dtype=out_dtype)
        done = 0
        with torch.inference_mode():
            while done < t:
                length = min(chunk_frames, t - done)
                try:
                    frames, memory = self._forward(_to_work(latents[:, done:done + length], device, dtype))
                except Exception as e:
                    if not is_out_of_memory(e) or length == 1:
                        raise
                    chunk_frames = max(1, length // 2)  # memory is only committed after success: retry smaller
                    _empty_cache(device)
                    continue
                if clamp:
                    frames = frames.clamp_(0, 1)
                out[:, done:done + length].copy_(frames)
                del frames
                self.memory = memory
                self.latent_shape = (n, c, h, w)
                done += length
                self.frames_decoded += length
                if progress is not None:
                    progress(done, t)
        return out[0] if squeeze else out

    def _forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One chunk from the committed memory; returns its frames and the memory after it."""
        frame_major = self.frame_major if self.frame_major is not None else latents.device.type == "cpu"
        if not frame_major or latents.shape[1] == 1:
            return self.decoder.forward_chunk(latents, self.memory)
        memory, frames = self.memory, []
        for i in range(latents.shape[1]):
            frame, memory = self.decoder.forward_chunk(latents[:, i:i + 1], memory)
            frames.append(frame)
        return torch.cat(frames, 1), memory


def _empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def decode(decoder: TAESDVDecoder, latents: torch.Tensor, chunk_frames: int | None = None,
           progress: ProgressFn | None = None, frame_major: bool | None = None, **kwargs) -> torch.Tensor:
    """Decode whole clips: latents (N, T, 4, h, w) or (T, 4, h, w) -> frames (N, T, 3, 8h, 8w).

    chunk_frames=None picks the length automatically; chunk_frames >= T is one parallel pass.
    Every chunking gives the same frames. frame_major as in `DecodeStream`; other keyword
    arguments as in `DecodeStream.decode`.
    """
    return DecodeStream(decoder, frame_major=frame_major).decode(latents, chunk_frames, progress, **kwargs)


def encode(encoder: TAESDVEncoder, frames: torch.Tensor, chunk_frames: int | None = None,
           progress: ProgressFn | None = None, out_device: torch.device | str = "cpu",
           out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Encode frames (N, T, 3, H, W) or (T, 3, H, W) in [0, 1] to model-space latents (N, T, 4, H/8, W/8).

    Each frame is encoded on its own; H and W must be multiples of 8.
    """
    squeeze = frames.ndim == 4
    frames = as_ntchw(frames, "frames", 3)
    n, t, _, hh, ww = frames.shape
    if hh % SPATIAL_SCALE or ww % SPATIAL_SCALE:
        raise InputError(f"frames are {hh}x{ww} pixels; TAESDV encodes sizes that are multiples of 8 (crop or resize first)")
    param = next(encoder.parameters())
    device, dtype = param.device, param.dtype
    flat = frames.reshape(n * t, 3, hh, ww)
    if chunk_frames is None:
        chunk_frames = preferred_chunk_frames(device) * 4
    out = torch.empty((n * t, LATENT_CHANNELS, hh // SPATIAL_SCALE, ww // SPATIAL_SCALE), device=out_device, dtype=out_dtype)
    done = 0
    with torch.inference_mode():
        while done < n * t:
            length = min(int(chunk_frames), n * t - done)
            try:
                x = _to_work(flat[done:done + length], device, dtype).contiguous(memory_format=torch.channels_last)
                out[done:done + length].copy_(encoder(x))
            except Exception as e:
                if not is_out_of_memory(e) or length == 1:
                    raise
                chunk_frames = max(1, length // 2)
                _empty_cache(device)
                continue
            done += length
            if progress is not None:
                progress(done, n * t)
    out = out.reshape(n, t, *out.shape[1:])
    return out[0] if squeeze else out
