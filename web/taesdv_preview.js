// ComfyUI-TAESDV: plays live TAESDV preview clips on the sampler node (protocol 1, see README).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { ClipPlayer } from "./clip_player.js";
import { nodesForExecutionId } from "./node_lookup.js";

const EVENT = "taesdv.preview";
const WIDGET = "taesdv_preview";
const SETTING_ENABLED = "TAESDV.Preview.Enabled";
const SETTING_FPS = "TAESDV.Preview.FPS";
const SETTING_SIZE = "TAESDV.Preview.MaxSize";

// Players by node; a WeakMap so removed nodes never stay reachable from here.
const players = new WeakMap();
const activeNodes = new Set();

function playerFor(node) {
  let player = players.get(node);
  if (player && !player.disposed) return player;
  player = new ClipPlayer();
  const widget = node.addDOMWidget(WIDGET, "taesdv-preview", player.root, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => 120,
  });
  widget.serialize = false; // never part of the node's saved widget values
  players.set(node, player);
  activeNodes.add(node);
  const previousOnRemoved = node.onRemoved;
  node.onRemoved = function (...args) {
    dispose(node);
    return previousOnRemoved?.apply(this, args);
  };
  const size = node.computeSize?.();
  if (size) node.setSize([Math.max(node.size[0], size[0]), Math.max(node.size[1], size[1], 320)]);
  return player;
}

function dispose(node) {
  const player = players.get(node);
  if (!player) return;
  player.dispose();
  players.delete(node);
  activeNodes.delete(node);
  const index = node.widgets?.findIndex((w) => w.name === WIDGET) ?? -1;
  if (index >= 0) {
    node.widgets[index].onRemove?.();
    node.widgets.splice(index, 1);
  }
}

function disposeDetached() {
  // Workflow switches replace the graph; players of nodes no longer in it are released.
  for (const node of [...activeNodes]) {
    if (!node.graph || node.graph.getNodeById?.(node.id) !== node) dispose(node);
  }
}

async function onClip({ detail }) {
  if (!detail || detail.protocol !== 1 || !detail.image) return;
  const { image, ...meta } = detail;
  disposeDetached();
  const nodes = nodesForExecutionId(app.rootGraph ?? app.graph, meta.display_node_id ?? meta.node_id);
  for (const node of nodes) {
    if (await playerFor(node).load(meta, image)) node.setDirtyCanvas?.(true, true);
  }
}

function onInterrupted() {
  for (const node of activeNodes) players.get(node)?.markStale("interrupted");
}

let announcedClientId = null;
async function announce() {
  // Tells the server this page plays clips, so it sends no contact-sheet stills to it.
  if (!api.clientId || api.clientId === announcedClientId) return;
  announcedClientId = api.clientId;
  try {
    await api.fetchApi("/taesdv/preview/client", { method: "POST", body: JSON.stringify({ client_id: api.clientId }) });
  } catch (e) {
    announcedClientId = null;
  }
}

async function pushSettings(changes) {
  try {
    const response = await api.fetchApi("/taesdv/preview/settings", { method: "POST", body: JSON.stringify(changes) });
    if (!response.ok) console.warn("TAESDV preview settings refused:", (await response.json()).error);
  } catch (e) {
    console.warn("TAESDV preview settings could not be sent", e);
  }
}

app.registerExtension({
  name: "taesdv.preview",
  settings: [
    {
      id: SETTING_ENABLED,
      category: ["TAESDV", "Previews", "Enabled"],
      name: "Animated TAESDV previews for every SD-family sampler (no node needed)",
      tooltip: "Server-wide. The TAESDV Latent Preview node turns previews on for one model, with its own settings.",
      type: "boolean",
      defaultValue: false,
      onChange: (value, old) => { if (old !== undefined && value !== old) pushSettings({ enabled: !!value }); },
    },
    {
      id: SETTING_FPS,
      category: ["TAESDV", "Previews", "FPS"],
      name: "Playback rate of global previews (frames per second)",
      type: "slider",
      attrs: { min: 1, max: 30, step: 1 },
      defaultValue: 8,
      onChange: (value, old) => { if (old !== undefined && value !== old) pushSettings({ fps: Number(value) }); },
    },
    {
      id: SETTING_SIZE,
      category: ["TAESDV", "Previews", "Size"],
      name: "Largest side of global preview frames (pixels)",
      type: "combo",
      options: [128, 192, 256, 320, 384, 512],
      defaultValue: 256,
      onChange: (value, old) => { if (old !== undefined && value !== old) pushSettings({ max_size: Number(value) }); },
    },
  ],
  async setup() {
    api.addEventListener(EVENT, onClip);
    api.addEventListener("execution_interrupted", onInterrupted);
    api.addEventListener("status", announce);
    api.addEventListener("reconnected", () => { announcedClientId = null; announce(); });
    announce();
    const settings = app.extensionManager?.setting;
    if (settings?.get(SETTING_ENABLED)) {
      pushSettings({ enabled: true, fps: Number(settings.get(SETTING_FPS)), max_size: Number(settings.get(SETTING_SIZE)) });
    }
    // Read by the browser tests and handy when debugging in the console.
    window.TAESDV_PREVIEW = { players, activeNodes, dispose };
  },
});
