"""Server-wide state of animated previews: the global switch, extension clients, HTTP routes.

The global switch (ComfyUI settings dialog, or TAESDV_PREVIEW=1 in the environment at start)
previews every sampler whose latents a file in models/vae_approx can decode; the TAESDV Latent
Preview node does it per MODEL, with its own settings, and takes precedence.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass

import folder_paths
from aiohttp import web

from ..taesdv_core import load_taesdv
from ..taesdv_core.errors import CheckpointError
from ..taesdv_core.preview import PROTOCOL_VERSION, PreviewSettings
from .managed_model import ManagedAutoencoder
from .preview_http import register_latest_route

log = logging.getLogger("taesdv")

SPEC_KEY = "taesdv_preview"  # model_options["transformer_options"][SPEC_KEY] -> PreviewSpec


@dataclass
class PreviewSpec:
    """What previews a MODEL's samplers: which loaded decoder and which settings."""

    taesdv: ManagedAutoencoder
    settings: PreviewSettings

    def __deepcopy__(self, memo):
        return self  # ModelPatcher.clone() deep-copies model_options; the model must not be copied


class ExtensionClients:
    """Websocket client ids whose page runs this pack's extension (they play clips)."""

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


class PreviewService:
    def __init__(self):
        self.clients = ExtensionClients()
        self.enabled = os.environ.get("TAESDV_PREVIEW", "").lower() in ("1", "true", "yes", "on")
        self.settings = PreviewSettings()
        self._global_model: tuple[tuple, ManagedAutoencoder] | None = None
        self._warned_missing = False

    def spec_for(self, model_patcher) -> PreviewSpec | None:
        """The node's spec on this MODEL, else the global one when the switch is on, else None."""
        spec = model_patcher.model_options.get("transformer_options", {}).get(SPEC_KEY)
        if spec is not None or not self.enabled:
            return spec
        taesdv = self.global_model()
        return PreviewSpec(taesdv, self.settings) if taesdv is not None else None

    def global_model(self) -> ManagedAutoencoder | None:
        from .load import plausible_checkpoints

        names = plausible_checkpoints(folder_paths.get_filename_list("vae_approx"))
        if not names:
            if not self._warned_missing:
                log.warning("TAESDV previews are on but models/vae_approx has no taesdv.pth; previews skipped")
                self._warned_missing = True
            return None
        path = folder_paths.get_full_path("vae_approx", names[0])
        key = (path, os.path.getmtime(path))
        if self._global_model is None or self._global_model[0] != key:
            try:
                self._global_model = (key, ManagedAutoencoder(load_taesdv(path), name=names[0]))
            except CheckpointError as e:
                log.warning("TAESDV previews: %s", e)
                return None
        return self._global_model[1]

    def state(self) -> dict:
        s = self.settings
        return {"protocol": PROTOCOL_VERSION, "enabled": self.enabled, "max_size": s.max_size, "fps": s.fps,
                "budget": s.budget}

    def update(self, body: dict) -> dict:
        """Apply {"enabled", "max_size", "fps", "budget"} (each optional), checked."""
        s = self.settings
        enabled = body.get("enabled", self.enabled)
        max_size = body.get("max_size", s.max_size)
        fps = body.get("fps", s.fps)
        budget = body.get("budget", s.budget)
        if not isinstance(enabled, bool):
            raise ValueError("enabled must be true or false")
        if not isinstance(max_size, int) or not 32 <= max_size <= 2048:
            raise ValueError("max_size must be an integer from 32 to 2048 (pixels)")
        if not isinstance(fps, (int, float)) or not 1 <= fps <= 60:
            raise ValueError("fps must be from 1 to 60")
        if not isinstance(budget, (int, float)) or not 0.001 <= budget <= 1:
            raise ValueError("budget must be a fraction from 0.001 to 1")
        self.enabled = enabled
        self.settings = PreviewSettings(max_size=max_size, fps=float(fps), budget=float(budget), quality=s.quality)
        return self.state()


SERVICE = PreviewService()


def register_routes() -> None:
    from server import PromptServer

    routes = PromptServer.instance.routes
    if getattr(routes, "taesdv_registered", False):
        return
    routes.taesdv_registered = True
    register_latest_route(routes)

    @routes.get("/taesdv/preview/settings")
    async def get_settings(request):
        return web.json_response(SERVICE.state())

    @routes.post("/taesdv/preview/settings")
    async def post_settings(request):
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            return web.json_response(SERVICE.update(body))
        except ValueError as e:
            return web.json_response({"error": str(e)}, status=400)

    @routes.post("/taesdv/preview/client")
    async def post_client(request):
        """The extension announces its websocket client id: it plays clips, so no contact sheets."""
        try:
            body = await request.json()
            client_id = body.get("client_id") if isinstance(body, dict) else None
        except ValueError:
            client_id = None
        if not isinstance(client_id, str) or not 0 < len(client_id) <= 256:
            return web.json_response({"error": "client_id must be a non-empty string"}, status=400)
        SERVICE.clients.add(client_id)
        return web.json_response({"protocol": PROTOCOL_VERSION})
