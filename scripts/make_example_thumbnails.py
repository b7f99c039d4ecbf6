"""Screenshots each example workflow in the real UI as its template thumbnail (example_workflows/NAME.jpg).

    .venv/bin/python scripts/make_example_thumbnails.py              # starts the pinned ComfyUI itself
    .venv/bin/python scripts/make_example_thumbnails.py --url http://127.0.0.1:8188   # a running server
    .venv/bin/python scripts/make_example_thumbnails.py --full DIR   # also keeps the 1280x800 screenshots
    .venv/bin/python scripts/make_example_thumbnails.py --full DIR --chrome   # ... with the menus, as a user sees it

ComfyUI 0.3.75 serves a pack's example_workflows/ as /api/workflow_templates/<pack>/, and the
frontend's Templates dialog shows /api/workflow_templates/<pack>/<name>.jpg on each card (a
placeholder where that is missing). For each example this loads the JSON as the Templates dialog
does (app.loadGraphData with its saved view, extra.ds) in a 1280x800 Chromium window, hides the
frontend's menus, screenshots the canvas, crops it to the graph and saves it as a 512x320 JPEG
(about 20-30 KB).
Run it after scripts/make_example_workflows.py. Needs Chromium and playwright (as the browser tests).
"""
import argparse
import glob
import io
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from browser import comfy_page  # noqa: E402

EXAMPLES = os.path.join(ROOT, "example_workflows")
WINDOW = (1280, 800)
THUMBNAIL = (512, 320)
# The model files the examples name (empty stand-ins: only the loaders' lists are shown)
MODEL_NAMES = {"vae_approx": ("taesdv.pth", "taesd_decoder.pth"),
               "checkpoints": ("v1-5-pruned-emaonly.safetensors", "svd_xt.safetensors")}

# Everything drawn over the canvas (menus, tabs, minimap, zoom controls, banners) hidden; the
# canvas and the nodes' own DOM widgets (text areas) kept; LiteGraph's info corner off.
HIDE_CHROME = """() => {
  const style = document.createElement('style');
  style.textContent = `body * { visibility: hidden !important; }
    #graph-canvas, .dom-widget, .dom-widget * { visibility: visible !important; }`;
  document.head.appendChild(style);
  app.canvas.show_info = false;
}"""

# The graph's rectangle on the screen (titles included), as the saved view shows it.
GRAPH_RECT = """() => {
  const ds = app.canvas.ds, title = LiteGraph.NODE_TITLE_HEIGHT, all = app.graph._nodes;
  const x0 = Math.min(...all.map((n) => n.pos[0])), x1 = Math.max(...all.map((n) => n.pos[0] + n.size[0]));
  const y0 = Math.min(...all.map((n) => n.pos[1] - title)), y1 = Math.max(...all.map((n) => n.pos[1] + n.size[1]));
  return [(x0 + ds.offset[0]) * ds.scale, (y0 + ds.offset[1]) * ds.scale,
          (x1 + ds.offset[0]) * ds.scale, (y1 + ds.offset[1]) * ds.scale];
}"""


def crop_to_graph(shot, rect, margin=16):
    """The graph's rectangle, widened (or heightened) to the thumbnail's aspect, inside the window."""
    x0, y0, x1, y1 = rect[0] - margin, rect[1] - margin, rect[2] + margin, rect[3] + margin
    aspect = THUMBNAIL[0] / THUMBNAIL[1]
    if (x1 - x0) / (y1 - y0) < aspect:
        grow = (y1 - y0) * aspect - (x1 - x0)
        x0, x1 = x0 - grow / 2, x1 + grow / 2
    else:
        grow = (x1 - x0) / aspect - (y1 - y0)
        y0, y1 = y0 - grow / 2, y1 + grow / 2
    dx = max(0, -x0) - max(0, x1 - shot.width)  # shift back inside the window
    dy = max(0, -y0) - max(0, y1 - shot.height)
    box = [round(v) for v in (x0 + dx, y0 + dy, x1 + dx, y1 + dy)]
    return shot.crop((max(0, box[0]), max(0, box[1]), min(shot.width, box[2]), min(shot.height, box[3])))


def thumbnails(url: str, full: str | None = None, chrome: bool = False) -> None:
    from PIL import Image

    with comfy_page(url, viewport=WINDOW) as (page, _errors):
        page.wait_for_timeout(1000)
        if not chrome:
            page.evaluate(HIDE_CHROME)
        for path in sorted(glob.glob(os.path.join(EXAMPLES, "*.json"))):
            name = os.path.splitext(os.path.basename(path))[0]
            with open(path) as f:
                workflow = json.load(f)
            page.evaluate("async ([wf, name]) => { await app.loadGraphData(wf, true, true, name); }", [workflow, name])
            page.wait_for_timeout(1000)
            png = page.screenshot()
            rect = page.evaluate(GRAPH_RECT)
            if full:
                os.makedirs(full, exist_ok=True)
                with open(os.path.join(full, name + ".png"), "wb") as f:
                    f.write(png)
            with Image.open(io.BytesIO(png)) as shot:
                if not chrome:
                    shot = crop_to_graph(shot, rect)
                thumb = shot.convert("RGB").resize(THUMBNAIL, Image.LANCZOS)
            out = os.path.join(EXAMPLES, name + ".jpg")
            thumb.save(out, "JPEG", quality=85, optimize=True)
            print("wrote", os.path.relpath(out, ROOT), os.path.getsize(out), "bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running ComfyUI with this pack (default: start the pinned one)")
    parser.add_argument("--full", metavar="DIR", help="also save the full 1280x800 screenshots as DIR/NAME.png")
    parser.add_argument("--chrome", action="store_true",
                        help="keep the frontend's menus (to check what a user sees when loading an example)")
    args = parser.parse_args()
    if args.url:
        thumbnails(args.url, args.full, args.chrome)
        return
    from comfy_host import ComfyHost

    base = tempfile.mkdtemp()
    for folder, names in MODEL_NAMES.items():  # so the frontend does not outline the loaders as missing files
        os.makedirs(os.path.join(base, "models", folder), exist_ok=True)
        for model in names:
            open(os.path.join(base, "models", folder, model), "wb").close()
    host = ComfyHost(base).start()
    try:
        thumbnails(host.url, args.full, args.chrome)
    finally:
        host.stop()


if __name__ == "__main__":
    main()
