"""The extension in a real browser (Debian Chromium + Playwright) on the real ComfyUI frontend.

Every test runs against the host's own pinned frontend and against the newest one (installed apart
by `scripts/setup-host.sh --test`, served with --front-end-root; scripts/hosts.sh names them).
Screenshots land in test-artifacts/ (look at them). Console errors are compared with those the
same page shows before any TAESDV activity: the stock frontend logs a few of its own here.
"""
import json
import os
import re

import pytest
import torch

from safetensors.torch import save_file

import graphs
from reference_taehv import random_state_dict
from browser import ARTIFACTS, available, comfy_page, frontends, new_errors, nodes_2_0, queue, shot, wait_done
from comfy_host import ComfyHost
from helpers import random_image_taesd

pytestmark = pytest.mark.skipif(not available(), reason="needs Debian's chromium and playwright (.ci/run installs both)")

TESTS = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(TESTS), "example_workflows")
FRONTENDS = frontends()
TAEHV_FILE = "taew2_1-random.safetensors"


@pytest.fixture(scope="module", params=FRONTENDS, ids=[f"frontend-{label}" for label, _ in FRONTENDS])
def ui(request, tmp_path_factory, state_dict):
    """The real ComfyUI serving one frontend version, this pack linked in."""
    label, root = request.param
    if root is not None and not os.path.isfile(os.path.join(root, "index.html")):
        pytest.skip(f"frontend {label} is not installed at {root}: run `bash scripts/setup-host.sh --test`")
    base = str(tmp_path_factory.mktemp(f"comfy_ui_{label}"))
    host = ComfyHost(base, extra_packs={"taesdv_test_nodes": os.path.join(TESTS, "comfy_test_nodes")},
                     extra_args=["--front-end-root", root] if root else [])
    torch.save(state_dict, os.path.join(base, "models", "vae_approx", "taesdv.pth"))
    save_file(random_state_dict("wan2_1", seed=1), os.path.join(base, "models", "vae_approx", TAEHV_FILE))
    host.start()
    host.frontend = label
    yield host
    host.stop()
    os.makedirs(ARTIFACTS, exist_ok=True)
    with open(os.path.join(ARTIFACTS, f"comfy-server-{label}.log"), "w") as f:
        f.write(host.log())


def name(ui, what):
    return f"{what}-{ui.frontend}.png"


# The sampler node's player as the user sees it (and its timer).
PLAYER_STATE = """() => [...window.TAESDV_PREVIEW.players].map(([n, p]) => ({
    id: String(n.id), type: n.type, frame: p.frame, playing: p.playing, timer: p.timer !== null,
    meta: p.clip && p.clip.meta, counter: p.counter.textContent, canvas: p.canvas.toDataURL()}))"""

# Counts the live event listeners of every element, so a test can see they are all removed.
LISTENER_TRACKER = """(() => {
    const live = new WeakMap();
    const key = (type, fn, opts) => `${type}|${typeof opts === 'object' ? !!opts?.capture : !!opts}`;
    const add = EventTarget.prototype.addEventListener, remove = EventTarget.prototype.removeEventListener;
    EventTarget.prototype.addEventListener = function (type, fn, opts) {
        if (!live.has(this)) live.set(this, new Map());
        const m = live.get(this), k = key(type, fn, opts);
        if (!m.has(k)) m.set(k, new Set());
        m.get(k).add(fn);
        return add.call(this, type, fn, opts);
    };
    EventTarget.prototype.removeEventListener = function (type, fn, opts) {
        live.get(this)?.get(key(type, fn, opts))?.delete(fn);
        return remove.call(this, type, fn, opts);
    };
    window.__liveListeners = (el) => [...(live.get(el)?.values() ?? [])].reduce((n, s) => n + s.size, 0);
})()"""


def bring_player_into_view(page):
    """Scale 1, the player's node near the top left corner (clear of the minimap and menus)."""
    page.evaluate("""() => { const n = [...window.TAESDV_PREVIEW.players.keys()][0];
                             app.canvas.ds.scale = 1; app.canvas.ds.offset = [-n.pos[0] + 120, -n.pos[1] + 110];
                             app.canvas.setDirty(true, true); }""")
    page.wait_for_timeout(500)


def player_ready(page):
    page.wait_for_function("() => [...window.TAESDV_PREVIEW.players.values()].some(p => p.clip)", timeout=60_000)


def sample_and_show_the_player(page, steps: int):
    """Run an 8-frame 64 px sampler previewing every step, to the end; its player in view."""
    queue(page, graphs.sampling_graph(frames=8, size=64, steps=steps, preview={"budget_percent": 100}))
    player_ready(page)
    assert wait_done(page) == "execution_success"
    bring_player_into_view(page)


def test_sampler_node_plays_the_clip_keeps_the_last_one_and_cleans_up(ui):
    with comfy_page(ui.url, init_script=LISTENER_TRACKER) as (page, errors):
        page.wait_for_timeout(1500)
        baseline = len(errors)
        assert not [e for e in errors if "taesdv" in e.lower()], errors
        queue(page, graphs.sampling_graph(frames=8, size=64, steps=6, preview={"budget_percent": 100, "fps": 8}))
        page.wait_for_function("() => window.TAESDV_PREVIEW.players.size > 0", timeout=60_000)
        shot(page, name(ui, "preview-during-sampling"))
        assert wait_done(page) == "execution_success"

        # Animated: the drawn frame changes over time, all frames of the last step's clip.
        first = page.evaluate(PLAYER_STATE)
        assert [s["type"] for s in first] == ["KSampler"]
        page.wait_for_timeout(400)
        second = page.evaluate(PLAYER_STATE)[0]
        first = first[0]
        assert first["meta"]["step"] == second["meta"]["step"] == 6 and first["meta"]["total_steps"] == 6
        assert first["meta"]["sequence"] == second["meta"]["sequence"]
        assert first["frame"] != second["frame"] and first["canvas"] != second["canvas"]
        assert re.fullmatch(r"\d/8 · step 6/6", second["counter"])
        shot(page, name(ui, "preview-after-run"))

        # The last clip stays after the run, still playing.
        page.wait_for_timeout(1200)
        later = page.evaluate(PLAYER_STATE)[0]
        assert later["meta"]["sequence"] == first["meta"]["sequence"] and later["playing"] and later["timer"]

        # Pause holds the frame; scrubbing shows the chosen frame.
        bring_player_into_view(page)
        page.click(".taesdv-play")
        paused = page.evaluate(PLAYER_STATE)[0]
        page.wait_for_timeout(500)
        assert page.evaluate(PLAYER_STATE)[0]["frame"] == paused["frame"] and not paused["playing"]
        page.evaluate("""() => { const s = document.querySelector('.taesdv-scrub'); s.value = '5';
                                 s.dispatchEvent(new Event('input')); }""")
        scrubbed = page.evaluate(PLAYER_STATE)[0]
        assert scrubbed["frame"] == 5 and scrubbed["counter"].startswith("6/8")
        shot(page, name(ui, "preview-paused-scrubbed"))

        # Other nodes keep their own previews: only the sampler got a player.
        assert page.evaluate("() => app.graph.nodes.filter(n => n.widgets?.some(w => w.name === 'taesdv_preview')).map(n => n.type)") == ["KSampler"]

        # Removing the node releases the player, its timer, its DOM and every listener it added.
        page.evaluate("() => { window.__player = [...window.TAESDV_PREVIEW.players.values()][0]; }")
        before = page.evaluate("() => ['root', 'canvas', 'button', 'scrubber'].map(k => window.__liveListeners(window.__player[k]))")
        assert sum(before) >= 7, before  # wheel; 4 pointer/menu on the picture; click; input
        page.evaluate("() => app.graph.remove([...window.TAESDV_PREVIEW.players.keys()][0])")
        assert page.evaluate("() => window.TAESDV_PREVIEW.players.size") == 0
        assert page.evaluate("() => document.querySelectorAll('.taesdv-preview').length") == 0
        assert page.evaluate("() => ['root', 'canvas', 'button', 'scrubber'].map(k => window.__liveListeners(window.__player[k]))") == [0, 0, 0, 0]
        assert page.evaluate("() => window.__player.timer") is None
        assert new_errors(errors, baseline) == []


def test_a_wan_sampler_node_plays_every_frame_of_the_taehv_clip(ui):
    with comfy_page(ui.url) as (page, errors):
        page.wait_for_timeout(1500)
        baseline = len(errors)
        queue(page, graphs.wan_sampling_graph(TAEHV_FILE, width=64, height=48, length=13, steps=3,
                                              preview={"budget_percent": 100, "fps": 16}))
        player_ready(page)
        assert wait_done(page) == "execution_success"
        first = page.evaluate(PLAYER_STATE)[0]
        page.wait_for_timeout(400)
        second = page.evaluate(PLAYER_STATE)[0]
        meta = second["meta"]  # 13 frames -> 4 latent frames -> 4*4-3 = 13 frames, each 8x the latent
        assert (second["type"], meta["step"], meta["frame_count"], meta["frame_width"], meta["frame_height"]) == (
            "KSampler", 3, 13, 64, 48)
        assert first["frame"] != second["frame"] and first["canvas"] != second["canvas"]
        assert re.fullmatch(r"\d+/13 · step 3/3", second["counter"])
        bring_player_into_view(page)
        shot(page, name(ui, "wan-taehv-clip"))
        assert new_errors(errors, baseline) == []


def test_workflow_switch_and_interruption(ui):
    with comfy_page(ui.url) as (page, errors):
        page.wait_for_timeout(1000)
        baseline = len(errors)
        queue(page, graphs.sampling_graph(frames=8, size=64, steps=60, channels=64, preview={"budget_percent": 100}))
        player_ready(page)
        page.evaluate("async () => { await (await import('/scripts/api.js')).api.interrupt(); }")
        assert wait_done(page) == "execution_interrupted"
        state = page.evaluate(PLAYER_STATE)[0]
        assert state["meta"] is not None and "interrupted" in state["counter"]  # last complete clip kept, marked
        shot(page, name(ui, "preview-interrupted"))

        # Switching to another workflow releases every player.
        page.evaluate("async (g) => { await app.loadApiJson(g, 'other'); }", graphs.decode_graph("unused", frames=2))
        page.wait_for_timeout(300)
        assert page.evaluate("() => window.TAESDV_PREVIEW.players.size") == 0
        assert page.evaluate("() => document.querySelectorAll('.taesdv-preview').length") == 0
        assert new_errors(errors, baseline) == []


def open_taesdv_settings(page):
    page.keyboard.press("Control+,")
    page.wait_for_timeout(800)
    page.get_by_text("TAESDV", exact=True).first.click()
    page.wait_for_timeout(500)


def test_settings_dialog_switch_reaches_the_server(ui):
    with comfy_page(ui.url) as (page, errors):
        assert ui.get_json("/taesdv/preview/settings")["enabled"] is False
        try:
            page.evaluate("async () => { await app.extensionManager.setting.set('TAESDV.Preview.Enabled', true); }")
            page.wait_for_timeout(500)
            assert ui.get_json("/taesdv/preview/settings")["enabled"] is True
            page.evaluate("async () => { await app.extensionManager.setting.set('TAESDV.Preview.FPS', 12); }")
            page.wait_for_timeout(500)
            assert ui.get_json("/taesdv/preview/settings")["fps"] == 12
        finally:
            page.evaluate("async () => { await app.extensionManager.setting.set('TAESDV.Preview.Enabled', false);"
                          " await app.extensionManager.setting.set('TAESDV.Preview.FPS', 8); }")
            page.wait_for_timeout(500)
        assert ui.get_json("/taesdv/preview/settings")["enabled"] is False
        open_taesdv_settings(page)
        assert page.get_by_text("Animated TAESDV previews for every sampler with a matching tiny decoder").count() >= 1
        shot(page, name(ui, "settings-dialog"))




def test_frame_size_setting_lists_sizes_in_pixels_and_shows_the_chosen_one(ui):
    with comfy_page(ui.url) as (page, errors):
        open_taesdv_settings(page)
        combo = page.get_by_role("combobox", name="Largest side of global preview frames")
        assert combo.inner_text().strip() == "256 px"  # the default shows, not a blank box
        listbox = page.locator(f'[id="{combo.get_attribute("aria-controls")}"]')  # this combo's list only
        combo.click()
        page.wait_for_timeout(400)
        options = [t.strip() for t in listbox.get_by_role("option").all_inner_texts()]
        shot(page, name(ui, "settings-size-combo-open"))
        assert options == ["128 px", "192 px", "256 px", "320 px", "384 px", "512 px"]
        try:
            listbox.get_by_role("option", name="384 px").click()
            page.wait_for_timeout(500)
            assert page.locator('[id="TAESDV.Preview.MaxSize"]').inner_text().strip() == "384 px"
            assert page.evaluate("() => app.extensionManager.setting.get('TAESDV.Preview.MaxSize')") == 384
            assert ui.get_json("/taesdv/preview/settings")["max_size"] == 384
            shot(page, name(ui, "settings-size-combo-chosen"))
        finally:
            page.evaluate("async () => { await app.extensionManager.setting.set('TAESDV.Preview.MaxSize', 256); }")
            page.wait_for_timeout(300)
        assert ui.get_json("/taesdv/preview/settings")["max_size"] == 256


PICTURE = """() => {
    const [node, p] = [...window.TAESDV_PREVIEW.players][0];
    const r = p.canvas.getBoundingClientRect(), scale = app.canvas.ds.scale;
    return {x: r.x + r.width / 2, y: r.y + r.height / 2, width: r.width, height: r.height,
            nodeWidth: node.size[0] * scale, nodeHeight: node.size[1] * scale, scale,
            offset: [...app.canvas.ds.offset], nodePos: [...node.pos]};
}"""


def test_player_fills_the_node_preview_area_and_leaves_zoom_and_drag_to_the_canvas(ui):
    with comfy_page(ui.url) as (page, errors):
        page.wait_for_timeout(1000)
        baseline = len(errors)
        sample_and_show_the_player(page, steps=3)
        shot(page, name(ui, "preview-fills-node"))
        box = page.evaluate(PICTURE)
        # The picture spans the node's width (less the widget margins) and is no thumbnail.
        assert box["width"] >= 0.85 * box["nodeWidth"] and box["height"] >= 150, box

        # It grows with the node.
        page.evaluate("""() => { const n = [...window.TAESDV_PREVIEW.players.keys()][0];
                                 n.setSize([n.size[0] * 1.6, n.size[1] * 1.6]); app.canvas.setDirty(true, true); }""")
        page.wait_for_timeout(500)
        grown = page.evaluate(PICTURE)
        shot(page, name(ui, "preview-grown-with-node"))
        assert grown["width"] > 1.4 * box["width"] and grown["height"] > 1.4 * box["height"], (box, grown)

        # The wheel over the picture zooms the graph.
        page.mouse.move(grown["x"], grown["y"])
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(400)
        zoomed = page.evaluate(PICTURE)
        assert zoomed["scale"] > grown["scale"], (grown, zoomed)

        # A middle-button drag over the picture pans the graph, as over the rest of the node.
        page.mouse.move(zoomed["x"], zoomed["y"])
        page.mouse.down(button="middle")
        page.mouse.move(zoomed["x"] + 60, zoomed["y"] + 40, steps=6)
        page.mouse.up(button="middle")
        page.wait_for_timeout(300)
        panned = page.evaluate(PICTURE)
        assert panned["offset"] != zoomed["offset"] and panned["nodePos"] == zoomed["nodePos"], (zoomed, panned)

        shot(page, name(ui, "preview-after-zoom-and-drag"))
        assert new_errors(errors, baseline) == []


# The player's picture and every picture the sampler's node shows (a Vue node: an element in the page).
ON_VUE_NODE = """() => {
    const [node, p] = [...window.TAESDV_PREVIEW.players][0];
    const r = p.canvas.getBoundingClientRect(), scale = app.canvas.ds.scale;
    const element = document.querySelector(`[data-node-id="${node.id}"]`);
    const shown = (e) => { const b = e.getBoundingClientRect(); return b.width > 0 && b.height > 0; };
    return {width: r.width, height: r.height, nodeWidth: node.size[0] * scale, scale,
            x: r.x + r.width / 2, y: r.y + r.height / 2, vueNode: !!element?.contains(p.canvas),
            pictures: element ? [...element.querySelectorAll('img, canvas, video')].filter(shown).map(e => e.className) : null};
}"""

# The queue's job thumbnail (the frontend's "jobPreview" store) holds core's still of the running job.
STILL_IN_JOB_THUMBNAIL = """() => JSON.stringify(document.getElementById('vue-app')?.__vue_app__?.config.globalProperties
                                     .$pinia._s.get('jobPreview')?.$state ?? {}).includes('blob:')"""


def test_nodes_2_0_shows_the_player_as_large_as_canvas_nodes_do_and_alone(ui):
    # Sampled with canvas nodes, then Nodes 2.0 turned on: the same player moves into the Vue node,
    # as large as before, and the frontend's still of the last step does not show beside it.
    with comfy_page(ui.url) as (page, errors):
        page.wait_for_timeout(1000)
        baseline = len(errors)
        sample_and_show_the_player(page, steps=6)
        canvas_node = page.evaluate(PICTURE)
        shot(page, name(ui, "nodes-2.0-off"))
        with nodes_2_0(page):
            bring_player_into_view(page)
            vue_node = page.evaluate(ON_VUE_NODE)
            shot(page, name(ui, "nodes-2.0-on-after-run"))
            assert vue_node["vueNode"] and vue_node["pictures"] == ["taesdv-picture"], vue_node
            assert vue_node["height"] >= max(200, 0.95 * canvas_node["height"]), (canvas_node, vue_node)
            assert vue_node["width"] >= max(0.85 * vue_node["nodeWidth"], 0.95 * canvas_node["width"]), (canvas_node, vue_node)
        assert new_errors(errors, baseline) == []


def test_nodes_2_0_player_during_sampling_keeps_its_size_controls_and_cleans_up(ui):
    with comfy_page(ui.url, init_script=LISTENER_TRACKER) as (page, errors), nodes_2_0(page):
        page.wait_for_timeout(500)
        baseline = len(errors)
        settings_listeners = page.evaluate("() => window.__liveListeners(app.ui.settings)")
        queue(page, graphs.sampling_graph(frames=8, size=64, steps=12, preview={"budget_percent": 100}))
        player_ready(page)
        page.wait_for_function(STILL_IN_JOB_THUMBNAIL, timeout=60_000)  # core's still of a step has come
        during = page.evaluate(ON_VUE_NODE)
        shot(page, name(ui, "nodes-2.0-during-sampling"))
        assert wait_done(page, timeout=240_000) == "execution_success"
        assert during["vueNode"] and during["pictures"] == ["taesdv-picture"], during
        bring_player_into_view(page)
        after = page.evaluate(ON_VUE_NODE)
        shot(page, name(ui, "nodes-2.0-after-run"))
        assert after["pictures"] == ["taesdv-picture"] and after["height"] >= 200, after
        assert after["width"] >= 0.85 * after["nodeWidth"], after
        page.click(".taesdv-play")  # the controls work
        assert page.evaluate(PLAYER_STATE)[0]["playing"] is False

        # Made small, the node keeps the player's minimum (as canvas nodes do); made large, it grows.
        page.evaluate("() => { const n = [...window.TAESDV_PREVIEW.players.keys()][0]; n.setSize([n.size[0], 100]); }")
        page.wait_for_timeout(500)
        small = page.evaluate(ON_VUE_NODE)
        shot(page, name(ui, "nodes-2.0-node-made-small"))
        assert small["height"] >= 100, small
        page.evaluate("() => { const n = [...window.TAESDV_PREVIEW.players.keys()][0]; n.setSize([n.size[0] * 1.6, 900]); }")
        page.wait_for_timeout(500)
        grown = page.evaluate(ON_VUE_NODE)
        assert grown["width"] > 1.4 * after["width"] and grown["height"] > 1.4 * after["height"], (after, grown)

        # The wheel over the picture zooms the graph.
        page.mouse.move(grown["x"], grown["y"])
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(400)
        assert page.evaluate(ON_VUE_NODE)["scale"] > grown["scale"]

        # Removing the node releases the player and the listener that kept stills off Vue nodes.
        page.evaluate("() => app.graph.remove([...window.TAESDV_PREVIEW.players.keys()][0])")
        page.wait_for_timeout(300)
        assert page.evaluate("() => window.TAESDV_PREVIEW.players.size") == 0
        assert page.evaluate("() => document.querySelectorAll('.taesdv-preview').length") == 0
        assert page.evaluate("() => window.__liveListeners(app.ui.settings)") == settings_listeners
        assert new_errors(errors, baseline) == []


# What the frontend keeps as the node's latest preview still: app.nodePreviewImages (its preview
# store, read by the node-output and queue views), and in newer frontends also the job's preview
# in the "jobPreview" store, read by the queue's job thumbnails.
FRONTEND_STILLS = """() => {
    const pinia = document.getElementById('vue-app')?.__vue_app__?.config.globalProperties.$pinia;
    const jobs = pinia?._s.get('jobPreview');
    const node = [...window.TAESDV_PREVIEW.players.keys()][0];
    return {nodePreviews: Object.entries(app.nodePreviewImages ?? {}).map(([k, v]) => [k, [...(v ?? [])]]),
            jobPreviews: jobs ? JSON.stringify(jobs.$state).length : null,
            stillOnNode: !!node?.widgets?.some(w => w.name === '$$canvas-image-preview'),
            player: !!node};
}"""


def test_standard_still_feeds_the_frontends_preview_store_while_the_node_plays_the_clip(ui):
    with comfy_page(ui.url) as (page, errors):
        page.wait_for_timeout(1000)
        queue(page, graphs.sampling_graph(frames=8, size=64, steps=12, preview={"budget_percent": 100}))
        player_ready(page)
        page.wait_for_function("() => Object.keys(app.nodePreviewImages ?? {}).length > 0", timeout=60_000)
        during = page.evaluate(FRONTEND_STILLS)
        shot(page, name(ui, "still-in-store-clip-on-node"))
        assert wait_done(page, timeout=240_000) == "execution_success"
        assert during["player"] and not during["stillOnNode"], during
        assert any(k.endswith("13") and v and v[0].startswith("blob:") for k, v in during["nodePreviews"]), during


def test_without_dom_widgets_the_node_keeps_the_standard_preview(ui):
    # A frontend without node.addDOMWidget: no player, no errors, and the node draws ComfyUI's still.
    with comfy_page(ui.url) as (page, errors):
        page.wait_for_timeout(1000)
        baseline = len(errors)
        queue(page, graphs.sampling_graph(frames=8, size=64, steps=4, preview={"budget_percent": 100}))
        page.evaluate("() => { for (const n of app.graph.nodes) n.addDOMWidget = undefined; }")
        assert wait_done(page) == "execution_success"
        assert page.evaluate("() => window.TAESDV_PREVIEW.players.size") == 0
        assert new_errors(errors, baseline) == []


def test_a_subgraph_node_shows_the_clips_of_each_inner_sampler(ui):
    # Every inner sampler numbers its clips from 1: the parent's player must take clip 1 of the second
    # sampler after clip 3 of the first, and still drop a repeated or older clip of the same sampler.
    with comfy_page(ui.url) as (page, errors):
        taken = page.evaluate("""async () => {
            const { ClipPlayer } = await import('/extensions/ComfyUI-TAESDV/clip_player.js');
            const c = document.createElement('canvas'); c.width = 16; c.height = 8;
            const ctx = c.getContext('2d'); ctx.fillStyle = '#f00'; ctx.fillRect(0, 0, 8, 8);
            const sheet = c.toDataURL('image/png');
            const meta = (node, sequence, prompt = 'p1') => ({protocol: 1, prompt_id: prompt, node_id: node,
                display_node_id: node, sequence, step: sequence, total_steps: 9, frame_count: 2, fps: 8,
                frame_width: 8, frame_height: 8, columns: 2, rows: 1});
            const player = new ClipPlayer();
            const results = [];
            for (const [node, seq, prompt] of [['5:12', 1], ['5:12', 3], ['5:13', 1], ['5:13', 1], ['5:12', 2],
                                               ['5:13', 2], ['5:12', 1, 'p2']])
                results.push(await player.load(meta(node, seq, prompt), sheet));
            const shown = player.clip.meta.prompt_id + ' ' + player.clip.meta.node_id;
            player.dispose();
            return {results, shown};
        }""")
        assert taken == {"results": [True, True, True, False, False, True, True], "shown": "p2 5:12"}


def test_node_lookup_handles_subgraph_paths_and_long_ids(ui):
    with comfy_page(ui.url) as (page, errors):
        found = page.evaluate("""async () => {
            const { nodesForExecutionId } = await import('/extensions/ComfyUI-TAESDV/node_lookup.js');
            const inner = { id: '123456789012345678', graph: null };
            const sub = { getNodeById: (id) => String(id) === inner.id ? inner : null };
            const outer = { id: 5, subgraph: sub };
            const root = { getNodeById: (id) => String(id) === '5' ? outer : null };
            return [nodesForExecutionId(root, '5:123456789012345678').map(n => String(n.id)),
                    nodesForExecutionId(root, '5').map(n => String(n.id)),
                    nodesForExecutionId(root, '7').length];
        }""")
        assert found == [["5", "123456789012345678"], ["5"], 0]


def test_compare_decoders_output_shows_labelled_clips_and_the_table(ui):
    # The node's two outputs as a user sees them at 100% after a run of the Compare example: the
    # side-by-side clip (reference | TAESDV | TAESD, 256 px each, labelled with file and family) in
    # Save Animated WEBP and the markdown table in Preview Any, both at the example's own sizes.
    torch.save(random_image_taesd("decoder", seed=2), os.path.join(ui.base, "models", "vae_approx", "taesd_decoder.pth"))
    with open(os.path.join(EXAMPLES, "taesdv_compare_decoders.json")) as f:
        sizes = {n["type"]: n["size"] for n in json.load(f)["nodes"]}
    graph = {"1": graphs.loader(), "2": graphs.latent_clip(frames=4, height=32, width=32),
             "3": graphs.loader(name="taesd_decoder.pth"),
             "7": graphs.decode(model="1", samples="2"),  # stands in for the full VAE's reference frames
             "4": {"class_type": "TAESDVCompareDecoders", "inputs": {"samples": ["2", 0], "decoder_a": ["1", 0],
                                                                     "decoder_b": ["3", 0], "reference": ["7", 0]}},
             "5": {"class_type": "SaveAnimatedWEBP", "inputs": {
                 "images": ["4", 0], "filename_prefix": "taesdv/compare", "fps": 8.0, "lossless": False,
                 "quality": 90, "method": "default"}},
             "6": {"class_type": "PreviewAny", "inputs": {"source": ["4", 1]}}}
    with comfy_page(ui.url) as (page, errors):
        page.wait_for_timeout(1000)
        baseline = len(errors)
        # Laid out as the example is before queueing (a user runs it as loaded): 100%, clear of the menus
        page.evaluate("""async ([g, imageSize, tableSize]) => {
            window.__done = null;
            const { api } = await import('/scripts/api.js');
            for (const t of ['execution_success', 'execution_error', 'execution_interrupted'])
                api.addEventListener(t, (e) => { window.__done = e.type; }, {once: true});
            await app.loadApiJson(g, 'taesdv-test');
            const image = app.graph.nodes.find(n => n.type === 'SaveAnimatedWEBP');
            const table = app.graph.nodes.find(n => n.type === 'PreviewAny');
            image.pos = [0, 0]; image.size = imageSize;
            table.pos = [0, imageSize[1] + 60]; table.size = tableSize;
            for (const n of app.graph.nodes) if (n !== image && n !== table) n.pos = [2000, n.pos[1]];
            app.canvas.ds.scale = 1; app.canvas.ds.offset = [120, 140];
            app.graph.setDirtyCanvas(true, true);
            await app.queuePrompt(0, 1);
        }""", [graph, sizes["SaveAnimatedWEBP"], sizes["PreviewAny"]])
        assert wait_done(page) == "execution_success"
        page.wait_for_timeout(1500)
        # The frontend places the animated WebP's DOM element on the canvas's next redraw (a user's
        # pointer over the canvas makes one; headless, nothing does): nudge the view to get it.
        page.evaluate("() => { app.canvas.ds.offset = [121, 140]; app.graph.setDirtyCanvas(true, true); }")
        page.wait_for_timeout(1000)
        shown = page.evaluate("""() => {
            const image = app.graph.nodes.find(n => n.type === 'SaveAnimatedWEBP');
            const table = app.graph.nodes.find(n => n.type === 'PreviewAny');
            return {images: (image.imgs || []).map((i) => [i.naturalWidth, i.naturalHeight]),
                    text: table.widgets.map((w) => String(w.value ?? '')).join(' ')};
        }""")
        assert shown["images"] and shown["images"][0][0] == 3 * 256
        assert shown["text"].startswith("| decoder |")
        assert "| taesdv.pth (TAESDV) | 4 |" in shown["text"] and "| taesd_decoder.pth (TAESD" in shown["text"]
        shot(page, name(ui, "compare-decoders-output"))
        assert new_errors(errors, baseline) == []


@pytest.mark.parametrize("example", sorted(n for n in os.listdir(EXAMPLES) if n.endswith(".json")))
def test_example_workflows_load_in_the_real_ui(ui, example):
    with open(os.path.join(EXAMPLES, example)) as f:
        workflow = json.load(f)
    with comfy_page(ui.url, viewport=(1280, 800)) as (page, errors):
        page.wait_for_timeout(1000)
        baseline = len(errors)
        result = page.evaluate("""async (wf) => {
            await app.loadGraphData(wf, true, true, 'example');
            const missing = app.graph.nodes.filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type);
            const prompt = (await app.graphToPrompt()).output;
            const ds = app.canvas.ds, title = LiteGraph.NODE_TITLE_HEIGHT;  // each node's box on the screen
            const boxes = app.graph.nodes.map(n => [(n.pos[0] + ds.offset[0]) * ds.scale, (n.pos[1] - title + ds.offset[1]) * ds.scale,
                                                    (n.pos[0] + n.size[0] + ds.offset[0]) * ds.scale,
                                                    (n.pos[1] + n.size[1] + ds.offset[1]) * ds.scale]);
            return {missing, types: Object.values(prompt).map(n => n.class_type).sort(), prompt, boxes, scale: ds.scale};
        }""", workflow)
        assert result["missing"] == []
        # The saved view shows the whole graph in a 1280x800 window, with text (LiteGraph drops it below 0.6)
        assert result["scale"] >= 0.6
        assert all(x0 >= 60 and y0 >= 80 and x1 <= 1280 and y1 <= 800 for x0, y0, x1, y1 in result["boxes"]), result["boxes"]
        page.wait_for_timeout(500)
        assert page.get_by_text("Invalid workflow").count() == 0, "the frontend rejected the file's schema"
        assert result["types"] == sorted(n["type"] for n in workflow["nodes"] if n["type"] not in ("Note", "MarkdownNote"))
        taesdv_nodes = [n for n in result["prompt"].values() if n["class_type"].startswith("TAESDV")]
        assert taesdv_nodes and all(n["inputs"] for n in taesdv_nodes)
        shot(page, name(ui, f"example-{example.removesuffix('.json')}"))
        assert new_errors(errors, baseline) == []


def test_example_workflows_are_offered_as_templates(ui):
    templates = ui.get_json("/api/workflow_templates")
    assert sorted(templates.get("ComfyUI-TAESDV", [])) == sorted(n.removesuffix(".json") for n in os.listdir(EXAMPLES) if n.endswith(".json"))


def test_templates_dialog_shows_the_demo_first_among_the_packs_examples(ui):
    """Templates -> ComfyUI-TAESDV: the one example that runs on the demo files alone comes first,
    then the others by name (the server lists them in file-system order)."""
    expected = ["taesdv_demo_live_preview", *sorted(n.removesuffix(".json") for n in os.listdir(EXAMPLES)
                                                     if n.endswith(".json") and not n.startswith("taesdv_demo_"))]
    with comfy_page(ui.url) as (page, errors):
        baseline = len(errors)  # what the stock page logs before the dialog opens
        page.evaluate("() => app.extensionManager.command.execute('Comfy.BrowseTemplates')")
        page.get_by_text("ComfyUI-TAESDV", exact=True).first.click()
        cards = [page.get_by_text(n, exact=True).first for n in expected]
        for card in cards:
            card.wait_for(timeout=30_000)
        shot(page, name(ui, "templates-dialog"))
        boxes = [card.bounding_box() for card in cards]
        shown = [n for _, n in sorted(((round(b["y"] / 20), b["x"]), n) for b, n in zip(boxes, expected))]
        assert shown == expected
        assert new_errors(errors, baseline) == []
