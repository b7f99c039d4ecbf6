"""Checkpoints load strictly and safely; every wrong file is named for what it is."""
import os
import pickle
import random

import pytest
import torch
from safetensors.torch import save_file

from helpers import RunsCode, image_taesd_decoder
from reference_taesdv import official_layout_state_dict, reference_decode
from taesdv_core import CheckpointError, decode, git_blob_id, load_taesdv


def save(tmp_path, name, obj):
    path = tmp_path / name
    if name.endswith(".safetensors"):
        save_file(obj, path)
    else:
        torch.save(obj, path)
    return str(path)


def test_official_layout_pth_loads_and_decodes_like_the_reference(tmp_path, state_dict):
    model = load_taesdv(save(tmp_path, "taesdv.pth", state_dict))
    latents = torch.randn(1, 3, 4, 4, 4)
    expected = reference_decode(state_dict, latents)
    assert ((decode(model.decoder, latents, clamp=False) - expected).abs().max() / expected.abs().max()) < 1e-5


def test_safetensors_loads_the_same_weights(tmp_path, state_dict):
    model = load_taesdv(save(tmp_path, "taesdv.safetensors", state_dict))
    assert torch.equal(model.decoder[19].weight, state_dict["decoder.19.weight"])


@pytest.mark.parametrize("file_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("load_dtype", ["fp32", "fp16", "bf16"])
def test_half_precision_files_load_in_any_dtype(tmp_path, file_dtype, load_dtype):
    sd = official_layout_state_dict(dtype=file_dtype)
    model = load_taesdv(save(tmp_path, "taesdv_half.safetensors", sd), dtype=load_dtype)
    assert model.decoder[1].weight.dtype == {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[load_dtype]


def test_decoder_only_file_gives_a_decoder_only_model(tmp_path, state_dict):
    sd = {k: v for k, v in state_dict.items() if k.startswith("decoder.")}
    model = load_taesdv(save(tmp_path, "taesdv_decoder.pth", sd))
    assert model.encoder is None and model.decoder is not None


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist.*vae_approx"):
        load_taesdv(str(tmp_path / "nope.pth"))


def test_empty_file(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_taesdv(str(tmp_path / "empty.pth"))


@pytest.mark.parametrize("name", ["taesdv.pth", "taesdv.safetensors"])
def test_truncated_file(tmp_path, state_dict, name):
    path = save(tmp_path, name, state_dict)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_taesdv(path)


@pytest.mark.parametrize("ninth_byte", [b"x", b"{"], ids=["any ninth byte", "ninth byte '{' as in safetensors"])
def test_random_bytes_are_not_a_pytorch_or_safetensors_checkpoint(tmp_path, ninth_byte):
    # safetensors is recognised by content too (a length, then '{'): random bytes whose ninth byte
    # happens to be '{' (1 file in 256) must not be called a broken .safetensors file
    rng = random.Random(1)
    for _ in range(50):
        data = bytearray(rng.getrandbits(8) for _ in range(4096))
        data[0], data[8] = ord("r"), ord(ninth_byte)  # neither torch.save's zip nor a pickle
        (tmp_path / "random.pth").write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="'random.pth' could not be read: it is not a PyTorch or safetensors checkpoint"):
            load_taesdv(str(tmp_path / "random.pth"))


def test_a_pth_file_laid_out_as_safetensors_is_read_as_safetensors(tmp_path, state_dict):
    path = save(tmp_path, "taesdv.safetensors", state_dict)
    os.rename(path, tmp_path / "renamed.pth")
    assert load_taesdv(str(tmp_path / "renamed.pth")) is not None


def test_any_random_bytes_give_a_checkpoint_error(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "fuzz.pth"
    for _ in range(300):
        path.write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 3000))))
        with pytest.raises(CheckpointError, match="fuzz.pth"):
            load_taesdv(str(path))


@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 4"])
def test_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, writer):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    payload = {"decoder.1.weight": RunsCode(str(marker))}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=4)
    expected = r"refused.*\(io.open\).*run code.*Nothing in it was executed" if writer == "torch.save" else "refused it.*nothing in it was executed"
    with pytest.raises(CheckpointError, match=expected):
        load_taesdv(str(path))
    assert not marker.exists()
    # the control: loaded unsafely, the same file does run code
    if writer == "torch.save":
        torch.load(path, weights_only=False)
    else:
        with open(path, "rb") as f:
            pickle.load(f)
    assert marker.exists()


def test_missing_keys(tmp_path, state_dict):
    sd = dict(state_dict)
    del sd["decoder.8.conv.2.bias"]
    with pytest.raises(CheckpointError, match="1 missing.*decoder.8.conv.2.bias"):
        load_taesdv(save(tmp_path, "m.pth", sd))


def test_extra_keys(tmp_path, state_dict):
    sd = dict(state_dict, **{"decoder.20.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match="1 unexpected.*decoder.20.weight"):
        load_taesdv(save(tmp_path, "x.pth", sd))


def test_reshaped_keys(tmp_path, state_dict):
    sd = dict(state_dict, **{"decoder.19.weight": torch.zeros(4, 64, 3, 3)})
    with pytest.raises(CheckpointError, match=r"wrong shape.*decoder.19.weight \(4, 64, 3, 3\) \(expected \(3, 64, 3, 3\)\)"):
        load_taesdv(save(tmp_path, "r.pth", sd))


def test_nan_weights(tmp_path, state_dict):
    sd = dict(state_dict)
    sd["decoder.1.bias"] = torch.full((64,), float("nan"))
    with pytest.raises(CheckpointError, match="NaN"):
        load_taesdv(save(tmp_path, "nan.pth", sd))


def test_image_taesd_decoder_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="image TAESD.*not TAESDV.*taesdv.pth"):
        load_taesdv(save(tmp_path, "taesd_decoder.pth", image_taesd_decoder()))


def test_comfy_combined_image_taesd_is_named(tmp_path):
    sd = {f"taesd_decoder.{k}": v for k, v in image_taesd_decoder().items()}
    with pytest.raises(CheckpointError, match="image TAESD"):
        load_taesdv(save(tmp_path, "taesd.safetensors", sd))


def test_taehv_family_file_is_named_with_its_latent_channels(tmp_path):
    sd = {"decoder.1.weight": torch.zeros(256, 16, 3, 3), "decoder.7.conv.weight": torch.zeros(128, 256, 1, 1),
          "decoder.22.weight": torch.zeros(3, 64, 3, 3), "encoder.2.conv.weight": torch.zeros(64, 128, 1, 1)}
    with pytest.raises(CheckpointError, match="TAEHV-family.*16-channel"):
        load_taesdv(save(tmp_path, "taew2_1.pth", sd))


@pytest.mark.parametrize("text", ["these are not weights\n", "my notes about models\n"])  # two different unpickler errors
def test_a_file_that_is_no_checkpoint_is_named_so_not_called_truncated(tmp_path, text):
    path = tmp_path / "notes.pth"
    path.write_text(text)
    with pytest.raises(CheckpointError, match=r"'notes.pth' could not be read: it is not a PyTorch or safetensors checkpoint"):
        load_taesdv(str(path))


def test_full_diffusion_checkpoint_is_named(tmp_path):
    sd = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
          "first_stage_model.decoder.conv_in.weight": torch.zeros(512, 4, 3, 3)}
    with pytest.raises(CheckpointError, match="full diffusion-model checkpoint.*Load Checkpoint"):
        load_taesdv(save(tmp_path, "v1-5.safetensors", sd))


def test_sd_vae_is_named(tmp_path):
    sd = {"decoder.conv_in.weight": torch.zeros(512, 4, 3, 3), "quant_conv.weight": torch.zeros(8, 8, 1, 1),
          "encoder.conv_in.weight": torch.zeros(128, 3, 3, 3)}
    with pytest.raises(CheckpointError, match="full SD VAE.*Load VAE"):
        load_taesdv(save(tmp_path, "vae.safetensors", sd))


def test_unknown_state_dict_is_described(tmp_path):
    with pytest.raises(CheckpointError, match="unknown state dict of 2 tensors"):
        load_taesdv(save(tmp_path, "other.pth", {"a.weight": torch.zeros(2), "b.bias": torch.zeros(2)}))


def test_not_a_state_dict(tmp_path):
    with pytest.raises(CheckpointError, match="not a state dict.*list"):
        load_taesdv(save(tmp_path, "list.pth", [torch.zeros(2)]))


def test_unknown_dtype_name(tmp_path, checkpoint_path):
    with pytest.raises(CheckpointError, match="dtype 'fp8'"):
        load_taesdv(checkpoint_path, dtype="fp8")


def test_git_blob_id_is_gits_hash(tmp_path):
    (tmp_path / "f").write_bytes(b"hello\n")
    assert git_blob_id(str(tmp_path / "f")) == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`
