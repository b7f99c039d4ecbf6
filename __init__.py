"""ComfyUI-TAESDV: tiny temporal video decoding, streaming and animated previews for SD-family latents.

ComfyUI loads this folder as a custom node pack through the schema API (comfy_entrypoint). The
pack uses relative imports only: its `nodes` package must never shadow ComfyUI's own `nodes`
module. The model core in taesdv_core/ is plain PyTorch and needs none of this.
"""
WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import TAESDVExtension, activate

    activate()
    return TAESDVExtension()
