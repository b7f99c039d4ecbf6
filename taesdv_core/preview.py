"""Live previews of a whole clip while sampling: pure logic, no ComfyUI.

Each preview decodes all frames of one step's x0 together (one clip, temporally coherent,
never mixing steps), at preview size when the latents are larger than needed, within a time
budget that thins previews so they cost at most a set fraction of the sampler's own time.

x0 arrives in model space (the sampler's denoised estimate): no extra scaling.
"""
from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from . import engine
from .layers import ChunkDecoder

log = logging.getLogger("taesdv")

PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class PreviewSettings:
    max_size: int = 256      # longest side of a preview frame, pixels
    fps: float = 8.0         # playback rate the client should use
    budget: float = 0.05     # previews may add at most this fraction to the sampler's wall time
    quality: int = 80        # JPEG quality of the sprite sheet


@dataclass
class PreviewClip:
    """One step's clip: frames (T, 3, h, w) in [0, 1] and their sprite sheet."""

    step: int
    total_steps: int
    frames: torch.Tensor
    sheet: "PIL.Image.Image"
    sheet_jpeg: bytes
    columns: int
    rows: int
    decode_seconds: float
    frame_step: int = 1   # frames of the full decode per frame here (a variant without time upscaling: 4)
    variant: int = 0      # which of the Previewer's decoders made it (0: the full decoder)

    @property
    def frame_count(self) -> int:
        return self.frames.shape[0]

    def middle_frame(self) -> "PIL.Image.Image":
        """The clip's middle frame as an image: a still for thumbnails."""
        from PIL import Image

        frame = self.frames[self.frame_count // 2].clamp(0, 1).mul(255).round().to(torch.uint8)
        return Image.fromarray(frame.permute(1, 2, 0).cpu().numpy())


class PreviewBudget:
    """Allows a preview only while preview time stays <= `fraction` of the time spent sampling.

    The caller predicts the next preview's cost; it is allowed only if the total would still be
    within budget.
    """

    def __init__(self, fraction: float, clock: Callable[[], float] = time.perf_counter):
        self.fraction = fraction
        self.clock = clock
        self.started = clock()
        self.spent = 0.0

    def sampling_time(self) -> float:
        return max((self.clock() - self.started) - self.spent, 0.0)

    def allow(self, cost: float) -> bool:
        return self.fraction >= 1.0 or (self.spent + cost) <= self.fraction * self.sampling_time()

    def for_the_run(self, steps_done: int, total_steps: int) -> float:
        """Seconds of previews the whole run will allow, if its steps go on taking what they took."""
        if self.fraction >= 1.0:
            return float("inf")
        return self.fraction * self.sampling_time() * total_steps / max(steps_done, 1)

    def record(self, cost: float) -> None:
        self.spent += cost


def preview_latents(x0: torch.Tensor, max_size: int, spatial_scale: int = 8) -> torch.Tensor:
    """x0 of one step -> one clip (1, T, 4, h, w) no larger than max_size pixels once decoded.

    Accepts frames as the batch (T, 4, h, w) or video latents (B, 4, T, h, w) (first clip).
    Larger latents are area-averaged down: decoding at preview size costs less.
    """
    if x0.ndim == 4:
        clip = x0
    elif x0.ndim == 5:
        clip = x0[0].movedim(0, 1)
    else:
        raise engine.InputError(f"x0 of shape {tuple(x0.shape)} is not a clip")
    h, w = clip.shape[-2:]
    limit = max(1, max_size // spatial_scale)
    if max(h, w) > limit:
        scale = limit / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        clip = F.interpolate(clip.float(), size=size, mode="area")
    return clip.unsqueeze(0)


def sprite_sheet(frames: torch.Tensor, quality: int = 80) -> tuple["PIL.Image.Image", bytes, int, int]:
    """Frames (T, 3, h, w) in [0, 1] -> (grid image, its JPEG, columns, rows), row-major, frame 0 top left.

    The grid is also a sensible still preview (a contact sheet) for clients that cannot animate.
    """
    from PIL import Image

    t, _, h, w = frames.shape
    columns = max(1, math.ceil(math.sqrt(t * h / w)))
    columns = min(columns, t)
    rows = math.ceil(t / columns)
    grid = torch.zeros(rows * h, columns * w, 3, dtype=torch.uint8)
    pixels = frames.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
    for i in range(t):
        r, c = divmod(i, columns)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = pixels[i]
    image = Image.fromarray(grid.numpy())
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return image, buffer.getvalue(), columns, rows


def assumed_throughput(device: torch.device) -> float:
    """A deliberately low FLOP/s guess, used only before a decoder's first preview has been timed.

    Well below what previews measure on this project's CPU (an fp32 TAEHV clip: ~250 GFLOP/s on
    one thread, counting the official layers' multiply-adds; bf16 about twice that); GPUs far exceed it.
    """
    return 6e10 * max(1, torch.get_num_threads()) if device.type == "cpu" else 5e12


# The fullest variant a run's budget affords this many times is waited for (see Previewer._choose).
PREVIEWS_PER_RUN = 4


class Previewer:
    """Turns each step's x0 into a `PreviewClip`, or None when the budget says skip.

    decoders: the decoder, or a list of variants of it from the full output to the cheapest
    (TAEHV without time upscaling, then without spatial upscaling too). Each step uses the
    fullest variant whose predicted cost fits the budget, but none cheaper than the fullest
    the whole run can afford PREVIEWS_PER_RUN times: steps wait for that one rather than spend
    the budget on cheaper clips, and cheaper ones serve where even it is out of reach. A
    variant's cost is its FLOPs at the speed its own previews showed, in this run or an earlier
    one (the decoder's `preview_seconds_per_flop`); before its first, at the speed of the newest
    preview of another variant; before any, at `assumed_throughput`. Every variant
    decodes the same latent grid (the one that gives the full decoder's frames at preview
    size), so a variant without spatial upscaling gives smaller frames rather than decoding
    more latent pixels.

    Never raises for a failed preview (except `interrupt_types`): an out-of-memory error
    halves the preview size and skips that step; any other error turns previews off for the
    rest of this sampling run, with one log line.
    """

    def __init__(self, decoders: ChunkDecoder | list[ChunkDecoder], settings: PreviewSettings,
                 clock: Callable[[], float] = time.perf_counter, interrupt_types: tuple[type, ...] = (),
                 prepare: Callable[[torch.Tensor], torch.Tensor] = lambda x0: x0):
        """prepare: maps a step's x0 to the decoders' input (inside the never-fail guard)."""
        self.variants = list(decoders) if isinstance(decoders, (list, tuple)) else [decoders]
        self.decoder = self.variants[0]
        self.prepare = prepare
        self.settings = settings
        self.max_size = settings.max_size
        self.budget = PreviewBudget(settings.budget, clock)
        self.clock = clock
        self.interrupt_types = interrupt_types
        self.disabled_reason: str | None = None
        self.out_of_memory_count = 0
        self.seconds_per_flop: float | None = None  # measured by the newest preview, any variant
        self.last_variant: int | None = None
        self._newest: tuple[torch.nn.Module, float, float] | None = None  # its decoder, FLOPs, weight in the mean

    def charge(self, seconds: float) -> None:
        """Count other per-preview work done on the sampler's thread (encoding, sending) in the
        budget and in the speed of the decoder that made the newest preview."""
        self.budget.spent += seconds
        if self._newest is not None:
            decoder, flops, weight = self._newest
            decoder.preview_seconds_per_flop += weight * seconds / flops

    def flops(self, variant: int, clip_latents: torch.Tensor) -> float:
        """Estimated floating-point operations of decoding `clip_latents` with a variant."""
        n, t, _, h, w = clip_latents.shape
        d = self.variants[variant]
        hh, ww = h * d.spatial_scale, w * d.spatial_scale
        return n * t * d.time_scale * d.flops_per_frame(hh, ww)

    def predicted_cost(self, variant: int, clip_latents: torch.Tensor) -> float:
        """Seconds a preview with this variant will take: its FLOPs at the speed its own previews
        showed (this run or an earlier one); before its first, at the speed the newest preview of
        another variant showed (at an assumed, deliberately low speed before any)."""
        decoder = self.variants[variant]
        speed = decoder.preview_seconds_per_flop
        if speed is None:
            speed = self.seconds_per_flop
        if speed is None:
            return self.flops(variant, clip_latents) / assumed_throughput(next(decoder.parameters()).device)
        return self.flops(variant, clip_latents) * speed

    def _record(self, variant: int, cost: float, flops: float) -> None:
        self.budget.record(cost)
        decoder, flops = self.variants[variant], max(flops, 1.0)
        previous = decoder.preview_seconds_per_flop
        weight = 1.0 if previous is None else 0.5  # the first sample, then a running mean
        decoder.preview_seconds_per_flop = weight * cost / flops + (1 - weight) * (previous or 0.0)
        self.seconds_per_flop = cost / flops
        self.last_variant = variant
        self._newest = (decoder, flops, weight)

    def _choose(self, step: int, total_steps: int, latents: torch.Tensor) -> int | None:
        """The variant to preview this step with, or None to skip it: the fullest one the budget
        allows now, but none cheaper than the fullest the whole run can afford PREVIEWS_PER_RUN
        times. A step skips to save up for that one rather than spend the budget on a cheaper
        clip (each cheaper clip would put the fuller one out of reach again)."""
        costs = [self.predicted_cost(i, latents) for i in range(len(self.variants))]
        per_preview = self.budget.for_the_run(step + 1, total_steps) / PREVIEWS_PER_RUN
        floor = next((i for i, cost in enumerate(costs) if cost <= per_preview), len(costs) - 1)
        return next((i for i in range(floor + 1) if self.budget.allow(costs[i])), None)

    def render(self, step: int, total_steps: int, x0: torch.Tensor) -> PreviewClip | None:
        if self.disabled_reason is not None:
            return None
        try:
            x0 = self.prepare(x0.detach())
            latents = preview_latents(x0, self.max_size, self.decoder.spatial_scale)
            chosen = self._choose(step, total_steps, latents)
            if chosen is None:
                return None
            if not bool(torch.isfinite(latents).all()):
                return None  # a diverging sampler: nothing sensible to show for this step
            started = self.clock()
            decoder = self.variants[chosen]
            param = next(decoder.parameters())
            frames = engine.decode(decoder, latents.to(param.device, param.dtype))[0]
            sheet, jpeg, columns, rows = sprite_sheet(frames, self.settings.quality)
            cost = self.clock() - started
            self._record(chosen, cost, self.flops(chosen, latents))
            frame_step = max(1, self.decoder.time_scale // decoder.time_scale)
            return PreviewClip(step, total_steps, frames, sheet, jpeg, columns, rows, cost, frame_step, chosen)
        except self.interrupt_types:
            raise
        except Exception as e:  # a preview must never fail the run
            if engine.is_out_of_memory(e):
                self.out_of_memory_count += 1
                self.max_size = max(self.decoder.spatial_scale, self.max_size // 2)
                log.warning("TAESDV preview ran out of memory; continuing at %d px", self.max_size)
                return None
            self.disabled_reason = f"{type(e).__name__}: {e}"
            log.warning("TAESDV previews off for this run after an error: %s", self.disabled_reason)
            return None
