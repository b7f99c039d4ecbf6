"""Reading tiny-autoencoder checkpoint files safely, whatever their family.

`.pth` files are read with `torch.load(weights_only=True)` (no code in a pickle ever runs);
`.safetensors` files with safetensors. Which family a file is, and the strict check of its
tensors, are the family records' (families.py, family.py); a file no family claims is named
here (a full VAE, a diffusion model, ...).
"""
from __future__ import annotations

import os
import pickle
import re
import struct

import torch

from .errors import CheckpointError
from .families import family_of_file_name, where_to_get
from .model import FAMILY as TAESDV_FAMILY, OFFICIAL_URL

OFFICIAL_BLOB_ID = "ffbcfae958d6364adddffca405f8dac44d03ace2"
# Weight dtypes by name. "tf32" is float32 weights whose convolutions may use TF32 on CUDA
# (faster on Ampere and later, about 1e-3 relative error); "fp32" computes in true fp32 there.
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "tf32": torch.float32}


def git_blob_id(path: str) -> str:
    """git's blob hash of a file: sha1(b"blob <size>\\0" + data); compare with OFFICIAL_BLOB_ID."""
    import hashlib

    h = hashlib.sha1()
    h.update(b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Tiny autoencoders are a few MB (the largest real files ~100 MB): a file that declares more than
# this is refused before any tensor data is read (a zip entry of DEFLATE-compressed zeros, or a
# safetensors header that lies, would otherwise make the loader allocate gigabytes).
MAX_DECLARED_BYTES = 1 << 30
MAX_SAFETENSORS_HEADER = 16 << 20
HASHED_FILE_BYTES = 64 << 20  # files up to this size are hashed into their fingerprint


def file_fingerprint(path: str) -> str:
    """Identity of a checkpoint file's weights as they are now: size, mtime_ns, ctime_ns and inode
    (a replaced file changes ctime even when its mtime is copied), plus a content hash for files
    up to HASHED_FILE_BYTES. Equal fingerprints: the same weights; "missing" for no file."""
    import hashlib

    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    parts = [str(st.st_size), str(st.st_mtime_ns), str(st.st_ctime_ns), str(st.st_ino)]
    if st.st_size <= HASHED_FILE_BYTES:
        h = hashlib.blake2b(digest_size=16)
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError:
            return "unreadable:" + ":".join(parts)
        parts.append(h.hexdigest())
    return ":".join(parts)


def _too_big(name: str, declared: int, what: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint '{name}' was refused: {what} declares {declared / 2**20:.0f} MiB of data, more than the "
        f"{MAX_DECLARED_BYTES >> 20} MiB any tiny autoencoder needs (real files are a few MB); it is not a "
        f"tiny-autoencoder checkpoint, or it is damaged. Nothing was loaded. Official files: {where_to_get(name)}"
    )


def check_declared_sizes(path: str, name: str, is_safetensors: bool) -> None:
    """Refuse a file whose declared (uncompressed) contents exceed MAX_DECLARED_BYTES, reading only
    its directory (zip) or header (safetensors), before any tensor data is read."""
    import json
    import zipfile

    size = os.path.getsize(path)
    if is_safetensors:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"checkpoint '{name}' is not a readable .safetensors file (truncated: {size} bytes)")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > min(MAX_SAFETENSORS_HEADER, size - 8):
                raise CheckpointError(f"checkpoint '{name}' is not a readable .safetensors file (the length of its header "
                                      f"is impossible for a {size}-byte file)")
            try:
                header = json.loads(f.read(header_len))
            except ValueError:
                raise CheckpointError(f"checkpoint '{name}' is not a readable .safetensors file (its header is not "
                                      "JSON)") from None
        if not isinstance(header, dict):
            raise CheckpointError(f"checkpoint '{name}' is not a readable .safetensors file (its header is not an object)")
        data_bytes, declared = size - 8 - header_len, 0
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
            if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
                    or not 0 <= offsets[0] <= offsets[1] <= data_bytes):
                raise CheckpointError(f"checkpoint '{name}' is not a readable .safetensors file (tensor '{key}' "
                                      "points outside the file: truncated or corrupt)")
            declared += offsets[1] - offsets[0]
        if declared > MAX_DECLARED_BYTES:
            raise _too_big(name, declared, "its header")
        return
    if size > MAX_DECLARED_BYTES:
        raise _too_big(name, size, "the file itself")
    if zipfile.is_zipfile(path):  # torch.save's format; the legacy format is bounded by the file size
        try:
            with zipfile.ZipFile(path) as archive:
                declared = sum(info.file_size for info in archive.infolist())
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise CheckpointError(f"checkpoint '{name}' could not be read: it looks truncated or corrupt "
                                  f"({type(e).__name__}); download it again") from None
        if declared > MAX_DECLARED_BYTES:
            raise _too_big(name, declared, "its zip archive")


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether a file's first 9 bytes read as safetensors' layout, whatever its extension: an 8-byte
    little-endian header length that fits the file, then the header's opening '{'. Checking the
    length too keeps other files whose ninth byte happens to be '{' (1 in 256) from being named
    safetensors in the error they get."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 2 <= header_len <= size - 8


# What to do about a missing file depends on who asked: ComfyUI users put it in a folder, the command
# line names an option. Callers pass their own advice; this is ComfyUI's.
MISSING_ADVICE = f"put taesdv.pth in models/vae_approx ({OFFICIAL_URL})"


def is_taesdv_name(name: str) -> bool:
    """Whether a file is named as the official taesdv.pth, whose git blob id is known."""
    named = family_of_file_name(name)
    return named is not None and named[0] is TAESDV_FAMILY


# torch.save writes a zip (PK..), older PyTorch a pickle (0x80): anything else is another kind of file
CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80")


def _not_a_checkpoint(name: str, error: str) -> CheckpointError:
    return CheckpointError(f"checkpoint '{name}' could not be read: it is not a PyTorch or safetensors "
                           f"checkpoint ({error}); pick a tiny-autoencoder .pth or .safetensors file")


def read_state_dict(path: str, missing_advice: str = MISSING_ADVICE) -> dict[str, torch.Tensor]:
    """Tensors of a `.pth`/`.pt` (weights only) or `.safetensors` file, on the CPU. A missing file
    raises CheckpointError("checkpoint '<path>' does not exist; <missing_advice>")."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint '{path}' does not exist; {missing_advice}")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"checkpoint '{name}' is empty (0 bytes); download taesdv.pth again from {OFFICIAL_URL}")
    with open(path, "rb") as f:
        head = f.read(9)
    is_safetensors = name.endswith((".safetensors", ".sft")) or looks_like_safetensors(head, size)
    check_declared_sizes(path, name, is_safetensors)
    if is_safetensors:
        try:
            from safetensors.torch import load_file

            sd = load_file(path, device="cpu")
        except Exception as e:  # safetensors raises its own error type for any malformed file
            raise CheckpointError(f"checkpoint '{name}' is not a readable .safetensors file (truncated or corrupt: {e})") from None
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            text = str(e)
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
            if found:
                raise CheckpointError(
                    f"checkpoint '{name}' was refused: it holds Python objects ({found.group(1)}) that would run "
                    "code when loaded, not only tensors. Nothing in it was executed. Use the official file "
                    f"({where_to_get(name)}) or a .safetensors file."
                ) from None
            if not head.startswith(CHECKPOINT_MAGIC):  # text or another format read as a pickle
                raise _not_a_checkpoint(name, type(e).__name__) from None
            # never quote the file's bytes (e.g. "invalid load key, 'r'"): a link may point at a private file
            detail = "unsupported pickle operation" if "Unsupported operand" in text else "not a pickle of tensors"
            raise CheckpointError(
                f"checkpoint '{name}' is not a PyTorch or safetensors file of plain tensors (the safe loader refused "
                f"it: {detail}); nothing in it was executed"
            ) from None
        except Exception as e:  # torch's safe unpickler raises many types on corrupt bytes; none executes code
            if not head.startswith(CHECKPOINT_MAGIC):
                raise _not_a_checkpoint(name, type(e).__name__) from None
            again = f" and check its git blob id ({OFFICIAL_BLOB_ID})" if is_taesdv_name(name) else ""
            raise CheckpointError(f"checkpoint '{name}' could not be read: it looks truncated or corrupt "
                                  f"({type(e).__name__}); download it again{again}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise CheckpointError(f"checkpoint '{name}' is not a state dict of tensors (found {type(sd).__name__})")
    if not sd:
        raise CheckpointError(f"checkpoint '{name}' holds no tensors")
    return sd


def describe_other(sd: dict[str, torch.Tensor]) -> str:
    """What a state dict that no family's record claims looks like (a short phrase)."""
    keys = set(sd)
    if any(k.startswith(("model.diffusion_model.", "cond_stage_model.", "conditioner.")) for k in keys):
        return "a full diffusion-model checkpoint (load it with ComfyUI's Load Checkpoint instead)"
    if any(k.startswith(("decoder.conv_in.", "decoder.mid.", "quant_conv.", "first_stage_model.")) for k in keys):
        return "a full SD VAE (load it with ComfyUI's Load VAE instead)"
    if any(k.startswith(("taesd_decoder.", "taesd_encoder.")) or k.endswith("3.conv.0.weight") for k in keys):
        return "an image TAESD decoder/encoder whose tensors are incomplete"
    sample = ", ".join(sorted(keys)[:4])
    return f"an unknown state dict of {len(keys)} tensors (e.g. {sample})"
