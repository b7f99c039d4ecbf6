"""Server-wide state of animated previews: the global switch, extension clients, HTTP routes.

The global switch (ComfyUI settings dialog, or TAESDV_PREVIEW=1 in the environment at start)
previews every SD-family sampler with the first TAESDV checkpoint in models/vae_approx; the
TAESDV Latent Preview node does it per MODEL, with its own settings, and takes precedence.
"""
from __future__ import annotations

import logging
import os

import folder_paths
from aiohttp import web

from ..taesdv_core import CheckpointError, load_taesdv
from ..taesdv_core.comfy_adapter import ManagedTAESDV
from ..taesdv_core.preview import PROTOCOL_VERSION, PreviewSettings
from .live_preview import SPEC_KEY, ExtensionClients, PreviewSpec

log = logging.getLogger("taesdv")


class PreviewService:
    def __init__(self):
        self.clients = ExtensionClients()
        self.enabled = os.environ.get("TAESDV_PREVIEW", "").lower() in ("1", "true", "yes", "on")
        self.settings = PreviewSettings()
        self._global_model: tuple[tuple, ManagedTAESDV] | None = None
        self._warned_missing = False

    def spec_for(self, model_patcher) -> PreviewSpec | None:
        """The node's spec on this MODEL, else the global one when the switch is on, else None."""
        spec = model_patcher.model_options.get("transformer_options", {}).get(SPEC_KEY)
        if spec is not None or not self.enabled:
            return spec
        taesdv = self.global_model()
        return PreviewSpec(taesdv, self.settings) if taesdv is not None else None

    def global_model(self) -> ManagedTAESDV | None:
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
                self._global_model = (key, ManagedTAESDV(load_taesdv(path), name=names[0]))
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
