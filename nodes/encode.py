"""TAESDV Encode: images to latents with any loaded tiny encoder, ready for a sampler."""
from __future__ import annotations

from comfy_api.latest import io

from .validation import check_inputs
from .common import CATEGORY, TAESDVModel, chunk_input, clips_to_latent, image_to_frames, latent_scale_input


class TAESDVEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TAESDVEncode",
            display_name="TAESDV Encode",
            category=CATEGORY,
            description="Encodes images (the frames of a clip) into latents with the loaded encoder (TAESDV, TAEHV, image "
                        "TAESD). Sizes are cropped (centred) to multiples of the encoder's scale: 8 as VAE Encode "
                        "does, 16 for taef2 (FLUX.2's LATENT folds its latents 2x2 into 128 channels), 16 or 32 for "
                        "patched TAEHV encoders (Wan 2.2 5B, HunyuanVideo 1.5, LTX-2).",
            inputs=[
                TAESDVModel.Input("taesdv", tooltip="From Load TAESDV (needs the encoder half)."),
                io.Image.Input("pixels", tooltip="Frames [frames, height, width, 3] in [0, 1]."),
                chunk_input(),
                latent_scale_input(),
            ],
            outputs=[io.Latent.Output("samples", tooltip="The VAE's latents as a LATENT (frames as the batch for image-latent "
                                                          "models, [1, C, T, h, w] for video ones), ready for a sampler.")],
        )

    @classmethod
    def execute(cls, taesdv, pixels, chunk_frames: int, latent_scale: float) -> io.NodeOutput:
        check_inputs(cls, taesdv=taesdv, chunk_frames=chunk_frames, latent_scale=latent_scale)
        encoder = taesdv.encoder
        latents = taesdv.encode(image_to_frames(pixels, encoder), chunk_frames or None)
        return io.NodeOutput(clips_to_latent(latents, encoder, latent_scale))
