"""A made-up family, TAE-Toy, as a new family is added: one model module ending in its record.

Its decoder eats 6-channel latents at 1/2 of the frame size: Clamp, conv(6 -> 16), ReLU, nearest
2x upsampling with a conv, conv(16 -> 3). Files hold `toy_decoder.N...` tensors.
"""
import torch.nn as nn

from taesdv_core.family import Family, LatentSpace, Match, NoMatch, TinyAutoencoder, load_strict, tensor_shape
from taesdv_core.layers import ChunkDecoder, Clamp, conv

LATENT_CHANNELS, WIDTH = 6, 16
PREFIX = "toy_decoder."
SPACE = LatentSpace("LatentFormat", "model", 2.0, 0.5)


class ToyDecoder(ChunkDecoder):
    family = "TAE-Toy"
    latent_channels = LATENT_CHANNELS
    spatial_scale = 2

    def __init__(self):
        super().__init__(Clamp(), conv(LATENT_CHANNELS, WIDTH), nn.ReLU(inplace=True), nn.Upsample(scale_factor=2),
                         conv(WIDTH, WIDTH), conv(WIDTH, 3))


def match(sd, file_name):
    if tensor_shape(sd, PREFIX + "1.weight", 4) != (WIDTH, LATENT_CHANNELS, 3, 3):
        return NoMatch(f"no {PREFIX}1.weight of shape ({WIDTH}, {LATENT_CHANNELS}, 3, 3)")
    return Match("toy", SPACE, "TAE-Toy decoder, 6-channel latents")


def build(sd, file_name, found):
    decoder = ToyDecoder()
    load_strict(decoder, {k[len(PREFIX):]: v for k, v in sd.items()}, file_name, "decoder")
    found.space.tag(decoder)
    return TinyAutoencoder(None, decoder, found.description, family="TAE-Toy")


FAMILY = Family(name="TAE-Toy", match=match, build=build, spaces={"toy": SPACE},
                latent_sources={6: ("Toy Diffusion", "taetoy_decoder (toys)")},
                sources={"taetoy": "https://example.invalid/taetoy"})
