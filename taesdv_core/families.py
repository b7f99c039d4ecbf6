"""The model families this pack knows, one record each (family.Family, kept in the module that
owns the model), and what is asked of all of them: which family a file is, which files fit
latents of a width, where a file of a name comes from.

A new family is its model module with a `FAMILY` record, listed in FAMILIES.
"""
from __future__ import annotations

from . import fast_latent_decoders, model, taehv, taesd
from .errors import CheckpointError
from .family import Family, Match, StateDict

# Tried in this order; each record's match looks only at tensors its family can hold.
FAMILIES: list[Family] = [model.FAMILY, taehv.FAMILY, taesd.FAMILY, fast_latent_decoders.FAMILY]
OFFICIAL_URL = model.OFFICIAL_URL  # where a file of no known name is pointed: the pack's own model


def family_named(name: str) -> Family:
    for family in FAMILIES:
        if family.name == name:
            return family
    raise KeyError(f"no family '{name}'; known: {', '.join(f.name for f in FAMILIES)}")


def which_family(sd: StateDict, file_name: str) -> tuple[Family, Match] | None:
    """The first family whose record claims the file, with its match; None when none does.
    Raises CheckpointError when a family recognises its layout but the file does not fit it."""
    for family in FAMILIES:
        found = family.match(sd, file_name)
        if isinstance(found, Match):
            return family, found
        if found.claimed:
            raise CheckpointError(f"checkpoint '{file_name}': {found.reason}")
    return None


def family_list() -> str:
    names = [f.name for f in FAMILIES]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _models(made_by: list[str]) -> str:
    """"SD1.x, SD2.x", "SD1.x, SDXL" -> "SD1.x, SD2.x, SDXL": each model once, in order."""
    return ", ".join(dict.fromkeys(m.strip() for models in made_by for m in models.split(",")))


def models_of(family: Family) -> str:
    """The models whose latents a family's files decode."""
    return _models([made_by for made_by, _ in family.latent_sources.values()])


def which_file_fits(channels: int) -> str:
    """A sentence naming the models behind `channels`-wide latents and the files that decode them."""
    sources = [f.latent_sources[channels] for f in FAMILIES if channels in f.latent_sources]
    if not sources:
        return f"No tiny decoder known to this pack takes {channels}-channel latents."
    files = ", ".join(files for _, files in sources)
    return f"{channels}-channel latents come from {_models([m for m, _ in sources])}: load {files} from models/vae_approx."


def family_of_file_name(file_name: str) -> tuple[Family, str] | None:
    """The family whose official files are named like this one (longest prefix), and where they
    are published; None for a name no family uses."""
    lowered = file_name.lower()
    named = [(prefix, family, url) for family in FAMILIES for prefix, url in family.sources.items()
             if lowered.startswith(prefix)]
    if not named:
        return None
    _, family, url = max(named, key=lambda n: len(n[0]))
    return family, url


def where_to_get(file_name: str) -> str:
    """Where a tiny-autoencoder file of this name is published (taesdv.pth's URL for unknown names)."""
    named = family_of_file_name(file_name)
    return named[1] if named else OFFICIAL_URL
