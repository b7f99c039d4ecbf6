"""The extension in a real browser (Debian Chromium + Playwright) on the real ComfyUI frontend.

Screenshots land in test-artifacts/ (look at them). Console errors are compared with those the
same page shows before any TAESDV activity: the stock frontend logs a few of its own here
(user.css 404s, blocked calls to api.comfy.org on a machine without internet).
"""
import os
import re
import time

import pytest

import graphs
from browser import available, comfy_page
from conftest import ARTIFACTS

pytestmark = pytest.mark.skipif(not available(), reason="needs Debian's chromium and playwright (.ci/run installs both)")

# Errors the stock frontend logs on this offline machine, with or without this pack.
CORE_OFFLINE_NOISE = re.compile(r"api\.comfy\.org|Failed to load resource: the server responded with a status of 404|"
                                r"Failed to load resource: net::ERR_FAILED")

PLAYER_STATE = """() => [...window.TAESDV_PREVIEW.activeNodes].map(n => {
    const p = window.TAESDV_PREVIEW.players.get(n);
    return {id: String(n.id), type: n.type, frame: p.frame, playing: p.playing, timer: p.timer !== null,
            meta: p.clip && p.clip.meta, counter: p.counter.textContent, canvas: p.canvas.toDataURL()};
})"""


def shot(page, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, name))


def queue(page, graph):
    page.evaluate("""async (g) => {
        window.__done = null;
        const done = (e) => { window.__done = e.type; };
        for (const t of ['execution_success', 'execution_error', 'execution_interrupted'])
            window.app.api ? null : null, (await import('/scripts/api.js')).api.addEventListener(t, done, {once: true});
        await app.loadApiJson(g, 'taesdv-test');
        await app.queuePrompt(0, 1);
    }""", graph)


def wait_done(page, timeout=120_000):
    page.wait_for_function("() => window.__done !== null", timeout=timeout)
    return page.evaluate("() => window.__done")


def new_errors(errors, baseline):
    return [e for e in errors[baseline:] if not CORE_OFFLINE_NOISE.search(e)]


def test_sampler_node_plays_the_clip_keeps_the_last_one_and_cleans_up(comfy):
    with comfy_page(comfy.url) as (page, errors):
        page.wait_for_timeout(1500)
        baseline = len(errors)
        assert not [e for e in errors if "taesdv" in e.lower()], errors
        queue(page, graphs.sampling_graph(frames=8, size=64, steps=6, preview={"budget_percent": 100, "fps": 8}))
        page.wait_for_function("() => window.TAESDV_PREVIEW.activeNodes.size > 0", timeout=60_000)
        shot(page, "preview-during-sampling.png")
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
        shot(page, "preview-after-run.png")

        # The last clip stays after the run, still playing.
        page.wait_for_timeout(1200)
        later = page.evaluate(PLAYER_STATE)[0]
        assert later["meta"]["sequence"] == first["meta"]["sequence"] and later["playing"] and later["timer"]

        # Pause holds the frame; scrubbing shows the chosen frame.
        page.click(".taesdv-play")
        paused = page.evaluate(PLAYER_STATE)[0]
        page.wait_for_timeout(500)
        assert page.evaluate(PLAYER_STATE)[0]["frame"] == paused["frame"] and not paused["playing"]
        page.evaluate("""() => { const s = document.querySelector('.taesdv-scrub'); s.value = '5';
                                 s.dispatchEvent(new Event('input')); }""")
        scrubbed = page.evaluate(PLAYER_STATE)[0]
        assert scrubbed["frame"] == 5 and scrubbed["counter"].startswith("6/8")
        shot(page, "preview-paused-scrubbed.png")

        # Other nodes keep their own previews: only the sampler got a player.
        assert page.evaluate("() => app.graph.nodes.filter(n => n.widgets?.some(w => w.name === 'taesdv_preview')).map(n => n.type)") == ["KSampler"]

        # Removing the node releases the player, its timer and its DOM.
        page.evaluate("() => { const n = [...window.TAESDV_PREVIEW.activeNodes][0]; app.graph.remove(n); }")
        assert page.evaluate("() => window.TAESDV_PREVIEW.activeNodes.size") == 0
        assert page.evaluate("() => document.querySelectorAll('.taesdv-preview').length") == 0
        assert new_errors(errors, baseline) == []


def test_workflow_switch_and_interruption(comfy):
    with comfy_page(comfy.url) as (page, errors):
        page.wait_for_timeout(1000)
        baseline = len(errors)
        queue(page, graphs.sampling_graph(frames=8, size=64, steps=60, channels=64, preview={"budget_percent": 100}))
        page.wait_for_function("() => [...window.TAESDV_PREVIEW.activeNodes].some(n => window.TAESDV_PREVIEW.players.get(n).clip)", timeout=60_000)
        page.evaluate("async () => { await (await import('/scripts/api.js')).api.interrupt(); }")
        assert wait_done(page) == "execution_interrupted"
        state = page.evaluate(PLAYER_STATE)[0]
        assert state["meta"] is not None and "interrupted" in state["counter"]  # last complete clip kept, marked
        shot(page, "preview-interrupted.png")

        # Switching to another workflow releases every player.
        page.evaluate("async (g) => { await app.loadApiJson(g, 'other'); }", graphs.decode_graph("unused", frames=2))
        page.wait_for_timeout(300)
        assert page.evaluate("() => window.TAESDV_PREVIEW.activeNodes.size") == 0
        assert page.evaluate("() => document.querySelectorAll('.taesdv-preview').length") == 0
        assert new_errors(errors, baseline) == []


def test_settings_dialog_switch_reaches_the_server(comfy):
    with comfy_page(comfy.url) as (page, errors):
        assert comfy.get_json("/taesdv/preview/settings")["enabled"] is False
        try:
            page.evaluate("async () => { await app.extensionManager.setting.set('TAESDV.Preview.Enabled', true); }")
            page.wait_for_timeout(500)
            assert comfy.get_json("/taesdv/preview/settings")["enabled"] is True
            page.evaluate("async () => { await app.extensionManager.setting.set('TAESDV.Preview.FPS', 12); }")
            page.wait_for_timeout(500)
            assert comfy.get_json("/taesdv/preview/settings")["fps"] == 12
        finally:
            page.evaluate("async () => { await app.extensionManager.setting.set('TAESDV.Preview.Enabled', false);"
                          " await app.extensionManager.setting.set('TAESDV.Preview.FPS', 8); }")
            page.wait_for_timeout(500)
        assert comfy.get_json("/taesdv/preview/settings")["enabled"] is False
        # the settings dialog lists them under TAESDV
        page.keyboard.press("Control+,")
        page.wait_for_timeout(800)
        page.get_by_text("TAESDV", exact=True).first.click()
        page.wait_for_timeout(500)
        assert page.get_by_text("Animated TAESDV previews for every SD-family sampler").count() >= 1
        shot(page, "settings-dialog.png")


def test_node_lookup_handles_subgraph_paths_and_long_ids(comfy):
    with comfy_page(comfy.url) as (page, errors):
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


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example_workflows")


@pytest.mark.parametrize("name", sorted(os.listdir(EXAMPLES)))
def test_example_workflows_load_in_the_real_ui(comfy, name):
    import json

    with open(os.path.join(EXAMPLES, name)) as f:
        workflow = json.load(f)
    with comfy_page(comfy.url) as (page, errors):
        page.wait_for_timeout(1000)
        baseline = len(errors)
        result = page.evaluate("""async (wf) => {
            await app.loadGraphData(wf, true, true, 'example');
            const missing = app.graph.nodes.filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type);
            const prompt = (await app.graphToPrompt()).output;
            return {missing, types: Object.values(prompt).map(n => n.class_type).sort(), prompt};
        }""", workflow)
        assert result["missing"] == []
        page.wait_for_timeout(500)
        assert page.get_by_text("Invalid workflow").count() == 0, "the frontend rejected the file's schema"
        assert result["types"] == sorted(n["type"] for n in workflow["nodes"] if n["type"] not in ("Note", "MarkdownNote"))
        taesdv_nodes = [n for n in result["prompt"].values() if n["class_type"].startswith("TAESDV")]
        assert taesdv_nodes and all(n["inputs"] for n in taesdv_nodes)
        shot(page, f"example-{name.removesuffix('.json')}.png")
        assert new_errors(errors, baseline) == []


def test_example_workflows_are_offered_as_templates(comfy):
    templates = comfy.get_json("/api/workflow_templates")
    assert sorted(templates.get("ComfyUI-TAESDV", [])) == sorted(n.removesuffix(".json") for n in os.listdir(EXAMPLES))
