"""Install via ComfyUI-Manager, as a Manager user does, offline: `cm-cli install --mode local URL`
from this repository served over loopback HTTP into a copy of ComfyUI, then the real server.

comfyui-manager (with cm-cli; the version the host pins in manager_requirements.txt, as ComfyUI
0.33's --enable-manager installs it, or 4.3 for hosts without one) is installed with `pip --target`
into a temporary folder (about 30 s) and used through PYTHONPATH by cm-cli only, so neither the
venv nor the server sees it.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from comfy_host import COMFYUI, ROOT, ComfyHost, free_port, pack_load_problems
from helpers import pip_install_apart


def host_manager_pin() -> str:
    """The comfyui-manager the host ships with (0.33: manager_requirements.txt), else 4.3."""
    pinned = os.path.join(COMFYUI, "manager_requirements.txt")
    if os.path.exists(pinned):
        with open(pinned) as f:
            return next(line.strip() for line in f if line.strip() and not line.startswith("#"))
    return "comfyui-manager==4.3"


MANAGER = host_manager_pin()
OFFICIAL_URL = "https://github.com/madebyollin/taesdv/raw/main/taesdv.pth"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("manager")
    site = pip_install_apart(tmp / "site", MANAGER)  # comfyui-manager and cm-cli
    # The repository as a Manager user gets it: a git URL with a host part (cm-cli refuses file://).
    served = tmp / "served"
    served.mkdir()
    bare = served / "ComfyUI-TAESDV.git"
    subprocess.run(["git", "clone", "-q", "--bare", ROOT, str(bare)], check=True, timeout=120)
    subprocess.run(["git", "update-server-info"], cwd=bare, check=True, timeout=60)
    port = free_port()
    http = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(served)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    comfyui = tmp / "ComfyUI"
    shutil.copytree(COMFYUI, comfyui, ignore=shutil.ignore_patterns("__pycache__", "custom_nodes"))
    (comfyui / "custom_nodes").mkdir()
    try:
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ComfyUI-TAESDV.git/HEAD", timeout=2).read()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        env = dict(os.environ, COMFYUI_PATH=str(comfyui), PYTHONPATH=site, PYTHONDONTWRITEBYTECODE="1")
        url = f"http://127.0.0.1:{port}/ComfyUI-TAESDV.git"
        r = subprocess.run([sys.executable, "-m", "cm_cli", "install", "--mode", "local", url], env=env, cwd=tmp,
                           capture_output=True, text=True, timeout=600)
    finally:
        http.terminate()
        http.wait(10)
    assert r.returncode == 0, r.stdout + r.stderr
    pack = comfyui / "custom_nodes" / "ComfyUI-TAESDV"
    assert (pack / "__init__.py").is_file(), r.stdout + r.stderr
    # "Restart": the server starts on that ComfyUI with what the Manager installed, nothing linked.
    host = ComfyHost(str(comfyui))  # base folders; custom_nodes/ComfyUI-TAESDV is Manager's clone, not a link
    assert not os.path.islink(pack)
    host.start()
    yield host, pack, r.stdout + r.stderr, site
    host.stop()


def test_manager_installs_a_clone_of_this_commit_into_custom_nodes(installed):
    _, pack, _, _ = installed
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=pack, capture_output=True, text=True).stdout.strip()
    assert head == subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def test_after_restart_the_nodes_load_and_the_examples_are_templates(installed):
    host, pack, _, _ = installed
    assert pack_load_problems(host.log(), pack_root=str(pack)) == []
    info = host.get_json("/object_info")
    for node in ("TAESDVLoader", "TAESDVDecode", "TAESDVStreamingDecode", "TAESDVEncode", "TAESDVLatentPreview"):
        assert info[node]["category"] == "TAESDV"
    templates = host.get_json("/workflow_templates")["ComfyUI-TAESDV"]
    shipped = sorted(n[:-5] for n in os.listdir(pack / "example_workflows") if n.endswith(".json"))
    assert sorted(templates) == shipped and "taesdv_demo_live_preview" in shipped
    assert "/extensions/ComfyUI-TAESDV/taesdv_preview.js" in host.get_json("/extensions")


def test_weights_are_not_in_managers_model_list_and_the_readme_says_how_to_get_them(installed):
    """Manager's model manager lists its own model-list.json; it does not read a pack's
    [tool.comfy] Models (that entry is for the Comfy Registry). So Manager users do not see
    taesdv.pth there, and the README must send them to fetch_weights.py or the download."""
    _, pack, _, site = installed
    with open(os.path.join(site, "comfyui_manager", "model-list.json")) as f:
        models = json.load(f)["models"]
    assert not [m for m in models if m["filename"] == "taesdv.pth" or m["url"] == OFFICIAL_URL]
    import tomllib

    with open(pack / "pyproject.toml", "rb") as f:
        declared = tomllib.load(f)["tool"]["comfy"]["Models"]
    assert declared == [{"location": "/models/vae_approx/taesdv.pth", "model_url": OFFICIAL_URL}]
    readme = (pack / "README.md").read_text()
    manager_part = readme[readme.index("**ComfyUI-Manager**"):readme.index("**By hand**")]
    assert "model list does not offer" in manager_part and "fetch_weights.py" in manager_part
