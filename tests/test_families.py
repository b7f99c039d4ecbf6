"""The family registry: a made-up family, added as one record plus its model module, loads,
decodes, previews, goes through the CLI and appears in the messages; and the package's imports
run one way."""
import ast
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import toy_family
from taesdv_core import CheckpointError, decode, families, load_tiny_autoencoder, where_to_get, which_file_fits
from taesdv_core.__main__ import main as cli_main
from taesdv_core.engine import as_ntchw
from taesdv_core.preview import Previewer, PreviewSettings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def toy_file(tmp_path, name="taetoy_decoder.safetensors"):
    g = torch.Generator().manual_seed(0)
    sd = {toy_family.PREFIX + k: 0.2 * torch.randn(v.shape, generator=g) for k, v in toy_family.ToyDecoder().state_dict().items()}
    save_file(sd, str(tmp_path / name))
    return str(tmp_path / name), sd


def toy_reference(sd, latents):
    """The toy architecture written out: (N*T, 6, h, w) -> (N*T, 3, 2h, 2w)."""
    w = lambda i: (sd[f"{toy_family.PREFIX}{i}.weight"], sd[f"{toy_family.PREFIX}{i}.bias"])
    x = torch.tanh(latents / 3) * 3
    x = F.relu(F.conv2d(x, *w(1), padding=1))
    x = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), *w(4), padding=1)
    return F.conv2d(x, *w(5), padding=1)


@pytest.fixture
def with_toy(monkeypatch):
    monkeypatch.setattr(families, "FAMILIES", [*families.FAMILIES, toy_family.FAMILY])


def test_a_file_of_an_unlisted_family_is_refused_naming_the_known_ones(tmp_path):
    path, _ = toy_file(tmp_path)
    with pytest.raises(CheckpointError, match="not TAESDV, TAEHV, image TAESD or fast latent decoders"):
        load_tiny_autoencoder(path)


def test_a_new_family_is_one_record_and_loads_decodes_and_previews(tmp_path, with_toy):
    path, sd = toy_file(tmp_path)
    model = load_tiny_autoencoder(path)
    assert model.family == "TAE-Toy" and model.encoder is None and model.decoder.latent_space is toy_family.SPACE
    latents = torch.randn(1, 3, 6, 4, 5, generator=torch.Generator().manual_seed(1))
    frames = decode(model.decoder, latents, clamp=False)
    assert frames.shape == (1, 3, 3, 8, 10)
    assert torch.allclose(frames[0], toy_reference(sd, latents[0]), atol=1e-5)
    clip = Previewer(model.decoder, PreviewSettings(max_size=64, budget=1.0)).render(0, 1, latents.movedim(1, 2))
    assert clip is not None and clip.frames.shape[0] == 3


def test_the_cli_decodes_a_new_familys_file_in_its_latent_space(tmp_path, with_toy):
    from safetensors.torch import load_file

    path, sd = toy_file(tmp_path)
    latents = torch.randn(1, 2, 6, 3, 3, generator=torch.Generator().manual_seed(2))
    save_file({"latents": latents}, str(tmp_path / "l.safetensors"))
    assert cli_main(["decode", str(tmp_path / "l.safetensors"), "-w", path, "-o", str(tmp_path / "f.safetensors"),
                     "--device", "cpu", "--dtype", "fp32"]) == 0  # exact: auto is bf16 on CPUs with native bf16
    frames = load_file(str(tmp_path / "f.safetensors"))["frames"]
    assert torch.allclose(frames[0], toy_reference(sd, latents[0]).clamp(0, 1), atol=1e-5)
    # a ComfyUI .latent (Save Latent) is mapped with the record's scale and shift
    save_file({"latent_tensor": latents[0], "latent_format_version_0": torch.tensor([])},  # frames as the batch
              str(tmp_path / "l.latent"))
    assert cli_main(["decode", str(tmp_path / "l.latent"), "-w", path, "-o", str(tmp_path / "g.safetensors"),
                     "--device", "cpu", "--dtype", "fp32"]) == 0
    mapped = (latents[0] - 0.5) * 2.0
    got = load_file(str(tmp_path / "g.safetensors"))["frames"]
    assert torch.allclose(got[0], toy_reference(sd, mapped).clamp(0, 1), atol=1e-5)


def test_a_new_family_appears_in_the_messages(tmp_path, with_toy):
    assert "Toy Diffusion: load taetoy_decoder (toys)" in which_file_fits(6)
    assert where_to_get("taetoy_decoder.pth") == "https://example.invalid/taetoy"
    with pytest.raises(Exception, match="taetoy_decoder"):
        as_ntchw(torch.zeros(1, 2, 6, 4, 4), "latents", 4, "TAESDV")
    bad = tmp_path / "x.safetensors"
    save_file({"a.weight": torch.zeros(2)}, str(bad))
    with pytest.raises(CheckpointError, match="fast latent decoders or TAE-Toy"):
        load_tiny_autoencoder(str(bad))
    broken = {toy_family.PREFIX + "1.weight": torch.zeros(16, 6, 3, 3)}
    save_file(broken, str(tmp_path / "taetoy_broken.safetensors"))
    with pytest.raises(CheckpointError, match="looks like a TAE-Toy decoder.*missing"):
        load_tiny_autoencoder(str(tmp_path / "taetoy_broken.safetensors"))


def test_no_module_imports_from_the_package_that_contains_it():
    """`from . import X` in a package's module may name a sibling module, never something the
    package's __init__ defines (that arrow runs back up, as validation.py's NODES did)."""
    for package in ("nodes", "taesdv_core"):
        folder = os.path.join(ROOT, package)
        modules = {f[:-3] for f in os.listdir(folder) if f.endswith(".py")}
        for file in sorted(modules - {"__init__"}):
            tree = ast.parse(open(os.path.join(folder, file + ".py")).read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
                    names = [a.name for a in node.names]
                    assert set(names) <= modules, f"{package}/{file}.py imports {names} from its own package"
