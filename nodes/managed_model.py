"""A tiny autoencoder of any family under ComfyUI's device manager (`comfy.model_management`).

`ManagedAutoencoder` hands the model to ComfyUI as a ModelPatcher, so ComfyUI loads it onto the
VAE device before work and may offload it when memory is needed elsewhere. Work checks memory
before it allocates, checks for interrupts and reports progress after every chunk; outputs land
on the intermediate device, already in ComfyUI's IMAGE order.
"""
from __future__ import annotations

import copy

import torch

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils

from ..taesdv_core import engine
from ..taesdv_core.checkpoint import DTYPES
from ..taesdv_core.errors import InputError
from ..taesdv_core.precision import auto_dtype
from ..taesdv_core.streams import StreamStore
from . import latent_spaces

DTYPE_CHOICES = ("auto", *DTYPES)


def format_bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _progress(total: int):
    """Progress after each chunk on the running node; raises ComfyUI's interrupt when one is pending."""
    pbar = comfy.utils.ProgressBar(total)

    def report(done: int, _total: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        pbar.update_absolute(done, total)
    return report


class ManagedAutoencoder:
    """A loaded tiny autoencoder (encoder and/or decoder), its device, dtype and named streams.

    model: an nn.Module with `encoder` and `decoder` (layers.ChunkEncoder / ChunkDecoder, either
    may be None) and a `description` of what the file is.
    """

    def __init__(self, model: torch.nn.Module, dtype: str = "auto", name: str = "taesdv",
                 streams: StreamStore | None = None, weights_id: object = None):
        """streams: the server-wide store of named streams (nodes.stream.STREAM_STORE); a private
        one when None. weights_id: identity of the weights (the file's fingerprint), which streams
        are tied to; this object's id when None."""
        self.name = name
        self.weights_id = weights_id if weights_id is not None else f"object:{id(model)}"
        self.description = getattr(model, "description", name)
        self.load_device = mm.vae_device()
        self.offload_device = mm.vae_offload_device()
        if dtype == "auto":  # on GPUs ComfyUI's choice for VAEs; on CPUs bf16 where native (precision.py)
            self.dtype = auto_dtype(self.load_device, mm.vae_dtype(
                self.load_device, allowed_dtypes=[torch.float16, torch.bfloat16, torch.float32]))
        else:
            self.dtype = DTYPES[dtype]
        self.model = model.to(device=self.offload_device, dtype=self.dtype).eval().requires_grad_(False)
        engine.allow_tf32(self.model, dtype == "tf32")  # fp32 is exact fp32; tf32 lets CUDA convs use TF32
        self.patcher = comfy.model_patcher.ModelPatcher(self.model, load_device=self.load_device,
                                                        offload_device=self.offload_device)
        self.streams = streams if streams is not None else StreamStore()
        self._preview_decoders: dict[tuple, list[torch.nn.Module]] = {}

    @property
    def decoder(self):
        return self.require("decoder")

    @property
    def encoder(self):
        return self.require("encoder")

    def require(self, part: str):
        module = getattr(self.model, part)
        if module is None:
            full = getattr(self.model, "full_file", "a file that holds both halves")
            raise InputError(f"the loaded checkpoint '{self.name}' ({self.description}) has no {part} tensors; "
                             f"load {full}")
        return module

    def serves(self, latent_format) -> bool:
        """Whether the decoder was made for latents of this comfy.latent_formats object."""
        return latent_spaces.serves(self.model.decoder, latent_format)

    def preview_decoders(self, device: torch.device) -> list[torch.nn.Module]:
        """Private copies of the decoder on the sampler's device for previews during sampling:
        the decoder, then its cheaper variants (TAEHV: without time, then space upscaling),
        which the previewer picks when the budget cannot afford the full clip.

        Previews run inside the sampler, whose model must stay loaded: like ComfyUI's own TAESD
        previewer, the few-MB copies are moved there directly instead of through load_models_gpu.
        """
        decoder = self.decoder
        dtype = auto_dtype(device)  # previews are glanced at: the fast precision, whatever the loader's
        key = (str(device), dtype)
        if key not in self._preview_decoders:
            full = copy.deepcopy(decoder).to(device=device, dtype=dtype)
            self._preview_decoders[key] = [full, *full.cheaper_variants()]
        return self._preview_decoders[key]

    def _element_size(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()

    def _check_fits(self, output: str, output_bytes: int, one_frame: str, working_bytes: int) -> int | None:
        """Refuse work whose output or smallest chunk cannot fit, before anything is allocated;
        then load the model with room for the work. Returns the device's free memory after."""
        free_out = mm.get_free_memory(mm.intermediate_device())
        if output_bytes > free_out:
            raise InputError(f"{output} need {format_bytes(output_bytes)} for the output alone, but "
                             f"{format_bytes(free_out)} is free; process fewer frames at a time (Streaming "
                             "Decode) or smaller sizes")
        free_work = mm.get_free_memory(self.load_device)
        if self.load_device == mm.intermediate_device():
            free_work -= output_bytes
        if working_bytes > free_work:
            raise InputError(f"{one_frame} needs {format_bytes(working_bytes)} of working memory on "
                             f"{self.load_device}, but {format_bytes(max(free_work, 0))} is free; use smaller sizes")
        mm.load_models_gpu([self.patcher], memory_required=working_bytes)
        return mm.get_free_memory(self.load_device)

    def decode(self, latents: torch.Tensor, chunk_frames: int | None = None,
               stream: engine.DecodeStream | None = None, progress: bool = True,
               filled_frames: int = 0, filled_by: str = "") -> torch.Tensor:
        """latents NTCHW in the decoder's input space -> frames (N, T', H, W, 3) in [0, 1] on
        ComfyUI's intermediate device (IMAGE order, laid out on the device: no second copy).
        filled_frames: frames per clip the caller then makes from the output while it holds it
        (`filled_by` says how); counted in the memory check."""
        decoder = self.decoder
        latents = engine.as_ntchw(latents, "latents", decoder.latent_channels, decoder.family)
        engine.check_finite(latents, "latents")
        target = stream if stream is not None else engine.DecodeStream(decoder)
        n, t, _, h, w = latents.shape
        hh, ww = h * decoder.spatial_scale, w * decoder.spatial_scale
        frames_out = n * target.output_frames(t)
        filled = f", filled to {n * filled_frames} frames ({filled_by})," if filled_frames else ""
        one_frame = engine.working_bytes_per_latent_frame(decoder, h, w, self._element_size()) * n
        free = self._check_fits(f"latents {tuple(latents.shape)} decode to {frames_out} frames of {hh}x{ww}{filled} that",
                                4 * (frames_out + n * filled_frames) * 3 * hh * ww,
                                f"latents {tuple(latents.shape)}: decoding one {hh}x{ww} frame", one_frame)
        return target.decode(latents, chunk_frames, _progress(t) if progress else None,
                             out_device=mm.intermediate_device(), free_bytes=free, layout="NTHWC")

    def decode_stream(self, name: str, latents: torch.Tensor, reset: bool = False,
                      chunk_frames: int | None = None) -> tuple[torch.Tensor, engine.DecodeStream, str | None]:
        """Decode the next piece of the named stream (created if new, restarted if `reset` or if
        it was made with other weights: then the notice says so, else it is None)."""
        return self.streams.decode_piece(name, lambda stream: self.decode(latents, chunk_frames, stream=stream),
                                         self.decoder, self.weights_id, reset=reset)

    def encode(self, frames: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """frames NTCHW in [0, 1] -> latents NTCHW in the encoder's output space, on the intermediate device."""
        encoder = self.encoder
        frames = engine.as_ntchw(frames, "pixels", 3, encoder.family)
        engine.check_finite(frames, "pixels")
        n, t, _, hh, ww = frames.shape
        latent_bytes = 4 * n * -(-t // encoder.time_scale) * encoder.latent_channels * hh * ww // encoder.spatial_scale ** 2
        one_frame = encoder.working_bytes_per_frame(hh, ww, self._element_size()) * n * encoder.time_scale
        self._check_fits(f"pixels {tuple(frames.shape)} encode to latents that", latent_bytes,
                         f"pixels {tuple(frames.shape)}: encoding one {hh}x{ww} frame", one_frame)
        return engine.encode(encoder, frames, chunk_frames, _progress(n * t), out_device=mm.intermediate_device())
