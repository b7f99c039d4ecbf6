"""TAESDV Latent Preview: animated whole-clip previews, with any loaded tiny decoder, for every
sampler downstream of a MODEL."""
from __future__ import annotations

import comfy.patcher_extension
from comfy_api.latest import io

from ..taesdv_core.preview import PreviewSettings
from .validation import check_inputs
from .common import CATEGORY, TAESDVModel
from .live_preview import outer_sample_wrapper
from .preview_service import SPEC_KEY, PreviewSpec


class TAESDVLatentPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TAESDVLatentPreview",
            display_name="TAESDV Latent Preview",
            category=CATEGORY,
            description="Every sampler using this MODEL plays the whole clip as it is now, decoded with the loaded tiny "
                        "decoder at each previewed step: smooth and coherent, never mixing steps. Works for prompts sent "
                        "through the API too. Samplers whose latents the decoder was not made for keep ComfyUI's own "
                        "preview.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model whose latents the loaded decoder was made for (SD1.x, "
                                                "SVD, AnimateDiff, Wan, HunyuanVideo, ...)."),
                TAESDVModel.Input("taesdv", tooltip="From Load TAESDV."),
                io.Int.Input("max_size", default=256, min=32, max=2048, step=8,
                             tooltip="Longest side of preview frames in pixels. Larger latents are decoded at this "
                                     "size, which is cheaper than decoding at full size."),
                io.Float.Input("fps", default=8.0, min=1.0, max=60.0, step=0.5, tooltip="Playback rate of the preview."),
                io.Float.Input("budget_percent", default=5.0, min=0.1, max=100.0, step=0.1,
                               tooltip="Previews may add at most this much to the sampler's time; steps are skipped "
                                       "when a preview would cost more. 100 previews every step."),
            ],
            outputs=[io.Model.Output(tooltip="The same model, previewing with the loaded tiny decoder.")],
        )

    @classmethod
    def execute(cls, model, taesdv, max_size: int, fps: float, budget_percent: float) -> io.NodeOutput:
        check_inputs(cls, model=model, taesdv=taesdv, max_size=max_size, fps=fps, budget_percent=budget_percent)
        taesdv.require("decoder")  # an encoder-only file cannot preview: say so here, not mid-sampling
        model = model.clone()
        settings = PreviewSettings(max_size=max_size, fps=fps, budget=budget_percent / 100.0)
        model.model_options.setdefault("transformer_options", {})[SPEC_KEY] = PreviewSpec(taesdv, settings)
        model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, "taesdv_preview", outer_sample_wrapper)
        return io.NodeOutput(model)
