"""ComfyUI nodes of the pack: thin classes over taesdv_core."""
from comfy_api.latest import ComfyExtension, io

from .decode import TAESDVDecodeBatch
from .encode import TAESDVEncode
from .load import LoadTAESDV
from .stream import TAESDVStreamingDecode

NODES: list[type[io.ComfyNode]] = [LoadTAESDV, TAESDVDecodeBatch, TAESDVStreamingDecode, TAESDVEncode]


class TAESDVExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
