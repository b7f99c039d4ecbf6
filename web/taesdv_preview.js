// ComfyUI-TAESDV: plays live TAESDV preview clips on the sampler node (protocol 1, see README).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { nodesForExecutionId } from "./node_lookup.js";
import { growForPreview, playerFor, players, release, releaseDetached } from "./node_player.js";
import { pushSavedSettings, settings } from "./settings.js";

const EVENT = "taesdv.preview";

async function onClip({ detail }) {
  if (!detail || detail.protocol !== 1 || !detail.image) return;
  const { image, ...meta } = detail;
  releaseDetached();
  const graph = app.rootGraph ?? app.graph;
  for (const node of nodesForExecutionId(graph, meta.display_node_id ?? meta.node_id)) {
    const player = playerFor(node);
    if (!player) continue; // no DOM widgets in this frontend: the node keeps ComfyUI's still
    const firstClip = !player.clip;
    if (await player.load(meta, image)) {
      if (firstClip) growForPreview(node, player.aspect);
      node.setDirtyCanvas?.(true, true);
    }
  }
}

function onInterrupted() {
  for (const player of players.values()) player.markStale("interrupted");
}

let announcedClientId = null;
async function announce() {
  // Tells the server this page plays clips (protocol in README).
  if (!api.clientId || api.clientId === announcedClientId) return;
  announcedClientId = api.clientId;
  try {
    await api.fetchApi("/taesdv/preview/client", { method: "POST", body: JSON.stringify({ client_id: api.clientId }) });
  } catch (e) {
    announcedClientId = null;
  }
}

function onReconnected() {
  announcedClientId = null;
  announce();
}

app.registerExtension({
  name: "taesdv.preview",
  settings,
  async setup() {
    api.addEventListener(EVENT, onClip);
    api.addEventListener("execution_interrupted", onInterrupted);
    api.addEventListener("status", announce);
    api.addEventListener("reconnected", onReconnected);
    announce();
    pushSavedSettings(app.extensionManager?.setting);
    // Read by the browser tests and handy when debugging in the console.
    window.TAESDV_PREVIEW = { players, release };
  },
});
