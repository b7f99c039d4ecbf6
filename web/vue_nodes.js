// Nodes 2.0 (frontends 1.49+, setting Comfy.VueNodes.Enabled): nodes are drawn by Vue components.
// Such a node shows its latest preview still from the frontend's node output store (pinia store
// "nodeOutput"), not from a `$$canvas-image-preview` widget, so taking that widget off does not
// reach it.
//
// One of the two places this pack reaches frontend internals (the other: taesdv_templates.js):
// no extension API offers the stores. Where they are missing or renamed, the still shows under
// the clip, as before; nothing breaks.
import { app } from "../../scripts/app.js";

const VUE_NODES_SETTING = "Comfy.VueNodes.Enabled";

function vueNodesEnabled() {
  return !!app.extensionManager?.setting?.get?.(VUE_NODES_SETTING);
}

// The frontend's pinia store `id`, or null.
function frontendStore(id) {
  const pinia = document.getElementById("vue-app")?.__vue_app__?.config?.globalProperties?.$pinia;
  return pinia?._s?.get?.(id) ?? null;
}

// Takes the node's still out of the node output store, so its Vue node shows no second picture.
// The store's own action releases the still's object URL; the queue's job thumbnail keeps its
// own hold on it (the "jobPreview" store), so it still shows there. Canvas nodes keep the still
// in the store: there the player only skips drawing it (node_player.js).
function revokeStill(node) {
  const outputs = frontendStore("nodeOutput");
  const locator = frontendStore("workflow")?.nodeToNodeLocatorId?.(node);
  if (locator && outputs?.nodePreviewImages?.[locator]) outputs.revokePreviewsByLocatorId?.(locator);
}

export function hideVueStill(node) {
  if (vueNodesEnabled()) revokeStill(node);
}

// Keeps the stills off the nodes nodesWithPlayers() gives: each time the frontend stores a preview
// still, and when Nodes 2.0 is turned on (the canvas nodes' stills are in the store then).
// Returns the function that stops it.
export function keepStillsOffVueNodes(nodesWithPlayers) {
  const hideAll = (vueNodes) => {
    if (vueNodes) for (const node of nodesWithPlayers()) revokeStill(node);
  };
  const outputs = frontendStore("nodeOutput");
  const stopWatchingStore = typeof outputs?.$onAction === "function"
    ? outputs.$onAction(({ name, after }) => {
      if (name.startsWith("setNodePreviews")) after(() => hideAll(vueNodesEnabled()));
    })
    : () => {};
  const settingEvents = app.ui?.settings; // dispatches "<setting id>.change" on every change
  const onToggle = ({ detail }) => hideAll(!!detail?.value);
  settingEvents?.addEventListener?.(`${VUE_NODES_SETTING}.change`, onToggle);
  return () => {
    stopWatchingStore();
    settingEvents?.removeEventListener?.(`${VUE_NODES_SETTING}.change`, onToggle);
  };
}
