"""TAESDV Decode Batch: whole clips of SD latents to images, in memory-bounded chunks."""
from __future__ import annotations

from comfy_api.latest import io

from .common import CATEGORY, TAESDVModel, chunk_input, frames_to_image, latent_scale_input, latent_to_clips


class TAESDVDecodeBatch(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TAESDVDecode",
            display_name="TAESDV Decode Batch",
            category=CATEGORY,
            description="Decodes a video latent with TAESDV: smooth, temporally coherent frames at a fraction of the "
                        "full VAE's cost. Frames as the batch (AnimateDiff, AnimateLCM, SVD) or [B, 4, T, h, w] video "
                        "latents. One latent frame gives one image frame.",
            inputs=[
                TAESDVModel.Input("taesdv", tooltip="From Load TAESDV."),
                io.Latent.Input("samples", tooltip="SD-family latents (4 channels): the frames of one clip as the batch, "
                                                   "or 5-D video latents."),
                chunk_input(),
                latent_scale_input(),
            ],
            outputs=[io.Image.Output("images", tooltip="All frames, [frames, height, width, 3] in [0, 1].")],
        )

    @classmethod
    def execute(cls, taesdv, samples: dict, chunk_frames: int, latent_scale: float) -> io.NodeOutput:
        clips = latent_to_clips(samples, taesdv.decoder, latent_scale)
        frames = taesdv.decode(clips, chunk_frames or None)
        return io.NodeOutput(frames_to_image(frames))
