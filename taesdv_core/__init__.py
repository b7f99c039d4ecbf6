"""The model core: plain PyTorch, no ComfyUI import anywhere (the ComfyUI side is nodes/).

    from taesdv_core import load_taesdv, decode, encode, DecodeStream
    model = load_taesdv("taesdv.pth", dtype="fp16", device="cuda")
    frames = decode(model.decoder, latents)          # NTCHW model-space latents -> NTCHW [0, 1]
    stream = DecodeStream(model.decoder)             # real-time: one piece at a time
    frames_0 = stream.decode(latents[:, :4]); frames_1 = stream.decode(latents[:, 4:])
"""
from .errors import CheckpointError, InputError
from .checkpoint import OFFICIAL_BLOB_ID, OFFICIAL_URL, git_blob_id, identify, load_taesdv, model_from_state_dict, read_state_dict
from .engine import DecodeStream, decode, encode
from .model import SD_LATENT_SCALE, TAESDV, TAESDVDecoder, TAESDVEncoder

__all__ = [
    "TAESDV", "TAESDVDecoder", "TAESDVEncoder", "DecodeStream", "decode", "encode", "load_taesdv",
    "model_from_state_dict", "read_state_dict", "identify", "git_blob_id", "CheckpointError", "InputError",
    "OFFICIAL_URL", "OFFICIAL_BLOB_ID", "SD_LATENT_SCALE",
]
