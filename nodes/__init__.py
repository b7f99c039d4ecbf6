"""Everything of the pack that touches ComfyUI: the nodes (thin classes over taesdv_core), the
device-managed model (managed_model), latent mappings (latent_spaces), live previews
(live_preview, preview_service) and the one wrapped host internal (host_hooks).

Imports run one way: nodes -> live_preview -> preview_service -> managed_model -> taesdv_core.
"""
from comfy_api.latest import ComfyExtension, io

from .compare import CompareDecoders
from .decode import TAESDVDecodeBatch
from .encode import TAESDVEncode
from .host_hooks import install_sampler_preview_hook
from .load import LoadTAESDV
from .preview import TAESDVLatentPreview
from .preview_service import register_routes
from .stream import TAESDVStreamingDecode
from .validation import install_prompt_check

NODES: list[type[io.ComfyNode]] = [LoadTAESDV, TAESDVDecodeBatch, TAESDVStreamingDecode, TAESDVEncode, TAESDVLatentPreview, CompareDecoders]


def activate() -> None:
    """Routes and the preview hook; idempotent (0.3.75 never calls on_load, newer hosts may)."""
    register_routes()
    install_sampler_preview_hook()
    install_prompt_check(NODES)


class TAESDVExtension(ComfyExtension):
    """The pack's extension: every node, and routes and hooks on load."""

    async def on_load(self) -> None:
        activate()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
