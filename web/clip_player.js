// Plays one node's TAESDV preview clips: a sprite sheet of frames drawn on a canvas in a loop,
// with play/pause, a scrubber and a frame counter. A new clip replaces the old one only once its
// image has decoded, so swaps never flash. Pure DOM: no ComfyUI imports.
//
// One player can receive clips from several samplers (a subgraph node shows the clips of every
// sampler inside it), each numbering its clips from 1: a clip is stale only against clips of
// the same prompt and the same sampler (`node_id`, the execution id).

const sourceOf = (meta) => `${meta.prompt_id}\u0000${meta.node_id}`;

export class ClipPlayer {
  // forwardEvent(event): hands wheel and pointer events over the picture to the graph canvas, so
  // zooming and dragging over the preview work as over the rest of the node.
  constructor({ doc = document, forwardEvent = null } = {}) {
    this.clip = null; // {meta, image}
    this.frame = 0;
    this.playing = true;
    this.timer = null;
    this.disposed = false;
    this.stale = false; // false, or why the shown clip is the last one ("interrupted")
    this.newestSequence = new Map(); // source -> highest sequence requested
    this.requests = 0; // arrival counter: a slow decode never replaces a clip that arrived later
    this.shownRequest = 0;
    this.forwardEvent = forwardEvent;

    this.root = doc.createElement("div");
    this.root.className = "taesdv-preview";
    Object.assign(this.root.style, { display: "flex", flexDirection: "column", gap: "4px", width: "100%", height: "100%",
      boxSizing: "border-box", overflow: "hidden" });
    this.canvas = doc.createElement("canvas");
    this.canvas.className = "taesdv-picture";
    // Fills the space it is given; object-fit keeps the frame's aspect, centred, like core previews.
    Object.assign(this.canvas.style, { display: "block", width: "100%", flex: "1 1 0", minHeight: "0", objectFit: "contain" });
    this.canvas.width = 256;
    this.canvas.height = 256;
    const bar = doc.createElement("div");
    Object.assign(bar.style, { display: "flex", alignItems: "center", gap: "6px", fontSize: "11px", flex: "0 0 auto",
      color: "var(--input-text, #ddd)" });
    this.button = doc.createElement("button");
    this.button.type = "button";
    this.button.className = "taesdv-play";
    Object.assign(this.button.style, { minWidth: "24px", cursor: "pointer" });
    this.scrubber = doc.createElement("input");
    this.scrubber.type = "range";
    this.scrubber.min = "0";
    this.scrubber.className = "taesdv-scrub";
    Object.assign(this.scrubber.style, { flex: "1 1 auto", minWidth: "40px" });
    this.counter = doc.createElement("span");
    this.counter.className = "taesdv-counter";
    this.counter.style.whiteSpace = "nowrap";
    bar.append(this.button, this.scrubber, this.counter);
    this.root.append(this.canvas, bar);

    this.onButton = () => this.setPlaying(!this.playing);
    this.onScrub = () => {
      const chosen = Number(this.scrubber.value); // read first: pausing refreshes the controls
      this.setPlaying(false);
      this.show(chosen);
    };
    this.onPictureEvent = (event) => this.forwardEvent?.(event);
    this.button.addEventListener("click", this.onButton);
    this.scrubber.addEventListener("input", this.onScrub);
    // Wheel anywhere over the player zooms the graph; pointer events only over the picture (the
    // controls keep theirs).
    this.listeners = [
      [this.root, "wheel", { passive: false }],
      [this.canvas, "pointerdown"], [this.canvas, "pointermove"], [this.canvas, "pointerup"], [this.canvas, "contextmenu"],
    ];
    for (const [target, type, options] of this.listeners) target.addEventListener(type, this.onPictureEvent, options);
    this.updateControls();
  }

  // meta: the server's taesdv.preview event without its image; imageUrl: the sprite sheet.
  async load(meta, imageUrl) {
    if (this.disposed) return false;
    const source = sourceOf(meta);
    if (meta.sequence <= (this.newestSequence.get(source) ?? 0)) return false;
    for (const key of this.newestSequence.keys()) {
      if (!key.startsWith(`${meta.prompt_id}\u0000`)) this.newestSequence.delete(key); // a new prompt: forget old ones
    }
    this.newestSequence.set(source, meta.sequence);
    const request = ++this.requests;
    const image = new Image();
    image.src = imageUrl;
    try {
      await image.decode();
    } catch (e) {
      console.warn("TAESDV preview: a clip image could not be decoded", e);
      return false;
    }
    if (this.disposed || request < this.shownRequest || this.newestSequence.get(source) !== meta.sequence) return false;
    this.shownRequest = request;
    const sameShape = this.clip && this.clip.meta.frame_count === meta.frame_count;
    this.clip = { meta, image };
    this.canvas.width = meta.frame_width;
    this.canvas.height = meta.frame_height;
    this.stale = false;
    if (!sameShape) this.frame = 0;
    this.scrubber.max = String(meta.frame_count - 1);
    this.show(this.frame % meta.frame_count);
    this.restartTimer();
    return true;
  }

  // Width / height of the frames shown, or null before the first clip.
  get aspect() {
    return this.clip ? this.clip.meta.frame_width / this.clip.meta.frame_height : null;
  }

  show(index) {
    if (!this.clip) return;
    const { meta, image } = this.clip;
    this.frame = Math.max(0, Math.min(index, meta.frame_count - 1));
    const col = this.frame % meta.columns;
    const row = Math.floor(this.frame / meta.columns);
    const ctx = this.canvas.getContext("2d");
    ctx.drawImage(image, col * meta.frame_width, row * meta.frame_height, meta.frame_width, meta.frame_height,
      0, 0, this.canvas.width, this.canvas.height);
    this.updateControls();
  }

  setPlaying(playing) {
    this.playing = playing;
    this.restartTimer();
    this.updateControls();
  }

  markStale(reason) {
    this.stale = reason;
    this.updateControls();
  }

  restartTimer() {
    clearInterval(this.timer);
    this.timer = null;
    if (!this.playing || !this.clip || this.disposed) return;
    const interval = 1000 / Math.max(0.1, this.clip.meta.fps || 8);
    this.timer = setInterval(() => this.show((this.frame + 1) % this.clip.meta.frame_count), interval);
  }

  updateControls() {
    this.button.textContent = this.playing ? "❚❚" : "▶";
    this.button.title = this.playing ? "Pause" : "Play";
    if (!this.clip) {
      this.counter.textContent = "waiting for a clip";
      return;
    }
    const m = this.clip.meta;
    this.scrubber.value = String(this.frame);
    // a cheaper preview (TAEHV without time upscaling) shows every frame_step-th frame of the clip
    const thinned = m.frame_step > 1 ? ` · every ${m.frame_step}th frame` : "";
    const note = thinned + (this.stale ? ` · ${this.stale}` : "");
    this.counter.textContent = `${this.frame + 1}/${m.frame_count} · step ${m.step}/${m.total_steps}${note}`;
  }

  dispose() {
    this.disposed = true;
    clearInterval(this.timer);
    this.timer = null;
    this.button.removeEventListener("click", this.onButton);
    this.scrubber.removeEventListener("input", this.onScrub);
    for (const [target, type, options] of this.listeners) target.removeEventListener(type, this.onPictureEvent, options);
    this.root.remove();
    this.clip = null;
    this.newestSequence.clear();
  }
}
