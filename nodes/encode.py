"""TAESDV Encode: images to SD latents, ready for a sampler."""
from __future__ import annotations

from comfy_api.latest import io

from .common import CATEGORY, TAESDVModel, chunk_input, clips_to_latent, image_to_frames, latent_scale_input


class TAESDVEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TAESDVEncode",
            display_name="TAESDV Encode",
            category=CATEGORY,
            description="Encodes images (the frames of a clip) into SD latents with TAESDV's encoder, each frame on "
                        "its own. Sizes are cropped (centred) to multiples of 8, as VAE Encode does.",
            inputs=[
                TAESDVModel.Input("taesdv", tooltip="From Load TAESDV (needs the encoder half)."),
                io.Image.Input("pixels", tooltip="Frames [frames, height, width, 3] in [0, 1]."),
                chunk_input(),
                latent_scale_input(),
            ],
            outputs=[io.Latent.Output("samples", tooltip="Unscaled SD latents, frames as the batch, ready for a sampler.")],
        )

    @classmethod
    def execute(cls, taesdv, pixels, chunk_frames: int, latent_scale: float) -> io.NodeOutput:
        latents = taesdv.encode(image_to_frames(pixels), chunk_frames or None)
        return io.NodeOutput(clips_to_latent(latents, taesdv.encoder, latent_scale))
