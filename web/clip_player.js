// Plays one node's TAESDV preview clips: a sprite sheet of frames drawn on a canvas in a loop,
// with play/pause, a scrubber and a frame counter. A new clip replaces the old one only once its
// image has decoded, so swaps never flash. Pure DOM: no ComfyUI imports.

export class ClipPlayer {
  constructor(doc = document) {
    this.clip = null; // {meta, image}
    this.frame = 0;
    this.playing = true;
    this.timer = null;
    this.disposed = false;
    this.pendingSequence = 0;

    this.root = doc.createElement("div");
    this.root.className = "taesdv-preview";
    Object.assign(this.root.style, { display: "flex", flexDirection: "column", gap: "4px", width: "100%", height: "100%" });
    this.canvas = doc.createElement("canvas");
    Object.assign(this.canvas.style, { width: "100%", flex: "1 1 auto", minHeight: "0", objectFit: "contain", imageRendering: "auto" });
    this.canvas.width = 256;
    this.canvas.height = 256;
    const bar = doc.createElement("div");
    Object.assign(bar.style, { display: "flex", alignItems: "center", gap: "6px", fontSize: "11px", color: "var(--input-text, #ddd)" });
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
    this.button.addEventListener("click", this.onButton);
    this.scrubber.addEventListener("input", this.onScrub);
    this.updateControls();
  }

  // meta: the server's taesdv.preview event without its image; imageUrl: the sprite sheet.
  async load(meta, imageUrl) {
    const current = this.clip?.meta;
    if (current && current.prompt_id === meta.prompt_id && meta.sequence <= current.sequence) return false;
    if (meta.prompt_id === this.pendingPrompt && meta.sequence <= this.pendingSequence) return false;
    this.pendingPrompt = meta.prompt_id;
    this.pendingSequence = meta.sequence;
    const image = new Image();
    image.src = imageUrl;
    try {
      await image.decode();
    } catch (e) {
      console.warn("TAESDV preview: a clip image could not be decoded", e);
      return false;
    }
    if (this.disposed || meta.sequence !== this.pendingSequence || meta.prompt_id !== this.pendingPrompt) return false;
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
    const interval = 1000 / Math.max(1, this.clip.meta.fps || 8);
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
    const note = this.stale ? ` · ${this.stale}` : "";
    this.counter.textContent = `${this.frame + 1}/${m.frame_count} · step ${m.step}/${m.total_steps}${note}`;
  }

  dispose() {
    this.disposed = true;
    clearInterval(this.timer);
    this.timer = null;
    this.button.removeEventListener("click", this.onButton);
    this.scrubber.removeEventListener("input", this.onScrub);
    this.root.remove();
    this.clip = null;
  }
}
