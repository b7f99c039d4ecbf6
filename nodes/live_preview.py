"""Animated previews on the sampler node: the ComfyUI side of taesdv_core.preview.

Per sampling run, a `SamplerPreview` decodes each previewed step's whole x0 clip and sends it
as one JSON event (protocol in README, "Preview protocol"). ComfyUI's normal preview path
still gets an image every previewed step: a contact sheet of all frames for clients without
this pack's extension, a small still (the middle frame) for clients that play the clip, so
queue and job thumbnails stay filled. Both come from the frames already decoded.
"""
from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import comfy.model_management as mm
import comfy.utils
from comfy.cli_args import args as comfy_args

from ..taesdv_core.preview import PROTOCOL_VERSION, Previewer
from . import latent_spaces
from .preview_http import LATEST
from .preview_service import SERVICE, SPEC_KEY, PreviewSpec

log = logging.getLogger("taesdv")

EVENT = "taesdv.preview"
# Messages waiting in the server's outgoing queue above which a preview is skipped: the send loop
# awaits each client in turn, so one client that stops reading backs the queue up for everyone,
# and previews (the largest messages) must not grow it without bound.
MAX_BACKLOG = 32


def outgoing_backlog(server) -> int:
    """Messages ComfyUI has queued but not yet sent (PromptServer.messages, an asyncio.Queue)."""
    queue = getattr(server, "messages", None)
    try:
        return queue.qsize() if queue is not None else 0
    except Exception:
        return 0


def _server():
    from server import PromptServer

    return PromptServer.instance


def _node_identity() -> dict:
    """prompt and node ids of the running node, as ComfyUI's own preview events give them."""
    from comfy_execution.progress import get_progress_state
    from comfy_execution.utils import get_executing_context

    server = _server()
    ctx = get_executing_context()
    prompt_id = ctx.prompt_id if ctx else server.last_prompt_id
    node_id = ctx.node_id if ctx else server.last_node_id
    ids = {"prompt_id": prompt_id, "node_id": node_id, "display_node_id": node_id, "parent_node_id": None,
           "real_node_id": node_id}
    try:
        dynprompt = get_progress_state().dynprompt
        ids.update(display_node_id=dynprompt.get_display_node_id(node_id),
                   parent_node_id=dynprompt.get_parent_node_id(node_id),
                   real_node_id=dynprompt.get_real_node_id(node_id))
    except Exception:  # outside a prompt (e.g. a direct call): plain ids are right
        pass
    return ids


class SamplerPreview:
    """The previews of one sampling run on one node."""

    def __init__(self, spec: PreviewSpec, device, latent_format):
        self.spec = spec
        decoders = spec.taesdv.preview_decoders(device)
        self.previewer = Previewer(decoders, spec.settings, interrupt_types=(mm.InterruptProcessingException,),
                                   prepare=lambda x0: latent_spaces.x0_to_decoder(decoders[0], latent_format, x0))
        self.identity = _node_identity()
        self.sequence = 0
        self.skipped_for_backlog = 0

    def __call__(self, step: int, x0, total_steps: int):
        """Preview one step; returns ComfyUI's standard preview tuple (or None when skipped)."""
        try:
            return self._preview(step, x0, total_steps)
        finally:
            if step + 1 == total_steps and self.skipped_for_backlog:
                log.warning("TAESDV previews of this run: %d sent, %d skipped while the outgoing queue was backed up",
                            self.sequence, self.skipped_for_backlog)

    def _preview(self, step: int, x0, total_steps: int):
        backlog = outgoing_backlog(_server())
        if backlog > MAX_BACKLOG:
            if not self.skipped_for_backlog:
                log.warning("TAESDV previews skipped: %d messages wait to be sent (a client is not reading); "
                            "previews resume when the queue drains", backlog)
            self.skipped_for_backlog += 1
            return None
        clip = self.previewer.render(step, total_steps, x0)
        if clip is None:
            return None
        started = time.perf_counter()
        self.sequence += 1
        h, w = clip.frames.shape[-2:]
        fps = self.spec.settings.fps / clip.frame_step  # a clip of every 4th frame plays as long as the full one
        meta = {
            "protocol": PROTOCOL_VERSION, **self.identity, "step": step + 1, "total_steps": total_steps,
            "sequence": self.sequence, "frame_count": clip.frame_count, "fps": fps,
            "frame_step": clip.frame_step, "variant": clip.variant,
            "frame_width": int(w), "frame_height": int(h), "columns": clip.columns, "rows": clip.rows,
            "decode_ms": round(clip.decode_seconds * 1000, 1),
        }
        server = _server()
        server.send_sync(EVENT, {**meta, "image": "data:image/jpeg;base64," + base64.b64encode(clip.sheet_jpeg).decode()},
                         server.client_id)
        LATEST.put(self.identity["prompt_id"], self.identity["display_node_id"], clip.frames, fps,
                   step + 1, total_steps)
        still = clip.middle_frame() if server.client_id in SERVICE.clients else clip.sheet
        self.previewer.charge(time.perf_counter() - started)
        # ComfyUI scales previews to fit its --preview-size, upscaling small ones: cap at the image's own size
        return ("JPEG", still, min(comfy_args.preview_size, max(still.size)))


@dataclass(frozen=True)
class SettledCallback:
    """A sampler callback whose previews this pack has settled: the typed hand-over between its
    two ways in, so that a run never gets two previewers.

    - host_hooks wraps latent_preview.prepare_callback (the global switch, and every sampler
      node): for each sampler it serves it returns one of these, with `preview` the run's
      SamplerPreview, or None where starting one failed and ComfyUI's own previewer runs.
    - The TAESDV Latent Preview node's OUTER_SAMPLE wrapper (outer_sample_wrapper, a public
      hook) builds previews only around a callback that is not one of these.

    Called as ComfyUI calls a sampler callback: (step, x0, x, total_steps).
    """

    run: Callable[[int, Any, Any, int], None]
    preview: SamplerPreview | None

    def __call__(self, step: int, x0, x, total_steps: int) -> None:
        self.run(step, x0, x, total_steps)


def build_callback(model_patcher, steps: int, spec: PreviewSpec, x0_output_dict=None, inner=None) -> SettledCallback:
    """The sampler callback with TAESDV clips in place of ComfyUI's one-frame previews.

    inner: a callback someone else built (kept: it reports progress and fills outputs itself);
    None builds what latent_preview.prepare_callback builds. One progress update per step.
    """
    preview = SamplerPreview(spec, model_patcher.load_device, model_patcher.model.latent_format)
    pbar = comfy.utils.ProgressBar(steps)
    fallback = {"failed": False, "previewer": None}

    def own_preview(x0):
        """ComfyUI's own preview of a step, after a TAESDV preview failed (None where it has none)."""
        if fallback["previewer"] is None:
            import latent_preview

            fallback["previewer"] = latent_preview.get_previewer(model_patcher.load_device,
                                                                 model_patcher.model.latent_format) or False
        previewer = fallback["previewer"]
        return previewer.decode_latent_to_preview_image("JPEG", x0) if previewer else None

    def callback(step, x0, x, total_steps):
        if inner is not None:
            inner(step, x0, x, total_steps)
        elif x0_output_dict is not None:
            x0_output_dict["x0"] = x0
        mm.throw_exception_if_processing_interrupted()  # before spending time on a preview
        still = None
        try:
            if not fallback["failed"]:
                still = preview(step, x0, total_steps)
            elif inner is None:
                still = own_preview(x0)
        except mm.InterruptProcessingException:
            raise
        except Exception as e:  # a preview never fails the run: ComfyUI's own previews from here on
            if not fallback["failed"]:
                log.warning("TAESDV preview failed (%s: %s); using ComfyUI's previewer for the rest of this run",
                            type(e).__name__, e)
            fallback["failed"] = True
            still = None
        if inner is None or still is not None:
            pbar.update_absolute(step + 1, total_steps, still)

    return SettledCallback(callback, preview)


def outer_sample_wrapper(executor, *args, **kwargs):
    """OUTER_SAMPLE wrapper of the TAESDV Latent Preview node (ComfyUI's public sampling hook).

    When the sampler's callback is not already settled (a SettledCallback from host_hooks), wrap it.
    Positional arguments as CFGGuider.outer_sample: noise, latent_image, sampler, sigmas,
    denoise_mask, callback, disable_pbar, seed.
    """
    guider = executor.class_obj
    spec = guider.model_options.get("transformer_options", {}).get(SPEC_KEY)
    args = list(args)
    callback = args[5] if len(args) > 5 else kwargs.get("callback")
    if (spec is not None and spec.taesdv.serves(guider.model_patcher.model.latent_format)
            and not isinstance(callback, SettledCallback)):
        steps = max(1, len(args[3]) - 1) if len(args) > 3 else 1
        try:
            callback = build_callback(guider.model_patcher, steps, spec, inner=callback)
        except Exception as e:  # keep the sampler's own callback (ComfyUI's previews)
            log.warning("TAESDV previews unavailable for this run (%s); using ComfyUI's previewer", e)
            return executor(*args, **kwargs)
        if len(args) > 5:
            args[5] = callback
        else:
            kwargs["callback"] = callback
    return executor(*args, **kwargs)
