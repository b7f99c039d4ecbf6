"""The newest preview clip of a prompt over HTTP, as an animated WebP, for third-party clients.

ComfyUI sends other frontends and API scripts one still per previewed step; this route lets
them fetch the whole clip: GET /taesdv/preview/latest?prompt_id=ID[&node_id=N]. It is OFF by
default: start the server with TAESDV_PREVIEW_HTTP=1 to serve it. Anyone who can reach the
server's port can then read the preview clips of any prompt whose id they know (prompt ids are
random UUIDs, but ComfyUI shows them in /queue and /history to the same people), exactly as
they can already read its outputs through /view and /history. Clips are kept in memory only:
the newest clip of the newest 8 (prompt, node) pairs, as the preview-size frames.
"""
from __future__ import annotations

import asyncio
import io
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch
from aiohttp import web

from ..taesdv_core.media import save_animation

ENV_SWITCH = "TAESDV_PREVIEW_HTTP"
# At most this many clips are encoded at once; each in a worker thread, never on the server's event
# loop (a 33-frame clip takes the better part of a second, and every other request would wait).
MAX_CONCURRENT_ENCODES = 2


@dataclass
class Clip:
    """One preview clip: frames (T, h, w, 3) uint8 on the CPU, and its WebP once a fetch asked for it."""

    pixels: torch.Tensor
    fps: float
    step: int
    total_steps: int
    webp: Future | None = None  # of the encoded bytes: encoded once, shared by every fetch of this clip


def encode_webp(pixels: torch.Tensor, fps: float) -> bytes:
    buffer = io.BytesIO()
    save_animation(pixels.numpy(), fps, "webp", buffer)
    return buffer.getvalue()


class LatestClips:
    """The newest clip per (prompt_id, node_id), bounded; written by samplers, read by the route."""

    def __init__(self, limit: int = 8):
        self.enabled = os.environ.get(ENV_SWITCH, "").lower() in ("1", "true", "yes", "on")
        self.limit = limit
        self._clips: OrderedDict[tuple[str, str], Clip] = OrderedDict()
        self._lock = threading.Lock()  # samplers write from the prompt thread, the route reads from the loop
        self._encoder: ThreadPoolExecutor | None = None  # started by the first fetch

    def put(self, prompt_id: str, node_id: str, frames: torch.Tensor, fps: float, step: int, total_steps: int) -> None:
        """frames (T, 3, h, w) in [0, 1]; kept as uint8 (T, h, w, 3) on the CPU."""
        if not self.enabled:
            return
        pixels = frames.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
        with self._lock:
            key = (str(prompt_id), str(node_id))
            self._clips.pop(key, None)
            self._clips[key] = Clip(pixels, fps, step, total_steps)
            while len(self._clips) > self.limit:
                self._clips.popitem(last=False)

    def get(self, prompt_id: str, node_id: str | None = None) -> tuple[str, Clip] | None:
        with self._lock:
            for (p, n), clip in reversed(self._clips.items()):
                if p == prompt_id and (node_id is None or n == node_id):
                    return n, clip
        return None

    def webp(self, clip: Clip) -> Future:
        """The clip's animated WebP: the encode already started for it, else a new one in a worker."""
        with self._lock:
            if clip.webp is None:
                if self._encoder is None:
                    self._encoder = ThreadPoolExecutor(MAX_CONCURRENT_ENCODES, thread_name_prefix="taesdv-webp")
                clip.webp = self._encoder.submit(encode_webp, clip.pixels, clip.fps)
            return clip.webp


LATEST = LatestClips()


def register_latest_route(routes) -> None:
    @routes.get("/taesdv/preview/latest")
    async def latest(request):
        if not LATEST.enabled:
            return web.json_response({"error": f"serving preview clips over HTTP is off; start ComfyUI with "
                                               f"{ENV_SWITCH}=1 to turn it on"}, status=404)
        prompt_id = request.query.get("prompt_id", "")
        if not prompt_id or len(prompt_id) > 256:
            return web.json_response({"error": "give prompt_id (the id POST /prompt returned)"}, status=400)
        found = LATEST.get(prompt_id, request.query.get("node_id"))
        if found is None:
            return web.json_response({"error": f"no preview clip for prompt_id '{prompt_id}' (yet)"}, status=404)
        node_id, clip = found
        body = await asyncio.wrap_future(LATEST.webp(clip))
        return web.Response(body=body, content_type="image/webp",
                            headers={"X-TAESDV-Node-Id": node_id, "X-TAESDV-Step": f"{clip.step}/{clip.total_steps}",
                                     "X-TAESDV-Frames": str(clip.pixels.shape[0]), "Cache-Control": "no-store"})
