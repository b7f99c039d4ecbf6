"""The model core: plain PyTorch, no ComfyUI import anywhere (the ComfyUI side is nodes/).

    from taesdv_core import load_tiny_autoencoder, decode, encode, DecodeStream
    model = load_tiny_autoencoder("taew2_1.safetensors", dtype="fp16", device="cuda")  # any family
    frames = decode(model.decoder, latents)          # NTCHW model-space latents -> NTCHW [0, 1]
    stream = DecodeStream(model.decoder)             # real-time: one piece at a time
    frames_0 = stream.decode(latents[:, :4]); frames_1 = stream.decode(latents[:, 4:])

Each family (TAESDV, TAEHV, image TAESD, the fast latent decoders) is one record (families.py).
The TAESDV-era names (load_taesdv, model_from_state_dict, TAESDV) remain as aliases.
"""
from .checkpoint import OFFICIAL_BLOB_ID, git_blob_id, read_state_dict
from .engine import DecodeStream, decode, encode
from .errors import CheckpointError, InputError
from .families import FAMILIES, where_to_get, which_family, which_file_fits
from .family import Family, LatentSpace, Match, NoMatch, TinyAutoencoder
from .loading import autoencoder_from_state_dict, identify, load_autoencoder, load_taesdv, model_from_state_dict
from .model import OFFICIAL_URL, SD_LATENT_SCALE, TAESDV, TAESDVDecoder, TAESDVEncoder

load_tiny_autoencoder = load_autoencoder
tiny_autoencoder_from_state_dict = autoencoder_from_state_dict

__all__ = [
    "load_tiny_autoencoder", "tiny_autoencoder_from_state_dict", "TinyAutoencoder", "DecodeStream", "decode",
    "encode", "read_state_dict", "git_blob_id", "CheckpointError", "InputError", "FAMILIES", "Family",
    "LatentSpace", "Match", "NoMatch", "which_family", "which_file_fits", "where_to_get",
    "OFFICIAL_URL", "OFFICIAL_BLOB_ID", "SD_LATENT_SCALE", "TAESDVDecoder", "TAESDVEncoder",
    # old names
    "load_taesdv", "model_from_state_dict", "TAESDV", "load_autoencoder", "autoencoder_from_state_dict", "identify",
]
