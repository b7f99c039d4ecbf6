"""The one place where the core meets ComfyUI's device manager (`comfy.model_management`).

`ManagedTAESDV` hands the model to ComfyUI as a ModelPatcher, so ComfyUI loads it onto the VAE
device before work and may offload it when memory is needed elsewhere. Work checks for
interrupts and reports progress after every chunk; outputs land on the intermediate device.
Nothing else in taesdv_core imports comfy.
"""
from __future__ import annotations

import torch

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils

from . import engine
from .model import SPATIAL_SCALE, TAESDV
from .streams import StreamStore

DTYPE_CHOICES = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _format_bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


class ManagedTAESDV:
    """A TAESDV model under ComfyUI's device management, with its named decode streams."""

    def __init__(self, model: TAESDV, dtype: str = "auto", name: str = "taesdv"):
        self.name = name
        self.load_device = mm.vae_device()
        self.offload_device = mm.vae_offload_device()
        if dtype == "auto":
            self.dtype = mm.vae_dtype(self.load_device, allowed_dtypes=[torch.float16, torch.bfloat16, torch.float32])
        else:
            self.dtype = _DTYPES[dtype]
        self.model = model.to(device=self.offload_device, dtype=self.dtype).eval().requires_grad_(False)
        self.patcher = comfy.model_patcher.ModelPatcher(self.model, load_device=self.load_device,
                                                        offload_device=self.offload_device)
        self.streams = StreamStore(self.model.decoder) if self.model.decoder is not None else None
        self._preview_decoders: dict[tuple, torch.nn.Module] = {}

    def preview_decoder(self, device: torch.device) -> torch.nn.Module:
        """A private copy of the decoder on the sampler's device, for previews during sampling.

        Previews run inside the sampler, whose model must stay loaded: like ComfyUI's own TAESD
        previewer, the 3 MB copy is moved there directly instead of through load_models_gpu.
        """
        self._require("decoder")
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        key = (str(device), dtype)
        if key not in self._preview_decoders:
            import copy

            self._preview_decoders[key] = copy.deepcopy(self.model.decoder).to(device=device, dtype=dtype)
        return self._preview_decoders[key]

    @property
    def has_encoder(self) -> bool:
        return self.model.encoder is not None

    @property
    def has_decoder(self) -> bool:
        return self.model.decoder is not None

    def _require(self, part: str) -> None:
        if getattr(self.model, part) is None:
            raise engine.InputError(f"the loaded checkpoint '{self.name}' has no {part} tensors; load the full taesdv.pth")

    def _element_size(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()

    def _prepare(self, working_bytes: int) -> int | None:
        """Load onto the device with room for `working_bytes`; returns the free memory left (or None)."""
        mm.load_models_gpu([self.patcher], memory_required=working_bytes)
        return mm.get_free_memory(self.load_device)

    def _check_fits(self, latents_shape: tuple[int, ...]) -> None:
        """Refuse, before allocating anything, latents whose output or single-frame work cannot fit."""
        n, t, _, h, w = latents_shape
        hh, ww = h * SPATIAL_SCALE, w * SPATIAL_SCALE
        output = 4 * n * t * 3 * hh * ww
        free_out = mm.get_free_memory(mm.intermediate_device())
        if output > free_out:
            raise engine.InputError(
                f"latents {tuple(latents_shape)} decode to {n * t} frames of {hh}x{ww} that need "
                f"{_format_bytes(output)} for the output alone, but {_format_bytes(free_out)} is free; decode fewer "
                "frames at a time (TAESDV Streaming Decode) or smaller latents"
            )
        one_frame = engine.decode_working_bytes_per_frame(hh, ww, self._element_size()) * n
        free_work = mm.get_free_memory(self.load_device)
        if self.load_device == mm.intermediate_device():
            free_work -= output
        if one_frame > free_work:
            raise engine.InputError(
                f"latents {tuple(latents_shape)}: decoding one {hh}x{ww} frame needs {_format_bytes(one_frame)} of "
                f"working memory on {self.load_device}, but {_format_bytes(max(free_work, 0))} is free; use smaller latents"
            )

    @staticmethod
    def _progress(total: int):
        pbar = comfy.utils.ProgressBar(total)

        def report(done: int, _total: int) -> None:
            mm.throw_exception_if_processing_interrupted()
            pbar.update_absolute(done, total)
        return report

    def decode(self, latents: torch.Tensor, chunk_frames: int | None = None, stream: engine.DecodeStream | None = None,
               progress: bool = True) -> torch.Tensor:
        """latents NTCHW model space -> frames NTCHW in [0, 1] on ComfyUI's intermediate device."""
        self._require("decoder")
        latents = engine.as_ntchw(latents, "latents", 4)
        engine.check_finite(latents, "latents")
        n, t, _, h, w = latents.shape
        self._check_fits(tuple(latents.shape))
        per_frame = engine.decode_working_bytes_per_frame(h * SPATIAL_SCALE, w * SPATIAL_SCALE, self._element_size()) * n
        free = self._prepare(per_frame * min(t, chunk_frames or engine.preferred_chunk_frames(self.load_device)))
        target = stream if stream is not None else engine.DecodeStream(self.model.decoder)
        return target.decode(latents, chunk_frames, self._progress(t) if progress else None,
                             out_device=mm.intermediate_device(), free_bytes=free)

    def decode_stream(self, name: str, latents: torch.Tensor, reset: bool = False,
                      chunk_frames: int | None = None) -> tuple[torch.Tensor, engine.DecodeStream]:
        """Decode the next piece of the named stream (created if new, restarted if `reset`)."""
        self._require("decoder")
        stream = self.streams.get(name, reset=reset)
        frames = self.decode(latents, chunk_frames, stream=stream)
        self.streams.enforce_bounds(keep=name)
        return frames, stream

    def encode(self, frames: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """frames NTCHW in [0, 1] -> latents NTCHW model space on the intermediate device."""
        self._require("encoder")
        frames = engine.as_ntchw(frames, "frames", 3)
        n, t, _, hh, ww = frames.shape
        self._prepare(engine.decode_working_bytes_per_frame(hh, ww, self._element_size()))
        return engine.encode(self.model.encoder, frames, chunk_frames, self._progress(n * t),
                             out_device=mm.intermediate_device())
