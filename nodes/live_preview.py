"""Animated TAESDV previews on the sampler node: the ComfyUI side of taesdv_core.preview.

Per sampling run, a `SamplerPreview` decodes each step's whole x0 clip and sends it as one JSON
event (protocol in README, "Preview protocol"), and hands a contact sheet to ComfyUI's normal
preview path for clients without this pack's extension.
"""
from __future__ import annotations

import base64
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import comfy.model_management as mm
import comfy.utils
from comfy.cli_args import args as comfy_args

from ..taesdv_core.model import LATENT_CHANNELS, SD_LATENT_SCALE
from ..taesdv_core.preview import PROTOCOL_VERSION, Previewer, PreviewSettings

log = logging.getLogger("taesdv")

EVENT = "taesdv.preview"
SPEC_KEY = "taesdv_preview"  # model_options["transformer_options"][SPEC_KEY] -> PreviewSpec


def serves(latent_format) -> bool:
    """True for SD-family latents (4 channels, SD VAE scale 0.18215: SD1.x, SD2.x, SVD, AnimateDiff)."""
    return (getattr(latent_format, "latent_channels", None) == LATENT_CHANNELS
            and abs(getattr(latent_format, "scale_factor", 0) - SD_LATENT_SCALE) < 1e-6)


@dataclass
class PreviewSpec:
    """What the TAESDV Latent Preview node attaches to a MODEL: which TAESDV and which settings."""

    taesdv: object  # ManagedTAESDV
    settings: PreviewSettings

    def __deepcopy__(self, memo):
        return self  # ModelPatcher.clone() deep-copies model_options; the model must not be copied


class ExtensionClients:
    """Websocket client ids whose page runs this pack's extension (they get clips, not contact sheets)."""

    def __init__(self, limit: int = 256):
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, client_id: str) -> None:
        self._ids.pop(client_id, None)
        self._ids[client_id] = None
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)

    def __contains__(self, client_id) -> bool:
        return client_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)


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

    def __init__(self, spec: PreviewSpec, device, clients: ExtensionClients):
        self.spec = spec
        self.clients = clients
        self.previewer = Previewer(spec.taesdv.preview_decoder(device), spec.settings,
                                   interrupt_types=(mm.InterruptProcessingException,))
        self.identity = _node_identity()
        self.sequence = 0

    def __call__(self, step: int, x0, total_steps: int):
        """Preview one step; returns ComfyUI's standard preview tuple for clients without the extension."""
        clip = self.previewer.render(step, total_steps, x0)
        if clip is None:
            return None
        started = time.perf_counter()
        self.sequence += 1
        h, w = clip.frames.shape[-2:]
        meta = {
            "protocol": PROTOCOL_VERSION, **self.identity, "step": step + 1, "total_steps": total_steps,
            "sequence": self.sequence, "frame_count": clip.frame_count, "fps": self.spec.settings.fps,
            "frame_width": int(w), "frame_height": int(h), "columns": clip.columns, "rows": clip.rows,
            "decode_ms": round(clip.decode_seconds * 1000, 1),
        }
        server = _server()
        server.send_sync(EVENT, {**meta, "image": "data:image/jpeg;base64," + base64.b64encode(clip.sheet_jpeg).decode()},
                         server.client_id)
        self.previewer.charge(time.perf_counter() - started)
        if server.client_id in self.clients:
            return None
        # ComfyUI scales previews to fit its --preview-size, upscaling small ones: cap at the sheet's own size
        return ("JPEG", clip.sheet, min(comfy_args.preview_size, max(clip.sheet.size)))


def sampler_callback(model_patcher, steps: int, x0_output_dict, spec: PreviewSpec, clients: ExtensionClients):
    """What latent_preview.prepare_callback builds, with TAESDV clips in place of one-frame previews."""
    preview = SamplerPreview(spec, model_patcher.load_device, clients)
    pbar = comfy.utils.ProgressBar(steps)

    def callback(step, x0, x, total_steps):
        if x0_output_dict is not None:
            x0_output_dict["x0"] = x0
        pbar.update_absolute(step + 1, total_steps, None)  # progress first: it also raises a pending interrupt
        standard = preview(step, x0, total_steps)
        if standard is not None:
            pbar.update_absolute(step + 1, total_steps, standard)

    callback.taesdv_preview = preview
    return callback


def wrap_callback(original, model_patcher, spec: PreviewSpec, clients: ExtensionClients):
    """TAESDV clips added to a callback that someone else built (progress and outputs stay theirs)."""
    preview = SamplerPreview(spec, model_patcher.load_device, clients)

    def callback(step, x0, x, total_steps):
        if original is not None:
            original(step, x0, x, total_steps)
        standard = preview(step, x0, total_steps)
        if standard is not None:
            comfy.utils.ProgressBar(total_steps).update_absolute(step + 1, total_steps, standard)

    callback.taesdv_preview = preview
    return callback


def outer_sample_wrapper(executor, *args, **kwargs):
    """OUTER_SAMPLE wrapper of the TAESDV Latent Preview node (ComfyUI's public sampling hook).

    When the sampler's callback is not already a TAESDV one (built by host_hooks), wrap it.
    Positional arguments as CFGGuider.outer_sample: noise, latent_image, sampler, sigmas,
    denoise_mask, callback, disable_pbar, seed.
    """
    from .preview_service import SERVICE

    guider = executor.class_obj
    spec = guider.model_options.get("transformer_options", {}).get(SPEC_KEY)
    args = list(args)
    callback = args[5] if len(args) > 5 else kwargs.get("callback")
    if spec is not None and serves(guider.model_patcher.model.latent_format) and not hasattr(callback, "taesdv_preview"):
        callback = wrap_callback(callback, guider.model_patcher, spec, SERVICE.clients)
        if len(args) > 5:
            args[5] = callback
        else:
            kwargs["callback"] = callback
    return executor(*args, **kwargs)
