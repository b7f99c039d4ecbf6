"""Test-only nodes (never shipped): inputs the real graph needs where no model weights exist."""
import torch
from comfy_api.latest import ComfyExtension, io


class TestLatentClip(io.ComfyNode):
    """A deterministic random SD latent clip, frames as the batch (unscaled, like any LATENT)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TAESDVTest_LatentClip", category="testing",
            inputs=[io.Int.Input("frames", default=8, min=0, max=4096), io.Int.Input("height", default=32, max=8192),
                    io.Int.Input("width", default=32, max=8192), io.Int.Input("channels", default=4),
                    io.Int.Input("seed", default=0), io.Int.Input("start", default=0), io.Int.Input("count", default=-1),
                    io.Boolean.Input("video_5d", default=False), io.Combo.Input("fill", options=["random", "nan"], default="random")],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, frames, height, width, channels, seed, start, count, video_5d, fill):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(frames, channels, height, width, generator=g) / 0.18215
        if fill == "nan":
            x[0, 0, 0, 0] = float("nan")
        x = x[start:] if count < 0 else x[start:start + count]
        if video_5d:
            x = x.movedim(0, 1).unsqueeze(0)
        return io.NodeOutput({"samples": x})


class TestLatentStats(io.ComfyNode):
    """Saves a LATENT's tensor to the output folder as .safetensors (for exact comparisons)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TAESDVTest_SaveTensor", category="testing", is_output_node=True,
                         inputs=[io.Latent.Input("samples", optional=True), io.Image.Input("images", optional=True),
                                 io.String.Input("name", default="tensor")],
                         outputs=[])

    @classmethod
    def execute(cls, name, samples=None, images=None):
        import os
        import folder_paths
        from safetensors.torch import save_file

        tensors = {}
        if samples is not None:
            tensors["samples"] = samples["samples"].contiguous()
        if images is not None:
            tensors["images"] = images.contiguous()
        save_file(tensors, os.path.join(folder_paths.get_output_directory(), f"{name}.safetensors"))
        return io.NodeOutput()


class TestNodes(ComfyExtension):
    async def get_node_list(self):
        return [TestLatentClip, TestLatentStats]


async def comfy_entrypoint():
    return TestNodes()
