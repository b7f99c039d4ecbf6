"""Compare Decoders: the same latents through two to four tiny decoders (and optionally the full
VAE's frames as the reference), side by side, with a table of speed, memory and quality."""
from __future__ import annotations

import comfy.model_management as mm
from comfy_api.latest import io

from ..taesdv_core import compare
from ..taesdv_core.errors import InputError
from .common import CATEGORY, TAESDVModel, latent_to_clips

class CompareDecoders(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TAESDVCompareDecoders",
            display_name="Compare Decoders",
            category=CATEGORY,
            description="Decodes the same latents with two to four loaded decoders (TAESDV, TAESD, TAEHV, TAE-192, ...) "
                        "and lays the clips side by side with their labels. The table gives ms per frame and peak "
                        "memory on this device, and PSNR, SSIM and a flicker index against the reference (the full "
                        "VAE's decode from VAE Decode, or the first decoder when none is given).",
            inputs=[
                io.Latent.Input("samples", tooltip="The latents to decode (frames as the batch, or 5-D video latents)."),
                TAESDVModel.Input("decoder_a", tooltip="From Load TAESDV (any tiny decoder file)."),
                TAESDVModel.Input("decoder_b", tooltip="A second decoder."),
                TAESDVModel.Input("decoder_c", optional=True, tooltip="Optional third decoder."),
                TAESDVModel.Input("decoder_d", optional=True, tooltip="Optional fourth decoder."),
                io.Image.Input("reference", optional=True,
                               tooltip="Frames to measure against, e.g. VAE Decode of the same latents with the full VAE."),
            ],
            outputs=[io.Image.Output("side_by_side", tooltip="The clips next to each other, labelled."),
                     io.String.Output("table", tooltip="Markdown table: ms/frame, peak memory, PSNR, SSIM, flicker.")],
        )

    @classmethod
    def execute(cls, samples: dict, decoder_a, decoder_b, decoder_c=None, decoder_d=None,
                reference=None) -> io.NodeOutput:
        chosen = [d for d in (decoder_a, decoder_b, decoder_c, decoder_d) if d is not None]

        def run(managed):
            def decode_clip(_latents):  # the first clip, each piece written into its panel as it comes
                latents = latent_to_clips(samples, managed.decoder, 0.0)[:1]
                return compare.stream_in_pieces(
                    managed.decoder, latents,
                    lambda piece, stream: managed.decode(piece, stream=stream).permute(0, 1, 4, 2, 3),  # NTCHW view
                    managed.load_device)
            return decode_clip

        labels = [f"{m.name} ({m.decoder.family})" for m in chosen]
        if len(set(labels)) < len(labels):
            labels = [f"{chr(65 + i)}: {label}" for i, label in enumerate(labels)]
        ref = None
        if reference is not None:
            if reference.ndim != 4 or reference.shape[-1] not in (3, 4):
                raise InputError(f"reference must be an IMAGE [frames, height, width, 3], got {tuple(reference.shape)}")
            ref = reference[..., :3].permute(0, 3, 1, 2).unsqueeze(0).float()
        # the side-by-side must fit beside what ComfyUI holds, as Decode's output must (ManagedAutoencoder)
        frames, rows = compare.compare([(label, run(m)) for label, m in zip(labels, chosen)], None, ref,
                                       chosen[0].load_device, free_bytes=mm.get_free_memory(mm.intermediate_device()))
        return io.NodeOutput(frames[0].permute(0, 2, 3, 1), compare.format_table(rows))  # the IMAGE layout: no copy
