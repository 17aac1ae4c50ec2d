// A breathing-trace chart on a canvas: SI position (superior up) against time, with bands,
// threshold lines, shaded spans (breath holds), markers (lost frames) and a cursor.
// Clicking the plot reports the time under the pointer.

const COLOURS = {
  axis: "#9aa7b4",
  grid: "#2a3440",
  trace: "#5ec8ff",
  low: "#ffb020",
  lost: "#ff5c5c",
  band: "rgba(94, 200, 255, 0.12)",
  threshold: "#ff9f43",
  span: "rgba(180, 140, 255, 0.18)",
  cursor: "#ffffff",
  text: "#d7e0ea",
};

export class TraceChart {
  constructor(canvas, { onPick = null, xLabel = "time (s)", yLabel = "SI at isocentre (mm, superior +)" } = {}) {
    this.canvas = canvas;
    this.onPick = onPick;
    this.xLabel = xLabel;
    this.yLabel = yLabel;
    this.data = { times: [], values: [], statuses: [], bands: [], lines: [], spans: [], paths: [], traceColour: null };
    this.cursor = null;
    this.xRange = null;
    this.margin = { left: 64, right: 12, top: 12, bottom: 38 };
    canvas.addEventListener("click", (event) => this.pick(event));
    this.resize = () => this.draw();
    window.addEventListener("resize", this.resize);
  }

  destroy() {
    window.removeEventListener("resize", this.resize);
  }

  setData(data) {
    this.data = { ...this.data, ...data };
    this.draw();
  }

  setCursor(time) {
    this.cursor = time;
    this.draw();
  }

  setXRange(range) {
    this.xRange = range;
  }

  limits() {
    const { times, values, bands, lines } = this.data;
    const finite = values.filter((v) => v !== null && Number.isFinite(v));
    const extra = [
      ...bands.flatMap((b) => [b.low, b.high]),
      ...lines.map((l) => l.y),
      ...this.data.paths.flatMap((p) => p.values),
    ].filter(Number.isFinite);
    const all = finite.concat(extra);
    let yMin = all.length ? Math.min(...all) : -5;
    let yMax = all.length ? Math.max(...all) : 5;
    if (yMax - yMin < 4) {
      const mid = (yMax + yMin) / 2;
      yMin = mid - 2;
      yMax = mid + 2;
    }
    const pad = (yMax - yMin) * 0.08;
    const xMin = this.xRange ? this.xRange[0] : times.length ? times[0] : 0;
    const xMax = this.xRange ? this.xRange[1] : times.length ? times[times.length - 1] : 1;
    return { xMin, xMax: xMax > xMin ? xMax : xMin + 1, yMin: yMin - pad, yMax: yMax + pad };
  }

  geometry() {
    const ratio = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth || 600;
    const height = this.canvas.clientHeight || 240;
    if (this.canvas.width !== Math.round(width * ratio)) this.canvas.width = Math.round(width * ratio);
    if (this.canvas.height !== Math.round(height * ratio)) this.canvas.height = Math.round(height * ratio);
    return { ratio, width, height };
  }

  scales() {
    const { width, height } = this.geometry();
    const { xMin, xMax, yMin, yMax } = this.limits();
    const m = this.margin;
    const x = (t) => m.left + ((t - xMin) / (xMax - xMin)) * (width - m.left - m.right);
    const y = (v) => m.top + (1 - (v - yMin) / (yMax - yMin)) * (height - m.top - m.bottom);
    const t = (px) => xMin + ((px - m.left) / (width - m.left - m.right)) * (xMax - xMin);
    return { x, y, t, xMin, xMax, yMin, yMax, width, height };
  }

  pick(event) {
    if (!this.onPick) return;
    const rect = this.canvas.getBoundingClientRect();
    const { t } = this.scales();
    this.onPick(t(event.clientX - rect.left));
  }

  draw() {
    const ctx = this.canvas.getContext("2d");
    const { ratio } = this.geometry();
    const s = this.scales();
    const m = this.margin;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, s.width, s.height);
    ctx.font = "12px system-ui, sans-serif";
    ctx.lineWidth = 1;

    // Grid and tick labels.
    ctx.strokeStyle = COLOURS.grid;
    ctx.fillStyle = COLOURS.axis;
    const yStep = niceStep(s.yMax - s.yMin, 6);
    for (let v = Math.ceil(s.yMin / yStep) * yStep; v <= s.yMax; v += yStep) {
      line(ctx, m.left, s.y(v), s.width - m.right, s.y(v));
      const tick = v.toFixed(yStep < 1 ? 1 : 0);
      ctx.fillText(tick, m.left - 6 - ctx.measureText(tick).width, s.y(v) + 4);
    }
    const xStep = niceStep(s.xMax - s.xMin, 8);
    for (let t = Math.ceil(s.xMin / xStep) * xStep; t <= s.xMax; t += xStep) {
      line(ctx, s.x(t), m.top, s.x(t), s.height - m.bottom);
      ctx.fillText(t.toFixed(xStep < 1 ? 1 : 0), s.x(t) - 8, s.height - m.bottom + 16);
    }
    ctx.fillText(this.xLabel, s.width / 2 - 24, s.height - 4);
    ctx.save();
    ctx.translate(14, m.top + (s.height - m.top - m.bottom) / 2 + ctx.measureText(this.yLabel).width / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(this.yLabel, 0, 0);
    ctx.restore();

    // Shaded spans (breath holds) and bands (excursion).
    for (const span of this.data.spans) {
      ctx.fillStyle = COLOURS.span;
      ctx.fillRect(s.x(span.start), m.top, s.x(span.end) - s.x(span.start), s.height - m.top - m.bottom);
      if (span.label) {
        ctx.fillStyle = COLOURS.text;
        ctx.fillText(span.label, s.x(span.start) + 4, m.top + 14);
      }
    }
    for (const band of this.data.bands) {
      ctx.fillStyle = band.colour || COLOURS.band;
      ctx.fillRect(m.left, s.y(band.high), s.width - m.left - m.right, s.y(band.low) - s.y(band.high));
      if (band.label) {
        ctx.fillStyle = COLOURS.text;
        ctx.fillText(band.label, s.width - m.right - ctx.measureText(band.label).width - 4, s.y(band.high) + 14);
      }
    }
    for (const rule of this.data.lines) {
      ctx.strokeStyle = rule.colour || COLOURS.threshold;
      ctx.setLineDash(rule.dash || [6, 4]);
      line(ctx, m.left, s.y(rule.y), s.width - m.right, s.y(rule.y));
      ctx.setLineDash([]);
      if (rule.label) {
        ctx.fillStyle = rule.colour || COLOURS.threshold;
        ctx.fillText(rule.label, m.left + 4, s.y(rule.y) - 4);
      }
    }

    // The trace: a line through trusted samples, amber dots for low confidence, red ticks for
    // lost frames (no value). Extra paths (e.g. a running baseline) are drawn over it.
    const { times, values, statuses } = this.data;
    polyline(ctx, s, times, values, this.data.traceColour || COLOURS.trace, 1.5);
    for (const path of this.data.paths) {
      polyline(ctx, s, path.times, path.values, path.colour, path.width || 2.5);
    }
    ctx.lineWidth = 1;
    for (let i = 0; i < times.length; i += 1) {
      if (times[i] < s.xMin) continue;
      if (statuses[i] === "lost") {
        ctx.strokeStyle = COLOURS.lost;
        line(ctx, s.x(times[i]), s.height - m.bottom, s.x(times[i]), s.height - m.bottom - 10);
      } else if (statuses[i] === "low_confidence" || statuses[i] === "needs_confirmation") {
        ctx.fillStyle = COLOURS.low;
        ctx.beginPath();
        ctx.arc(s.x(times[i]), s.y(values[i]), 3, 0, 2 * Math.PI);
        ctx.fill();
      }
    }

    if (this.cursor !== null) {
      ctx.strokeStyle = COLOURS.cursor;
      line(ctx, s.x(this.cursor), m.top, s.x(this.cursor), s.height - m.bottom);
    }
    ctx.strokeStyle = COLOURS.axis;
    ctx.strokeRect(m.left, m.top, s.width - m.left - m.right, s.height - m.top - m.bottom);
  }
}

function polyline(ctx, s, times, values, colour, width) {
  ctx.strokeStyle = colour;
  ctx.lineWidth = width;
  ctx.beginPath();
  let drawing = false;
  for (let i = 0; i < times.length; i += 1) {
    const v = values[i];
    if (v === null || !Number.isFinite(v) || times[i] < s.xMin) {
      drawing = false;
      continue;
    }
    if (drawing) ctx.lineTo(s.x(times[i]), s.y(v));
    else ctx.moveTo(s.x(times[i]), s.y(v));
    drawing = true;
  }
  ctx.stroke();
}

function line(ctx, x0, y0, x1, y1) {
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  ctx.lineTo(x1, y1);
  ctx.stroke();
}

function niceStep(span, count) {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const factor of [1, 2, 5, 10]) {
    if (raw <= factor * power) return factor * power;
  }
  return 10 * power;
}
