"""Load TAESDV: a checkpoint from models/vae_approx, handed to ComfyUI's device manager."""
from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from ..taesdv_core.checkpoint import file_fingerprint
from ..taesdv_core.families import FAMILIES, family_of_file_name, models_of, where_to_get
from ..taesdv_core.loading import load_autoencoder
from ..taesdv_core.errors import CheckpointError, InputError
from .managed_model import DTYPE_CHOICES, ManagedAutoencoder

from .common import CATEGORY, TAESDVModel
from .stream import STREAM_STORE
from .validation import check_inputs

CHECKPOINT_EXTENSIONS = (".pth", ".pt", ".safetensors", ".sft")


def plausible_checkpoints(names: list[str]) -> list[str]:
    """Checkpoint files of vae_approx (every tiny-autoencoder family loads), those named as the
    first family's files (taesdv) first."""
    keep = [n for n in names if n.lower().endswith(CHECKPOINT_EXTENSIONS)]
    first = lambda n: (family_of_file_name(os.path.basename(n)) or (None,))[0] is FAMILIES[0]
    return sorted(keep, key=lambda n: (not first(n), n.lower()))


def families_text() -> str:
    """The families a file may be, with the models whose latents each decodes (from their records)."""
    return "; ".join(f"{family.name} ({models_of(family)})" for family in FAMILIES)


class LoadTAESDV(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TAESDVLoader",
            display_name="Load TAESDV",
            category=CATEGORY,
            description="Loads a tiny autoencoder from models/vae_approx, recognised by its tensors: "
                        f"{families_text()}. Get taesdv.pth from {where_to_get('taesdv.pth')}.",
            inputs=[
                io.Combo.Input("model_name", options=plausible_checkpoints(folder_paths.get_filename_list("vae_approx")),
                               tooltip="A tiny-autoencoder checkpoint in models/vae_approx (.pth or .safetensors); "
                                       "the family is read from its tensors."),
                io.Combo.Input("dtype", options=list(DTYPE_CHOICES), default="auto",
                               tooltip="Precision of the weights and compute; the IMAGE is float32 in [0, 1] either way. "
                                       "auto = what ComfyUI picks for VAEs on GPUs (fp16/bf16); on CPUs with native "
                                       "bf16 (AMX or AVX512-BF16) bf16, 2-3x as fast as fp32 and ~47 dB from its "
                                       "frames; fp32 on other CPUs, where bf16 is emulated and slow. fp32 is exact, "
                                       "tf32 lets CUDA convs use TF32."),
            ],
            outputs=[TAESDVModel.Output("taesdv", tooltip="The loaded tiny autoencoder for the decode, encode and preview "
                                                          "nodes.")],
        )

    @classmethod
    def validate_inputs(cls, model_name: str) -> bool | str:
        # The host reports a failed validate_inputs once per argument it takes: so only model_name
        # here (with the files that are there); dtype is refused in execute, where a host has not
        # checked the combo value already.
        names = folder_paths.get_filename_list("vae_approx")
        if model_name not in names:
            present = plausible_checkpoints(names)
            there = f"files there: {', '.join(present[:8])}" if present else "there are no checkpoints there"
            if not isinstance(model_name, str):
                return f"model_name must be a file name in models/vae_approx, got {model_name!r} ({there})"
            return (f"'{model_name}' is not in models/vae_approx ({there}); put {model_name} there "
                    f"({where_to_get(model_name)}) and press R to refresh")
        return True

    @classmethod
    def fingerprint_inputs(cls, model_name: str, dtype: str) -> str:
        """The file as it is now (size, mtime, inode, a hash of small files): a replaced file
        changes it, so ComfyUI runs the loader again instead of reusing the old weights."""
        path = folder_paths.get_full_path("vae_approx", model_name) if isinstance(model_name, str) else None
        return file_fingerprint(path) if path else "missing"

    @classmethod
    def execute(cls, model_name: str, dtype: str) -> io.NodeOutput:
        check_inputs(cls, model_name=model_name, dtype=dtype)
        if dtype not in DTYPE_CHOICES:
            raise InputError(f"dtype '{dtype}' is not one of {', '.join(DTYPE_CHOICES)}")
        path = folder_paths.get_full_path("vae_approx", model_name)
        if path is None:
            raise CheckpointError(f"model_name '{model_name}' was not found in models/vae_approx")
        return io.NodeOutput(load_managed(path, dtype, model_name))


def weights_identity(path: str) -> str:
    """What streams are tied to: the content hash of a small file (a touched file keeps its streams),
    else its whole fingerprint."""
    fingerprint = file_fingerprint(path)
    parts = fingerprint.split(":")
    return "blake2b:" + parts[4] if len(parts) == 5 else fingerprint


def load_managed(path: str, dtype: str = "auto", name: str | None = None) -> ManagedAutoencoder:
    """A checkpoint file as a ManagedAutoencoder whose streams live in the extension's STREAM_STORE."""
    weights = weights_identity(path)
    return ManagedAutoencoder(load_autoencoder(path), dtype, name=name or os.path.basename(path),
                              streams=STREAM_STORE, weights_id=weights)
