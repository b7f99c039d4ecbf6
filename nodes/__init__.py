"""ComfyUI nodes of the pack: thin classes over taesdv_core."""
from comfy_api.latest import ComfyExtension, io

from .decode import TAESDVDecodeBatch
from .encode import TAESDVEncode
from .host_hooks import install_sampler_preview_hook
from .load import LoadTAESDV
from .preview import TAESDVLatentPreview
from .preview_service import register_routes
from .stream import TAESDVStreamingDecode
from .validation import install_prompt_check

NODES: list[type[io.ComfyNode]] = [LoadTAESDV, TAESDVDecodeBatch, TAESDVStreamingDecode, TAESDVEncode, TAESDVLatentPreview]


def activate() -> None:
    """Routes and the preview hook; idempotent (0.3.75 never calls on_load, newer hosts may)."""
    register_routes()
    install_sampler_preview_hook()
    install_prompt_check()


class TAESDVExtension(ComfyExtension):
    async def on_load(self) -> None:
        activate()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
