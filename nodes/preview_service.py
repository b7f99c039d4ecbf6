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

from ..taesdv_core.preview import PROTOCOL_VERSION, PreviewSettings
from .managed_model import ManagedAutoencoder
from .preview_http import register_latest_route
from .validation import check_bool, check_number

log = logging.getLogger("taesdv")

SPEC_KEY = "taesdv_preview"  # model_options["transformer_options"][SPEC_KEY] -> PreviewSpec


# The per-prompt "Live preview method" (frontends 1.36+; core applies it to that run from 0.33 on)
# under which the global switch serves: the choice left to the server ("default", or no choice on
# older hosts and API clients), or tiny-decoder previews asked for. "none" (no previews) and
# "latent2rgb" are the user's explicit choice for that prompt, and core's previewer follows it.
GLOBAL_SWITCH_SERVES = (None, "default", "auto", "taesd")


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
        # file identity (path, size, mtime_ns) -> the loaded model, or None: it failed to load (the
        # reason was logged once) or serves no latents asked for so far; re-read only when it changes
        self._loaded: dict[tuple, ManagedAutoencoder | None] = {}
        self._warned_missing = False

    def spec_for(self, model_patcher, preview_method: str | None = None) -> PreviewSpec | None:
        """The node's spec on this MODEL (a TAESDV Latent Preview node in the graph previews
        whatever the prompt's preview method), else the global one when the switch is on and the
        prompt's preview method leaves previews to it (GLOBAL_SWITCH_SERVES), else None."""
        spec = model_patcher.model_options.get("transformer_options", {}).get(SPEC_KEY)
        if spec is not None or not self.enabled or preview_method not in GLOBAL_SWITCH_SERVES:
            return spec
        taesdv = self.global_model(model_patcher.model.latent_format)
        return PreviewSpec(taesdv, self.settings) if taesdv is not None else None

    def global_model(self, latent_format) -> ManagedAutoencoder | None:
        """The first loadable file of models/vae_approx whose model serves `latent_format`.

        A file that fails to load is remembered by its identity (path, size, mtime) and skipped
        until it changes; the next file that fits is used instead.
        """
        from .load import load_managed, plausible_checkpoints

        names = plausible_checkpoints(folder_paths.get_filename_list("vae_approx"))
        identities = []
        for name in names:
            path = folder_paths.get_full_path("vae_approx", name)
            try:
                st = os.stat(path)
            except (OSError, TypeError):
                continue
            key = (path, st.st_size, st.st_mtime_ns)
            identities.append(key)
            if key not in self._loaded:
                try:
                    self._loaded[key] = load_managed(path, name=name)
                except Exception as e:  # whatever one odd file raises, the other files still serve
                    log.warning("TAESDV previews: skipping %s: %s: %s", name, type(e).__name__, e)
                    self._loaded[key] = None
            taesdv = self._loaded[key]
            if taesdv is not None and taesdv.serves(latent_format):
                break
        else:
            taesdv = None
        for key in [k for k in self._loaded if k not in identities]:  # files replaced or removed
            del self._loaded[key]
        if taesdv is None and not self._warned_missing:
            log.warning("TAESDV previews are on but no file in models/vae_approx decodes these latents (%s); "
                        "ComfyUI's own previews are used", type(latent_format).__name__)
            self._warned_missing = True
        return taesdv

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
        enabled = check_bool("enabled", enabled)
        max_size = check_number("max_size", max_size, 32, 2048, integer=True)  # pixels
        fps = check_number("fps", fps, 1, 60)
        budget = check_number("budget", budget, 0.001, 1)  # a fraction of the sampler's time
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
        except RecursionError:  # a deeply nested body: refused, not a server error
            return web.json_response({"error": "the JSON body is nested too deeply"}, status=400)
        except ValueError as e:  # InputError included
            return web.json_response({"error": str(e)}, status=400)

    @routes.post("/taesdv/preview/client")
    async def post_client(request):
        """The extension announces its websocket client id: it plays clips, so no contact sheets."""
        try:
            body = await request.json()
        except RecursionError:
            return web.json_response({"error": "the JSON body is nested too deeply"}, status=400)
        except ValueError:
            return web.json_response({"error": "expected a JSON object {\"client_id\": ...}"}, status=400)
        client_id = body.get("client_id") if isinstance(body, dict) else None
        if not isinstance(client_id, str) or not client_id:
            return web.json_response({"error": "client_id must be a non-empty string"}, status=400)
        if len(client_id) > 256:
            return web.json_response({"error": f"client_id is {len(client_id)} characters long; at most 256"}, status=400)
        SERVICE.clients.add(client_id)
        return web.json_response({"protocol": PROTOCOL_VERSION})
