"""Debian's Chromium driven by Playwright against the real ComfyUI frontend on loopback.

Shared by the browser tests (helpers live here, never in a test_*.py module).
"""
from __future__ import annotations

import glob
import os
import re
import shutil
from contextlib import contextmanager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, "test-artifacts")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
# Errors the stock frontend logs on this offline machine, with or without this pack. Frontends
# newer than a host also ask for APIs it does not have (the Jobs API, /api/jobs, on 0.3.75); the
# Templates dialog of 1.49+ reaches for core templates' models on huggingface.co.
CORE_OFFLINE_NOISE = re.compile(r"api\.comfy\.org|huggingface\.co|Failed to load resource: the server responded with a status of 404|"
                                r"Failed to load resource: net::ERR_FAILED|Jobs API|Failed to fetch (jobs|queue|history)")


def frontends() -> list[tuple[str, str | None]]:
    """(version, --front-end-root or None for the venv's package) for each frontend to test: the
    host's own pin first, then the newest (scripts/test.sh names them). Run without test.sh: the
    venv's package, and the newest where setup-host.sh --test installed it."""
    from comfy_host import FRONTENDS
    if FRONTENDS:
        return [(label, root or None) for label, root in FRONTENDS]
    from importlib.metadata import version
    found = [(version("comfyui-frontend-package"), None)]
    for static in glob.glob(os.path.join(ROOT, ".host", "frontends", "*", "comfyui_frontend_package", "static")):
        found.append((static.split(os.sep)[-3], static))
    return found


@contextmanager
def comfy_page(url: str, viewport=(1400, 900), init_script: str | None = None):
    """A page with the ComfyUI app loaded; yields (page, console_errors). init_script runs before the app."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            if init_script:
                page.add_init_script(init_script)
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")) else route.abort())
            page.goto(url)
            page.wait_for_function("() => window.app && window.app.graph && window.TAESDV_PREVIEW", timeout=60_000)
            yield page, errors
        finally:
            browser.close()


def available() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return os.path.exists(CHROMIUM)


def shot(page, name):
    """Saves a screenshot to test-artifacts/NAME."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, name))


def new_errors(errors, baseline):
    """Console errors since `baseline`, without the stock frontend's offline noise."""
    return [e for e in errors[baseline:] if not CORE_OFFLINE_NOISE.search(e)]


def queue(page, graph):
    """Loads an API-format graph into the page and queues it; wait_done() reports how it ended."""
    page.evaluate("""async (g) => {
        window.__done = null;
        const { api } = await import('/scripts/api.js');
        for (const t of ['execution_success', 'execution_error', 'execution_interrupted'])
            api.addEventListener(t, (e) => { window.__done = e.type; }, {once: true});
        await app.loadApiJson(g, 'taesdv-test');
        await app.queuePrompt(0, 1);
    }""", graph)


def wait_done(page, timeout=120_000):
    page.wait_for_function("() => window.__done !== null", timeout=timeout)
    return page.evaluate("() => window.__done")


VUE_NODES = "Comfy.VueNodes.Enabled"  # "Nodes 2.0": nodes drawn by Vue components (frontends 1.49+)


@contextmanager
def nodes_2_0(page):
    """Nodes 2.0 on in this page, and off again after: the host keeps settings for later tests."""
    set_setting(page, VUE_NODES, True)
    try:
        yield
    finally:
        set_setting(page, VUE_NODES, False)


def set_setting(page, setting_id, value):
    page.evaluate("async ([id, v]) => { await app.extensionManager.setting.set(id, v); }", [setting_id, value])
    page.wait_for_timeout(800)  # the frontend re-renders the nodes
