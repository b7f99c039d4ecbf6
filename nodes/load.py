"""Load TAESDV: a checkpoint from models/vae_approx, handed to ComfyUI's device manager."""
from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from ..taesdv_core import OFFICIAL_URL, load_taesdv
from ..taesdv_core.errors import CheckpointError, InputError
from .managed_model import DTYPE_CHOICES, ManagedAutoencoder

from .common import CATEGORY, TAESDVModel

# vae_approx also holds the image TAESDs and the TAEHV family; they are not offered here.
OTHER_TINY_AUTOENCODERS = ("taesd_", "taesdxl_", "taesd3_", "taef1_", "taef2", "taehv", "taew", "lighttae", "taeltx", "taehy", "taecog", "taeos", "taemochi")
CHECKPOINT_EXTENSIONS = (".pth", ".pt", ".safetensors", ".sft")


def plausible_checkpoints(names: list[str]) -> list[str]:
    """Files of vae_approx that may be TAESDV, names containing 'taesdv' first."""
    keep = [n for n in names if n.lower().endswith(CHECKPOINT_EXTENSIONS)
            and not os.path.basename(n).lower().startswith(OTHER_TINY_AUTOENCODERS)]
    return sorted(keep, key=lambda n: ("taesdv" not in n.lower(), n.lower()))


class LoadTAESDV(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TAESDVLoader",
            display_name="Load TAESDV",
            category=CATEGORY,
            description="Loads TAESDV (Tiny AutoEncoder for SD Videos, 2.8M parameters) from models/vae_approx. "
                        f"Get taesdv.pth through ComfyUI-Manager's model list or from {OFFICIAL_URL}.",
            inputs=[
                io.Combo.Input("model_name", options=plausible_checkpoints(folder_paths.get_filename_list("vae_approx")),
                               tooltip="A TAESDV checkpoint in models/vae_approx (.pth or .safetensors). "
                                       "Image TAESD and TAEHV files are not listed: they are other models."),
                io.Combo.Input("dtype", options=list(DTYPE_CHOICES), default="auto",
                               tooltip="Precision of the weights. auto = what ComfyUI picks for VAEs on this device "
                                       "(fp16/bf16 on GPUs, fp32 on CPU)."),
            ],
            outputs=[TAESDVModel.Output("taesdv", tooltip="The TAESDV model for the decode, encode and preview nodes.")],
        )

    @classmethod
    def validate_inputs(cls, model_name: str) -> bool | str:
        # ComfyUI 0.3.75 does not check schema-API combo values itself, and it reports a failed
        # validate_inputs once per argument: so only model_name here, dtype in execute.
        names = folder_paths.get_filename_list("vae_approx")
        if model_name not in names:
            present = plausible_checkpoints(names)
            there = f"files there: {', '.join(present[:8])}" if present else "there are no checkpoints there"
            return (f"'{model_name}' is not in models/vae_approx ({there}); put taesdv.pth there "
                    f"({OFFICIAL_URL}) and press R to refresh")
        return True

    @classmethod
    def execute(cls, model_name: str, dtype: str) -> io.NodeOutput:
        if dtype not in DTYPE_CHOICES:
            raise InputError(f"dtype '{dtype}' is not one of {', '.join(DTYPE_CHOICES)}")
        path = folder_paths.get_full_path("vae_approx", model_name)
        if path is None:
            raise CheckpointError(f"model_name '{model_name}' was not found in models/vae_approx")
        return io.NodeOutput(ManagedAutoencoder(load_taesdv(path), dtype, name=model_name))
