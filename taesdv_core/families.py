"""Which models make latents of which width, and which tiny decoder file serves them.

Used to tell a user who fed the wrong latents which file fits (see engine.as_ntchw), and one
who names a missing file where that file comes from (`where_to_get`).
"""
from __future__ import annotations

# latent channels -> (models that make them, the tiny-autoencoder files that decode them)
LATENT_SOURCES: dict[int, tuple[str, str]] = {
    4: ("SD1.x, SD2.x, SVD, AnimateDiff, AnimateLCM, SDXL", "taesdv.pth (video), taesd_decoder / taesdxl_decoder (images)"),
    12: ("Mochi 1", "taem1"),
    16: ("Wan 2.1, Wan 2.2 14B, HunyuanVideo, CogVideoX, SD3, FLUX.1",
         "taew2_1 / taehv / taecvx (video), taesd3_decoder / taef1_decoder (images)"),
    24: ("MiniMax H3", "taeh3"),
    32: ("HunyuanVideo 1.5, FLUX.2", "taehv1_5 (video), taef2_decoder (images)"),
    48: ("Wan 2.2 5B", "taew2_2"),
    128: ("LTX-2", "taeltx_2"),
}


def which_file_fits(channels: int) -> str:
    """A sentence naming the models behind `channels`-wide latents and the files that decode them."""
    if channels not in LATENT_SOURCES:
        return f"No tiny decoder known to this pack takes {channels}-channel latents."
    models, files = LATENT_SOURCES[channels]
    return f"{channels}-channel latents come from {models}: load {files} from models/vae_approx."


OFFICIAL_URL = "https://github.com/madebyollin/taesdv/raw/main/taesdv.pth"

# file name prefix -> where the official files of that family are published
SOURCES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("taesdv",), OFFICIAL_URL),
    (("taesd_", "taesdxl_", "taesd3_", "taef1_", "taef2_", "taesana_"), "https://github.com/madebyollin/taesd"),
    (("lighttae",), "https://huggingface.co/lightx2v/Autoencoders"),
    (("taehv", "taew", "taecvx", "taeos", "taeltx", "taeh3"), "https://github.com/madebyollin/taehv"),
)


def where_to_get(file_name: str) -> str:
    """Where a tiny-autoencoder file of this name is published (taesdv.pth's URL for unknown names)."""
    lowered = file_name.lower()
    for prefixes, source in SOURCES:
        if lowered.startswith(prefixes):
            return source
    return OFFICIAL_URL
