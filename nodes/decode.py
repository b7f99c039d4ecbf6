"""TAESDV Decode Batch: whole clips of latents to images with any loaded tiny decoder, in
memory-bounded chunks (CV-VAE keyframes filled in on request)."""
from __future__ import annotations

from comfy_api.latest import io

from ..taesdv_core.errors import InputError
from ..taesdv_core.keyframes import check_keyframe_decoder, expand_keyframes, expanded_length
from .validation import check_inputs
from .common import CATEGORY, TAESDVModel, chunk_input, frames_to_image, latent_scale_input, latent_to_clips


CV_VAE_MODES = ("off", "repeat", "blend")


class TAESDVDecodeBatch(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TAESDVDecode",
            display_name="TAESDV Decode Batch",
            category=CATEGORY,
            description="Decodes a video latent with the loaded tiny decoder (TAESDV, TAEHV, image TAESD, TAE-192): "
                        "smooth, temporally coherent frames at a fraction of the full VAE's cost. Frames as the batch "
                        "(AnimateDiff, AnimateLCM, SVD) or [B, C, T, h, w] video latents. TAESDV and image TAESD give "
                        "one frame per latent frame, TAEHV 4T-3 (LTX-2: 8T-7).",
            inputs=[
                TAESDVModel.Input("taesdv", tooltip="From Load TAESDV."),
                io.Latent.Input("samples", tooltip="Latents of the model the loaded decoder was made for: the frames of "
                                                   "one clip as the batch, or 5-D video latents."),
                chunk_input(),
                latent_scale_input(),
                io.Combo.Input("cv_vae_frames", options=list(CV_VAE_MODES), default="off", optional=True,
                               tooltip="CV-VAE latents (SD latent space, 4x time): each latent frame is the keyframe of "
                                       "4 frames. off: one frame per latent frame (the keyframes); repeat: each keyframe "
                                       "held for its 4 frames; blend: cross-fades between keyframes (1 + 4(T-1) frames). "
                                       "Filled frames are not decoded motion: they repeat or mix keyframes."),
            ],
            outputs=[io.Image.Output("images", tooltip="All frames, [frames, height, width, 3] in [0, 1].")],
        )

    @classmethod
    def execute(cls, taesdv, samples: dict, chunk_frames: int, latent_scale: float,
                cv_vae_frames: str = "off") -> io.NodeOutput:
        check_inputs(cls, taesdv=taesdv, chunk_frames=chunk_frames, latent_scale=latent_scale)
        if cv_vae_frames not in CV_VAE_MODES:
            raise InputError(f"cv_vae_frames '{cv_vae_frames}' is not one of {', '.join(CV_VAE_MODES)}")
        check_keyframe_decoder(taesdv.decoder, "cv_vae_frames", cv_vae_frames)
        clips = latent_to_clips(samples, taesdv.decoder, latent_scale)
        if cv_vae_frames == "off":
            return io.NodeOutput(frames_to_image(taesdv.decode(clips, chunk_frames or None)))
        # the keyframes and the filled clip are held together while it is filled: both in the memory check
        keyframes = taesdv.decode(clips, chunk_frames or None, filled_frames=expanded_length(clips.shape[1]),
                                  filled_by=f"cv_vae_frames {cv_vae_frames}")  # (N, T, H, W, 3)
        return io.NodeOutput(frames_to_image(expand_keyframes(keyframes, cv_vae_frames)))
