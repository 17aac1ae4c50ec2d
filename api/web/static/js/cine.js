// Cine player for a fluoroscopy upload with the tracked dome drawn on every frame.
// Space plays or pauses, the arrow keys step, Home and End jump (when the player has focus).
// With onPick, a click on a frame reports the panel pixel clicked (column, row from 0);
// setHint draws a dome hint (a pixel of the first frame) on the first frame.

import { imageUrl } from "./api.js";
import { h, num, words } from "./dom.js";

const STATUS_COLOURS = {
  tracked: "#3ddc84",
  low_confidence: "#ffb020",
  needs_confirmation: "#c58cff",
  lost: "#ff5c5c",
};
const HINT_COLOUR = "#4dd0ff";
const SPEEDS = [0.25, 0.5, 1, 2, 4];

export class Cine {
  constructor({ uploadId, track, rows, columns, onFrame = () => {}, onPick = null }) {
    this.track = track;
    this.onFrame = onFrame;
    this.hint = null;
    this.index = 0;
    this.speed = 1;
    this.timer = null;
    this.images = track.map((_, i) => {
      const image = new Image();
      image.decoding = "async";
      image.addEventListener("load", () => {
        if (i === this.index) this.draw();
      });
      image.src = imageUrl(`/uploads/${uploadId}/frames/${track[i].frame_index}`);
      return image;
    });
    this.canvas = h("canvas", {
      width: columns,
      height: rows,
      class: "cine-canvas",
      id: "cine-canvas",
      role: "img",
      "aria-label": "Fluoroscopy frame with the tracked diaphragm dome",
    });
    this.slider = h("input", {
      type: "range",
      id: "cine-slider",
      min: 0,
      max: track.length - 1,
      value: 0,
      "aria-label": "Frame",
    });
    if (onPick) {
      this.canvas.classList.add("pickable");
      this.canvas.addEventListener("click", (event) => onPick(this.pixelAt(event)));
    }
    this.slider.addEventListener("input", () => this.seek(Number(this.slider.value)));
    this.playButton = h("button", { type: "button", id: "cine-play" }, "Play");
    this.playButton.addEventListener("click", () => (this.timer ? this.pause() : this.play()));
    const back = h("button", { type: "button", id: "cine-back", "aria-label": "Previous frame" }, "◀ Step");
    const forward = h("button", { type: "button", id: "cine-forward", "aria-label": "Next frame" }, "Step ▶");
    back.addEventListener("click", () => this.step(-1));
    forward.addEventListener("click", () => this.step(1));
    const speed = h(
      "select",
      { id: "cine-speed", "aria-label": "Speed" },
      SPEEDS.map((value) => h("option", { value, selected: value === 1 }, `${value}×`)),
    );
    speed.addEventListener("change", () => {
      this.speed = Number(speed.value);
    });
    this.info = h("p", { class: "cine-info", id: "cine-info" });
    this.element = h(
      "div",
      { class: "cine", tabindex: 0, "aria-label": "Cine player: space to play or pause, arrows to step" },
      this.canvas,
      h("div", { class: "cine-controls" }, this.playButton, back, forward, h("label", {}, "Speed ", speed), this.slider),
      this.info,
    );
    this.element.addEventListener("keydown", (event) => this.key(event));
    this.draw();
  }

  key(event) {
    const actions = {
      " ": () => (this.timer ? this.pause() : this.play()),
      ArrowLeft: () => this.step(-1),
      ArrowRight: () => this.step(1),
      Home: () => this.seek(0),
      End: () => this.seek(this.track.length - 1),
    };
    const action = actions[event.key];
    if (action && event.target.tagName !== "SELECT" && event.target.tagName !== "INPUT") {
      event.preventDefault();
      action();
    }
  }

  // The panel pixel under a click: canvas pixel i spans [i, i + 1). Whole pixels: a click on a
  // scaled canvas is no finer, and the tracker searches around the hint anyway.
  pixelAt(event) {
    const box = this.canvas.getBoundingClientRect();
    const at = (offset, extent, size) => Math.min(size - 1, Math.max(0, Math.floor((offset * size) / extent)));
    return {
      column: at(event.clientX - box.left, box.width, this.canvas.width),
      row: at(event.clientY - box.top, box.height, this.canvas.height),
    };
  }

  setHint(hint) {
    this.hint = hint;
    this.draw();
  }

  seek(index) {
    this.index = Math.max(0, Math.min(this.track.length - 1, index));
    this.slider.value = this.index;
    this.draw();
    this.onFrame(this.index, this.track[this.index]);
  }

  step(delta) {
    this.pause();
    this.seek(this.index + delta);
  }

  play() {
    if (this.timer) return;
    this.playButton.textContent = "Pause";
    this.playButton.setAttribute("aria-pressed", "true");
    if (this.index >= this.track.length - 1) this.seek(0);
    const next = () => {
      const now = this.track[this.index];
      const following = this.track[this.index + 1];
      if (!following) {
        this.pause();
        return;
      }
      const delayMs = Math.max(10, ((following.time_s - now.time_s) * 1000) / this.speed);
      this.timer = setTimeout(() => {
        this.seek(this.index + 1);
        if (this.timer) next();
      }, delayMs);
    };
    this.timer = -1;
    next();
  }

  pause() {
    if (this.timer && this.timer !== -1) clearTimeout(this.timer);
    this.timer = null;
    this.playButton.textContent = "Play";
    this.playButton.setAttribute("aria-pressed", "false");
  }

  destroy() {
    this.pause();
    // Stop loading frames nobody will see.
    for (const image of this.images) image.removeAttribute("src");
  }

  draw() {
    if (this.track.length === 0) {
      this.info.textContent = "No frames.";
      return;
    }
    const ctx = this.canvas.getContext("2d");
    const image = this.images[this.index];
    const observation = this.track[this.index];
    const loaded = image.complete && image.naturalWidth > 0;
    this.element.dataset.image = loaded ? "shown" : "loading";
    if (loaded) {
      ctx.drawImage(image, 0, 0, this.canvas.width, this.canvas.height);
    } else {
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    }
    const colour = STATUS_COLOURS[observation.status];
    const scale = this.canvas.width / 512;
    ctx.lineWidth = Math.max(1.5, 2 * scale);
    const curve = observation.dome_curve_px || [];
    if (observation.status !== "lost" && curve.length > 1) {
      ctx.strokeStyle = colour;
      ctx.beginPath();
      curve.forEach(([column, row], i) => (i ? ctx.lineTo(column + 0.5, row + 0.5) : ctx.moveTo(column + 0.5, row + 0.5)));
      ctx.stroke();
    }
    if (observation.status !== "lost" && observation.apex_column !== null) {
      const x = observation.apex_column + 0.5;
      const y = observation.apex_row + 0.5;
      const arm = 10 * Math.max(1, scale);
      ctx.strokeStyle = colour;
      ctx.beginPath();
      ctx.moveTo(x - arm, y);
      ctx.lineTo(x + arm, y);
      ctx.moveTo(x, y - arm);
      ctx.lineTo(x, y + arm);
      ctx.stroke();
    }
    if (this.hint && this.index === 0) {
      ctx.strokeStyle = HINT_COLOUR;
      ctx.beginPath();
      ctx.arc(this.hint.column + 0.5, this.hint.row + 0.5, 6 * Math.max(1, scale), 0, 2 * Math.PI);
      ctx.stroke();
    }
    const size = Math.round(16 * Math.max(1, scale));
    const label =
      observation.status === "lost" ? "DOME LOST" : `${words(observation.status)} · confidence ${num(observation.confidence, 2)}`;
    ctx.font = `${size}px system-ui, sans-serif`;
    // A dark backing box: the label stays readable over bright liver.
    ctx.fillStyle = "rgba(0, 0, 0, 0.75)";
    ctx.fillRect(4, 4, ctx.measureText(label).width + 12, size + 10);
    ctx.fillStyle = colour;
    ctx.fillText(label, 10, size + 4);
    this.info.textContent =
      `Frame ${this.index + 1} / ${this.track.length} · t = ${num(observation.time_s, 2, "s")} · ` +
      `SI ${observation.si_isocentre_mm === null ? "—" : num(observation.si_isocentre_mm, 1, "mm")} · ` +
      `${words(observation.status)}`;
    this.element.dataset.frame = String(this.index);
  }
}
