"""The example workflows, as a user gets them: `start.sh --demo-weights` assets in a fresh ComfyUI
base, each example (UI format, as shipped, or the demo copy that script saves among the user's
workflows) converted to an API prompt and run on the real server, and run in the real UI, where
what the nodes show after the run must not push one node over another.
"""
import glob
import itertools
import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest

from browser import available, comfy_page, frontends, nodes_2_0, shot
from comfy_host import COMFYUI, HOST_VERSION, ROOT, ComfyHost
from workflow_api import to_api

sys.path.insert(0, os.path.join(ROOT, "scripts"))
from make_demo_assets import DEMO_COPY, DEMO_FILES  # noqa: E402

EXAMPLES = os.path.join(ROOT, "example_workflows")
DEMO = "taesdv_demo_live_preview.json"


def example(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        return json.load(f)


def notes(workflow):
    return "\n".join(n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "Note")


def demo_base(tmp_path_factory):
    """A fresh base with exactly what `start.sh --demo-weights` writes."""
    base = str(tmp_path_factory.mktemp("demo_base"))
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_demo_assets.py"), base],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return base


@pytest.fixture(scope="module")
def demo_host(tmp_path_factory):
    """The real server on a fresh demo base."""
    host = ComfyHost(demo_base(tmp_path_factory)).start()
    yield host
    host.stop()


FRONTENDS = frontends()


def version(label):
    return tuple(int(part) for part in label.split("."))


def host_frontend_pin():
    """The frontend version the host's requirements.txt pins: the oldest it accepts without warning."""
    with open(os.path.join(COMFYUI, "requirements.txt")) as f:
        return re.search(r"^comfyui-frontend-package==([\d.]+)", f.read(), re.M).group(1)


@pytest.fixture(scope="module", params=FRONTENDS, ids=[f"frontend-{label}" for label, _ in FRONTENDS])
def demo_ui(request, tmp_path_factory):
    """The real server on a fresh demo base, serving one frontend version (the host's own, the newest)."""
    label, root = request.param
    if root is not None and not os.path.isfile(os.path.join(root, "index.html")):
        pytest.skip(f"frontend {label} is not installed at {root}: run `bash scripts/setup-host.sh --test`")
    if version(label) < version(host_frontend_pin()):  # installed for an older host; this one calls it outdated
        pytest.skip(f"ComfyUI {HOST_VERSION} needs frontend {host_frontend_pin()} or newer, not {label}")
    host = ComfyHost(demo_base(tmp_path_factory), extra_args=["--front-end-root", root] if root else []).start()
    host.frontend = label
    yield host
    host.stop()


def demo_copy_path(host, name):
    return os.path.join(host.base, "user", "default", "workflows", DEMO_COPY.format(name=name[:-5]))


def run_example(host, name, demo_files=False):
    """Runs an example as shipped, or its demo copy (the demo files picked) as the user finds it."""
    object_info = host.get_json("/object_info")
    if demo_files:
        with open(demo_copy_path(host, name)) as f:
            prompt = to_api(json.load(f), object_info)
    else:
        prompt = to_api(example(name), object_info)
    return prompt, host.run(prompt, timeout=600)


def test_every_example_has_a_note_naming_each_file_it_loads():
    for path in sorted(glob.glob(os.path.join(EXAMPLES, "*.json"))):
        workflow = json.load(open(path))
        text = notes(workflow)
        assert text, f"{os.path.basename(path)} has no Note node"
        for node in workflow["nodes"]:
            if node["type"] in ("LoadImage", "LoadVideo", "LoadLatent", "CheckpointLoaderSimple",
                                "ImageOnlyCheckpointLoader", "TAESDVLoader"):
                assert node["widgets_values"][0] in text, (os.path.basename(path), node["widgets_values"][0])
        assert "--demo-weights" in text, os.path.basename(path)


def test_examples_are_offered_as_templates_under_the_pack_name(demo_host):
    templates = demo_host.get_json("/workflow_templates")
    names = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(EXAMPLES, "*.json")))
    assert sorted(templates["ComfyUI-TAESDV"]) == names
    served = json.loads(demo_host.get_bytes("/api/workflow_templates/ComfyUI-TAESDV/taesdv_demo_live_preview.json"))
    assert served == example(DEMO)


def test_every_example_has_a_thumbnail_the_server_serves_as_a_jpeg(demo_host):
    # The Templates dialog shows /api/workflow_templates/<pack>/<name>.jpg on each card.
    for path in sorted(glob.glob(os.path.join(EXAMPLES, "*.json"))):
        name = os.path.splitext(os.path.basename(path))[0]
        with urllib.request.urlopen(f"{demo_host.url}/api/workflow_templates/ComfyUI-TAESDV/{name}.jpg") as r:
            body = r.read()
            assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg", name
        assert body[:3] == b"\xff\xd8\xff" and len(body) < 100_000, name


def test_every_note_says_how_to_run_it_offline_and_not_that_manager_lists_taesdv():
    for path in sorted(glob.glob(os.path.join(EXAMPLES, "*.json"))):
        workflow = json.load(open(path))
        text = notes(workflow)
        loaded = {n["widgets_values"][0] for n in workflow["nodes"] if n["type"] in ("TAESDVLoader", "CheckpointLoaderSimple")}
        for real, demo in DEMO_FILES.items():
            if real in loaded:  # the Note names the demo stand-in the user must pick instead
                assert demo in text, (os.path.basename(path), demo)
        if "taesdv.pth" in loaded:
            assert "Manager's model list does not offer it" in text, os.path.basename(path)
            assert "Model Manager" not in text, os.path.basename(path)


def test_demo_weights_save_a_copy_of_each_example_with_the_demo_files_picked(demo_host):
    """Every example but the SVD one (no SVD model can be made small) and the demo itself gets a
    copy among the user's workflows that names only demo files; the templates keep the real ones."""
    served = demo_host.get_json("/api/userdata?dir=workflows")
    copies = sorted(f for f in served if f.endswith(DEMO_COPY.format(name="")))
    assert copies == [DEMO_COPY.format(name=n) for n in ("taesdv_compare_decoders", "taesdv_streaming_decode",
                                                          "taesdv_video_roundtrip")]
    for name in ("taesdv_compare_decoders.json", "taesdv_streaming_decode.json", "taesdv_video_roundtrip.json"):
        with open(demo_copy_path(demo_host, name)) as f:
            copy = json.dumps(json.load(f))
        shipped = json.dumps(example(name))
        for real, demo in DEMO_FILES.items():
            assert f'"{real}"' not in copy
            assert (f'"{real}"' in shipped) == (f'"{demo}"' in copy), (name, real)


def test_demo_example_samples_with_the_demo_checkpoint_and_plays_the_clip_on_the_sampler(demo_host):
    prompt, run = run_example(demo_host, DEMO)
    assert run.succeeded, run.error_text()
    sampler = next(i for i, n in prompt.items() if n["class_type"] == "KSampler")
    clips = [m["data"] for m in run.messages if m["type"] == "taesdv.preview"]
    steps = prompt[sampler]["inputs"]["steps"]
    assert [c["step"] for c in clips] == list(range(1, steps + 1))
    assert all(c["node_id"] == sampler and c["frame_count"] == 8 and c["frame_width"] == 256 for c in clips)
    saved = next(o for o in run.history["outputs"].values() if "images" in o)["images"]
    assert saved and saved[0]["filename"].endswith(".webp")


def test_roundtrip_example_keeps_the_input_frame_rate(demo_host):
    import av

    _, run = run_example(demo_host, "taesdv_video_roundtrip.json", demo_files=True)
    assert run.succeeded, run.error_text()
    video = next(o for o in run.history["outputs"].values() if o.get("images"))["images"][0]
    path = os.path.join(demo_host.base, "output", video["subfolder"], video["filename"])
    with av.open(os.path.join(demo_host.base, "input", "example.mp4")) as src, av.open(path) as out:
        assert out.streams.video[0].average_rate == src.streams.video[0].average_rate == 12
        assert out.streams.video[0].frames == src.streams.video[0].frames == 16


def test_roundtrip_example_runs_through_the_taehv_demo_file(demo_host):
    object_info = demo_host.get_json("/object_info")
    prompt = to_api(example("taesdv_video_roundtrip.json"), object_info)
    for node in prompt.values():
        node["inputs"] = {k: "random-demo-taew2_1.pth" if v == "taesdv.pth" else v for k, v in node["inputs"].items()}
    run = demo_host.run(prompt, timeout=600)
    assert run.succeeded, run.error_text()
    assert "random-demo-taew2_1.pth" in json.dumps(prompt)
    video = next(o for o in run.history["outputs"].values() if o.get("images"))["images"][0]
    import av

    with av.open(os.path.join(demo_host.base, "output", video["subfolder"], video["filename"])) as out:
        # 16 frames pad to 4 latent frames, which decode to 4 * 4 - 3 = 13
        assert out.streams.video[0].frames == 13
        frames = [f.to_ndarray(format="rgb24").astype(float) / 255 for f in out.decode(video=0)]
    # random weights, yet a clip a user can see: not black, and changing from frame to frame
    assert 0.2 < sum(f.mean() for f in frames) / len(frames) < 0.8
    assert min(abs(a - b).mean() for a, b in zip(frames, frames[1:])) > 0.01


def test_streaming_example_continues_the_clip_each_run_and_shows_how_long_it_is_and_where(demo_host):
    saved = os.path.join(demo_host.base, "output", "taesdv", "stream")
    for total in (4, 8):  # the node re-runs every queue run and continues the stream
        _, run = run_example(demo_host, "taesdv_streaming_decode.json", demo_files=True)
        assert run.succeeded, run.error_text()
        images = next(o for o in run.history["outputs"].values() if o.get("images"))["images"]
        assert len(images) == 4 and {i["type"] for i in images} == {"output"}
        shown = "".join(next(o["text"] for o in run.history["outputs"].values() if o.get("text")))
        assert shown == str(total)  # Preview Any: total_frames, the clip so far
        assert len(os.listdir(saved)) == total  # every piece's frames, in order: the clip so far


def test_svd_example_is_valid_and_needs_only_the_svd_checkpoint_and_real_weights(demo_host):
    object_info = demo_host.get_json("/object_info")
    prompt = to_api(example("taesdv_svd_live_preview_and_decode.json"), object_info)
    for node in prompt.values():  # every file but the SVD checkpoint swapped for its demo stand-in
        node["inputs"] = {k: DEMO_FILES.get(v, v) if isinstance(v, str) else v for k, v in node["inputs"].items()}
    run = demo_host.run(prompt, timeout=600)
    assert run.status == 400
    failing = {prompt[i]["class_type"] for i in run.response["node_errors"]}
    assert failing == {"ImageOnlyCheckpointLoader"}, run.error_text()
    assert "svd_xt.safetensors" in run.error_text()


def test_compare_example_lays_both_tiny_decoders_beside_the_full_vae_and_tables_them(demo_host):
    from PIL import Image

    _, run = run_example(demo_host, "taesdv_compare_decoders.json", demo_files=True)
    assert run.succeeded, run.error_text()
    saved = next(o for o in run.history["outputs"].values() if o.get("images"))["images"][0]
    with Image.open(os.path.join(demo_host.base, "output", saved["subfolder"], saved["filename"])) as clip:
        assert clip.n_frames == 4 and clip.size[0] == 3 * 256  # the demo latent's 4 frames: reference | TAESDV | TAESD
    table = "".join(next(o["text"] for o in run.history["outputs"].values() if o.get("text")))
    assert table.startswith("| decoder |")
    assert "| taesdv-random-demo.pth (TAESDV) | 4 |" in table and "| taesd-random-demo.pth (TAESD" in table


# Each node's box in whole graph units, title bar included: its position and size on the canvas;
# in Nodes 2.0, where nodes are DOM elements sized by their content, the element's rectangle.
NODE_BOXES = """() => {
  const title = LiteGraph.NODE_TITLE_HEIGHT, ds = app.canvas.ds, canvas = app.canvas.canvas.getBoundingClientRect();
  const graph = (x, y) => [(x - canvas.left) / ds.scale - ds.offset[0], (y - canvas.top) / ds.scale - ds.offset[1]];
  return app.graph.nodes.map((n) => {
    const element = document.querySelector(`[data-node-id="${n.id}"]`);
    const r = element?.getBoundingClientRect();
    const box = r ? [...graph(r.left, r.top), ...graph(r.right, r.bottom)]
                  : [n.pos[0], n.pos[1] - title, n.pos[0] + n.size[0], n.pos[1] + n.size[1]];
    return [`${n.type} #${n.id}`, box.map(Math.round)];
  });
}"""


def settled_boxes(page):
    """The node boxes once the frontend has stopped resizing nodes for what they show (pictures and
    clips load after the run). The frontend places DOM previews on a redraw: the view is nudged."""
    readings = []
    for nudge in itertools.islice(itertools.cycle((1, -1)), 40):
        page.evaluate("(dx) => { app.canvas.ds.offset[0] += dx; app.graph.setDirtyCanvas(true, true); }", nudge)
        page.wait_for_timeout(500)
        readings.append(page.evaluate(NODE_BOXES))
        if len(readings) >= 3 and readings[-1] == readings[-2] == readings[-3]:
            break
    return readings[-1]


def overlapping(boxes):
    return [(a, b) for (a, (ax0, ay0, ax1, ay1)), (b, (bx0, by0, bx1, by1)) in itertools.combinations(boxes, 2)
            if min(ax1, bx1) > max(ax0, bx0) and min(ay1, by1) > max(ay0, by0)]


@pytest.mark.skipif(not available(), reason="needs Debian's chromium and playwright (.ci/run installs both)")
@pytest.mark.parametrize("name", sorted(os.path.basename(p) for p in glob.glob(os.path.join(EXAMPLES, "*.json"))))
def test_no_node_covers_another_after_the_example_runs_in_the_real_ui(demo_ui, name):
    """Opened as the user finds it (the demo copy where there is one) in a 1280x800 window and run
    (the SVD one cannot run offline: opened only), every node has room for what it shows after the
    run, Load Video's and Load Image's pictures, Save Video's clip, the sampler's player and the saved
    clips: no node's box covers another's, on the canvas and, on the frontends where this pack
    supports it (1.49+), in Nodes 2.0, which draws nodes taller."""
    copy = demo_copy_path(demo_ui, name)
    with open(copy if os.path.exists(copy) else os.path.join(EXAMPLES, name)) as f:
        workflow = json.load(f)
    runs = "svd_xt.safetensors" not in json.dumps(workflow)
    boxes = {}
    with comfy_page(demo_ui.url, viewport=(1280, 800)) as (page, _errors):
        page.wait_for_timeout(1000)
        page.evaluate("""async ([wf, run]) => {
            window.__done = null;
            const { api } = await import('/scripts/api.js');
            for (const t of ['execution_success', 'execution_error', 'execution_interrupted'])
                api.addEventListener(t, (e) => { window.__done = e.type; }, {once: true});
            await app.loadGraphData(wf, true, true, 'example');
            if (run) await app.queuePrompt(0, 1);
        }""", [workflow, runs])
        if runs:
            page.wait_for_function("() => window.__done !== null", timeout=600_000)
            assert page.evaluate("() => window.__done") == "execution_success"
        boxes["canvas"] = settled_boxes(page)
        shot(page, f"example-{name[:-5]}-after-run-{demo_ui.frontend}.png")
        if version(demo_ui.frontend) >= (1, 49):
            with nodes_2_0(page):
                boxes["Nodes 2.0"] = settled_boxes(page)
                shot(page, f"example-{name[:-5]}-after-run-nodes-2.0-{demo_ui.frontend}.png")
    overlaps = {mode: overlapping(found) for mode, found in boxes.items()}
    assert overlaps == {mode: [] for mode in boxes}, {mode: dict(found) for mode, found in boxes.items()}
