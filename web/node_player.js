// Puts a ClipPlayer on a graph node, in the node's preview area (below its widgets, the node's
// full width, growing with the node), and takes it off again when the node goes away.
//
// Only documented extension APIs: node.addDOMWidget, node.onRemoved, node.onDrawBackground,
// app.canvas. Where one is missing the player is not attached and ComfyUI's standard preview
// still shows on the node as usual. Nodes 2.0 (Vue-drawn nodes) need internals: vue_nodes.js.
import { app } from "../../scripts/app.js";
import { ClipPlayer } from "./clip_player.js";
import { hideVueStill, keepStillsOffVueNodes } from "./vue_nodes.js";

export const WIDGET = "taesdv_preview";
const MIN_HEIGHT = 160; // px of graph space, like ComfyUI's own image preview area
const MARGIN = 10; // px of graph space around the player, the frontend's default for DOM widgets
// The frontend's own still-image preview widget on a node (not an API: if it is renamed, the
// still shows beside the clip, nothing breaks).
const CORE_STILL_WIDGET = "$$canvas-image-preview";

// Players by node. A Map holds its nodes strongly, so every entry is released explicitly: when the
// node is removed (onRemoved) and when a workflow switch leaves the node out of the graph.
export const players = new Map();
// While there are players: stops the frontend's store hook that keeps stills off their Vue nodes.
let stopHidingVueStills = null;

// Wheel and pointer events over the picture go to the graph canvas, so zoom and drag work over
// the preview as over the rest of the node. A copy is dispatched there, as the frontend does for
// its own animated previews.
function forwardToCanvas(event) {
  const target = app.canvas?.canvas;
  if (!target || typeof target.dispatchEvent !== "function") return;
  event.preventDefault();
  event.stopPropagation();
  if (event.type === "contextmenu") return; // the canvas opens its menu on pointerdown
  target.dispatchEvent(new event.constructor(event.type, event));
}

export function playerFor(node) {
  const existing = players.get(node);
  if (existing && !existing.disposed) return existing;
  if (typeof node.addDOMWidget !== "function") return null; // fail soft: the standard still shows
  const player = new ClipPlayer({ forwardEvent: forwardToCanvas });
  // Vue nodes (Nodes 2.0) lay the element out by CSS and ignore getMinHeight: its own min-height
  // keeps the same minimum there. Canvas nodes give it the widget's height less the margins.
  player.root.style.minHeight = `${MIN_HEIGHT - 2 * MARGIN}px`;
  const widget = node.addDOMWidget(WIDGET, "taesdv-preview", player.root, {
    serialize: false,
    hideOnZoom: false,
    margin: MARGIN,
    getMinHeight: () => MIN_HEIGHT,
  });
  widget.serialize = false; // never part of the node's saved widget values
  const restore = hideCoreStill(node, player);
  player.detach = () => {
    restore();
    node.onRemoved = previousOnRemoved;
  };
  const previousOnRemoved = node.onRemoved;
  node.onRemoved = function (...args) {
    release(node);
    return previousOnRemoved?.apply(this, args);
  };
  players.set(node, player);
  stopHidingVueStills ??= keepStillsOffVueNodes(() => players.keys());
  growForPreview(node, 1);
  return player;
}

// The node shows the clip instead of ComfyUI's still of the same step. The still itself stays
// where the frontend keeps it (its preview store, read by the queue and job thumbnails): only the
// node's own drawing of it is skipped while the player is on the node.
function hideCoreStill(node, player) {
  const hadOwn = Object.prototype.hasOwnProperty.call(node, "onDrawBackground");
  const original = node.onDrawBackground;
  removeCoreStill(node);
  hideVueStill(node);
  node.onDrawBackground = function (...args) {
    if (player.disposed) return original?.apply(this, args);
    removeCoreStill(this);
  };
  return () => {
    if (hadOwn) node.onDrawBackground = original;
    else delete node.onDrawBackground;
  };
}

function removeCoreStill(node) {
  const index = node.widgets?.findIndex((w) => w.name === CORE_STILL_WIDGET) ?? -1;
  if (index < 0) return;
  node.widgets[index].onRemove?.();
  node.widgets.splice(index, 1);
  node.imgs = undefined;
}

// Makes the node tall enough for the preview at the node's current width (never narrower or
// shorter than it is): the picture then fills the width, as core image previews do.
export function growForPreview(node, aspect) {
  const size = node.computeSize?.();
  if (!size || !node.size) return;
  const pictureHeight = Math.max(MIN_HEIGHT, Math.round(node.size[0] / (aspect || 1)));
  const wanted = size[1] - MIN_HEIGHT + pictureHeight + 28; // + the controls bar
  if (node.size[1] < wanted) node.setSize([Math.max(node.size[0], size[0]), wanted]);
}

export function release(node) {
  const player = players.get(node);
  if (!player) return;
  players.delete(node);
  if (players.size === 0) {
    stopHidingVueStills?.();
    stopHidingVueStills = null;
  }
  player.dispose();
  player.detach?.();
  const index = node.widgets?.findIndex((w) => w.name === WIDGET) ?? -1;
  if (index >= 0) {
    node.widgets[index].onRemove?.();
    node.widgets.splice(index, 1);
  }
  node.setDirtyCanvas?.(true, true);
}

// Workflow switches replace the graph: players of nodes no longer in it are released.
export function releaseDetached() {
  for (const node of [...players.keys()]) {
    if (!node.graph || node.graph.getNodeById?.(node.id) !== node) release(node);
  }
}
