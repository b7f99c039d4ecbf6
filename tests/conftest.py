import os
import sys

import pytest
import torch

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
for p in (ROOT, TESTS):
    if p not in sys.path:
        sys.path.insert(0, p)

from reference_taesdv import official_layout_state_dict  # noqa: E402

ARTIFACTS = os.path.join(ROOT, "test-artifacts")


@pytest.fixture(scope="session")
def state_dict():
    return official_layout_state_dict(seed=0)


@pytest.fixture(scope="session")
def checkpoint_path(tmp_path_factory, state_dict):
    path = tmp_path_factory.mktemp("weights") / "taesdv.pth"
    torch.save(state_dict, path)
    return str(path)


def start_comfy(tmp_path_factory, state_dict, name: str, env: dict | None = None):
    """The real ComfyUI under test (comfy_host.COMFYUI) on loopback, this pack and the test nodes linked in, a random
    official-layout taesdv.pth in models/vae_approx. Yields the host; saves its log at the end."""
    from comfy_host import ComfyHost

    base = str(tmp_path_factory.mktemp(name))
    host = ComfyHost(base, extra_packs={"taesdv_test_nodes": os.path.join(TESTS, "comfy_test_nodes")}, env=env)
    torch.save(state_dict, os.path.join(base, "models", "vae_approx", "taesdv.pth"))
    host.start()
    yield host
    host.stop()
    os.makedirs(ARTIFACTS, exist_ok=True)
    with open(os.path.join(ARTIFACTS, f"{name}-server.log"), "w") as f:
        f.write(host.log())


@pytest.fixture(scope="session")
def comfy(tmp_path_factory, state_dict):
    yield from start_comfy(tmp_path_factory, state_dict, "comfy")


def pytest_configure(config):
    torch.manual_seed(0)
    config.addinivalue_line("markers", "gpu: needs CUDA (and for some, the test server on the GPU); "
                                       "skipped otherwise; scripts/test-gpu.sh runs them on a GPU machine")


@pytest.fixture(scope="module")
def comfy_serving_clips(tmp_path_factory, state_dict):
    """A second server, started with the newest preview clips served over HTTP (TAESDV_PREVIEW_HTTP=1)."""
    yield from start_comfy(tmp_path_factory, state_dict, "comfy-http", env={"TAESDV_PREVIEW_HTTP": "1"})


@pytest.fixture(scope="module")
def comfy_alone(tmp_path_factory, state_dict):
    """A server of its own, for tests that stall the host's websocket send loop on purpose."""
    yield from start_comfy(tmp_path_factory, state_dict, "comfy-alone")
