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
# The newest comfyui-frontend-package, installed apart by `scripts/setup-host.sh --test`.
NEWEST_FRONTEND = os.path.join(ROOT, ".host", "frontend-newest")

# Errors the stock frontend logs on this offline machine, with or without this pack. The newest
# frontend also asks for the Jobs API (/api/jobs), which the 0.3.75 server does not have.
CORE_OFFLINE_NOISE = re.compile(r"api\.comfy\.org|Failed to load resource: the server responded with a status of 404|"
                                r"Failed to load resource: net::ERR_FAILED|Jobs API|Failed to fetch (jobs|queue|history)")


def frontends() -> list[tuple[str, str | None]]:
    """(label, --front-end-root or None for the venv's pinned package) for each frontend to test."""
    found = [("pinned", None)]
    static = os.path.join(NEWEST_FRONTEND, "comfyui_frontend_package", "static")
    versions = glob.glob(os.path.join(NEWEST_FRONTEND, "comfyui_frontend_package-*.dist-info"))
    label = os.path.basename(versions[0]).split("-")[1].removesuffix(".dist") if versions else "newest"
    found.append((label, static if os.path.isfile(os.path.join(static, "index.html")) else None))
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
