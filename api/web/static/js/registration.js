// Registration review: planning CT and CBCT in three planes (checkerboard, blend, difference;
// before or after alignment) with the clip box, the couch correction in IEC 61217 axes with
// the per-axis flag, quality, uncertainty and the dome cross-check; then the review.

import { api, imageUrl } from "./api.js";
import { definitionList, h, mm, num, section, statusBadge, words } from "./dom.js";
import { rerender } from "./navigation.js";
import { reviewPanel } from "./review.js";

const PLANES = ["axial", "coronal", "sagittal"];
const MODES = {
  checkerboard: { label: "Square size", min: 5, max: 50, value: 20, unit: "mm" },
  blend: { label: "CBCT weight", min: 0, max: 100, value: 50, unit: "%" },
  difference: { label: "Contrast", min: 1, max: 8, value: 2, unit: "×" },
};
const AXES = ["lateral", "longitudinal", "vertical"];
const DISPLAY_SCALE = 3;

function loadImage(url) {
  return new Promise((resolve) => {
    const image = new Image();
    image.addEventListener("load", () => resolve(image));
    image.addEventListener("error", () => resolve(null));
    image.src = url;
  });
}

function pixels(image) {
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0);
  return ctx.getImageData(0, 0, canvas.width, canvas.height);
}

function compose(ct, cbct, mode, value, pixelMm) {
  const out = new ImageData(ct.width, ct.height);
  const a = ct.data;
  const b = cbct.data;
  const o = out.data;
  const square = Math.max(1, value / pixelMm);
  const weight = value / 100;
  for (let row = 0; row < ct.height; row += 1) {
    for (let column = 0; column < ct.width; column += 1) {
      const i = 4 * (row * ct.width + column);
      const c = a[i];
      const d = b[i];
      if (mode === "checkerboard") {
        const grey = (Math.floor(row / square) + Math.floor(column / square)) % 2 ? d : c;
        o[i] = o[i + 1] = o[i + 2] = grey;
      } else if (mode === "blend") {
        // CT magenta, CBCT green: equal at 50 %, where aligned anatomy is grey.
        o[i] = o[i + 2] = c * Math.min(1, 2 * (1 - weight));
        o[i + 1] = d * Math.min(1, 2 * weight);
      } else {
        // Black outside the CBCT's field of view (the layer's alpha), where a difference means
        // nothing; air inside it is a real difference and stays visible.
        const grey = b[i + 3] < 128 ? 0 : 128 + value * (d - c);
        o[i] = o[i + 1] = o[i + 2] = Math.max(0, Math.min(255, grey));
      }
      o[i + 3] = 255;
    }
  }
  return out;
}

function clipBoxRectangle(plane, clipBox) {
  // The box's corners in the plane's pixel grid (columns along column_direction_lps, rows along
  // row_direction_lps from the top-left pixel centre).
  const corners = [clipBox.lower_lps_mm, clipBox.upper_lps_mm];
  const project = (direction) =>
    corners.map((corner) => corner.reduce((sum, value, axis) => sum + (value - plane.top_left_lps_mm[axis]) * direction[axis], 0) / plane.pixel_mm);
  const columns = project(plane.column_direction_lps);
  const rows = project(plane.row_direction_lps);
  return {
    x: Math.min(...columns),
    y: Math.min(...rows),
    width: Math.abs(columns[1] - columns[0]),
    height: Math.abs(rows[1] - rows[0]),
  };
}

function planeCutsBox(plane, clipBox) {
  // The plane's fixed LPS axis is the one neither its columns nor its rows run along.
  const axis = [0, 1, 2].find((a) => plane.column_direction_lps[a] === 0 && plane.row_direction_lps[a] === 0);
  const position = plane.top_left_lps_mm[axis];
  return clipBox.lower_lps_mm[axis] <= position && position <= clipBox.upper_lps_mm[axis];
}

async function viewer(registrationId, doc) {
  const planes = Object.fromEntries(((doc.overlays && doc.overlays.planes) || []).map((p) => [p.plane, p]));
  const layers = {};
  await Promise.all(
    ["before", "after"].flatMap((stage) =>
      PLANES.flatMap((plane) =>
        ["ct", "cbct"].map(async (kind) => {
          const image = await loadImage(imageUrl(`/registrations/${registrationId}/overlays/${plane}?kind=${kind}&stage=${stage}`));
          layers[`${stage}/${plane}/${kind}`] = image ? pixels(image) : null;
        }),
      ),
    ),
  );
  const settings = { plane: "coronal", mode: "checkerboard", stage: "after", value: MODES.checkerboard.value, showBox: true };
  const canvas = h("canvas", { class: "registration-canvas", id: "registration-canvas", role: "img" });
  const slider = h("input", { type: "range", id: "overlay-slider" });
  const sliderLabel = h("span", { id: "overlay-slider-label" });
  const caption = h("p", { class: "hint", id: "overlay-caption" });

  function radios(name, values, labels = values) {
    return h(
      "fieldset",
      { class: "segmented", id: `${name}-choice` },
      h("legend", {}, words(name)),
      values.map((value, i) => {
        const input = h("input", { type: "radio", name, value, id: `${name}-${value}`, checked: settings[name] === value });
        input.addEventListener("change", () => {
          settings[name] = value;
          if (name === "mode") {
            settings.value = MODES[value].value;
          }
          draw();
        });
        return h("label", { for: `${name}-${value}` }, input, ` ${words(labels[i])}`);
      }),
    );
  }

  const boxToggle = h("input", { type: "checkbox", id: "show-clip-box", checked: true });
  boxToggle.addEventListener("change", () => {
    settings.showBox = boxToggle.checked;
    draw();
  });
  slider.addEventListener("input", () => {
    settings.value = Number(slider.value);
    draw();
  });

  function draw() {
    const mode = MODES[settings.mode];
    slider.min = mode.min;
    slider.max = mode.max;
    slider.value = settings.value;
    sliderLabel.textContent = `${mode.label}: ${settings.value} ${mode.unit}`;
    const ct = layers[`${settings.stage}/${settings.plane}/ct`];
    const cbct = layers[`${settings.stage}/${settings.plane}/cbct`];
    const plane = planes[settings.plane];
    const ctx = canvas.getContext("2d");
    if (!ct || !cbct || !plane) {
      canvas.width = 300;
      canvas.height = 60;
      ctx.fillStyle = "#ddd";
      ctx.fillText("No review images for this registration.", 10, 30);
      return;
    }
    const composed = compose(ct, cbct, settings.mode, settings.value, plane.pixel_mm);
    const small = document.createElement("canvas");
    small.width = ct.width;
    small.height = ct.height;
    small.getContext("2d").putImageData(composed, 0, 0);
    canvas.width = ct.width * DISPLAY_SCALE;
    canvas.height = ct.height * DISPLAY_SCALE;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
    if (settings.showBox && doc.clip_box && planeCutsBox(plane, doc.clip_box)) {
      const box = clipBoxRectangle(plane, doc.clip_box);
      ctx.strokeStyle = "#ffd400";
      ctx.setLineDash([8, 6]);
      ctx.lineWidth = 2;
      ctx.strokeRect(
        (box.x + 0.5) * DISPLAY_SCALE,
        (box.y + 0.5) * DISPLAY_SCALE,
        box.width * DISPLAY_SCALE,
        box.height * DISPLAY_SCALE,
      );
      ctx.setLineDash([]);
    }
    canvas.setAttribute("aria-label", `${settings.plane} plane, ${settings.mode}, ${settings.stage} registration`);
    canvas.dataset.mode = settings.mode;
    canvas.dataset.plane = settings.plane;
    canvas.dataset.stage = settings.stage;
    const orientation = {
      axial: "patient right on the left, anterior at the top",
      coronal: "patient right on the left, head at the top",
      sagittal: "anterior on the left, head at the top",
    }[settings.plane];
    caption.textContent = `${words(settings.plane)} through the reference point, ${orientation}. ${
      settings.stage === "after" ? "CBCT mapped with the registration result." : "CBCT as acquired (no correction)."
    } ${
      planeCutsBox(plane, doc.clip_box || { lower_lps_mm: [0, 0, 0], upper_lps_mm: [0, 0, 0] })
        ? "Dashed: the clip box."
        : "This plane does not cut the clip box."
    }`;
  }

  const element = h(
    "div",
    { class: "registration-viewer" },
    h(
      "div",
      { class: "viewer-controls" },
      radios("plane", PLANES),
      radios("mode", Object.keys(MODES)),
      radios("stage", ["before", "after"], ["before registration", "after registration"]),
      h("label", { class: "slider" }, sliderLabel, slider),
      h("label", { class: "inline" }, boxToggle, " Show the clip box"),
    ),
    canvas,
    caption,
  );
  draw();
  return element;
}

// IEC 61217 patient-support axes and which way + points, whatever the patient position.
const AXIS_DIRECTIONS = {
  lateral: "+ to the right, seen from the couch foot",
  longitudinal: "+ towards the gantry",
  vertical: "+ up",
};

function correctionTable(result) {
  const correction = result.couch_correction_iec_support_mm;
  const displacement = result.anatomy_displacement_iec_support_mm;
  const repositioning = result.repositioning;
  const trusted = Boolean(repositioning && correction);
  return h(
    "table",
    { class: "correction-table", id: "correction-table" },
    h(
      "caption",
      {},
      trusted
        ? `IEC 61217 patient support axes; flag when the correction exceeds ${mm(repositioning.threshold_mm)}`
        : "No trustworthy correction: these numbers must not be applied.",
    ),
    h(
      "thead",
      {},
      h("tr", {}, ["Axis", "Anatomy displacement", "Couch correction", "Flag"].map((title) => h("th", { scope: "col" }, title))),
    ),
    h(
      "tbody",
      {},
      AXES.map((axis, i) => {
        const flagged = trusted && repositioning.per_axis && repositioning.per_axis[axis];
        let flag = h("span", { class: "badge flag" }, "untrusted");
        if (trusted) {
          flag = flagged ? h("span", { class: "badge flag" }, "beyond threshold") : h("span", { class: "badge ok" }, "within");
        }
        return h(
          "tr",
          { class: flagged ? "flagged" : "" },
          h("th", { scope: "row" }, axis, h("div", { class: "hint" }, AXIS_DIRECTIONS[axis])),
          h("td", { class: "number" }, displacement ? mm(displacement[i], 1, true) : "—"),
          h("td", { class: "number" }, correction ? mm(correction[i], 1, true) : "—"),
          h("td", {}, flag),
        );
      }),
    ),
  );
}

function resultCard(job, result) {
  const doc = result.document || {};
  const dome = result.dome_check || {};
  const repositioning = result.repositioning;
  return section(
    "Result",
    h(
      "p",
      { class: `repositioning ${repositioning && repositioning.required ? "required" : "not-required"}`, id: "repositioning" },
      repositioning ? (repositioning.required ? "Reposition the couch" : "No repositioning needed") : "No trustworthy correction",
    ),
    correctionTable(result),
    definitionList([
      ["Quality", statusBadge(result.quality)],
      ["Uncertainty (1 SD)", mm(result.uncertainty_mm, 2)],
      [
        "Dome cross-check",
        `${words(dome.status)}${Number.isFinite(dome.disagreement_mm) ? ` · the dome apex and the registration disagree by ${mm(dome.disagreement_mm, 1)} superior-inferior` : ""}`,
      ],
      ["NCC before → after", `${num(doc.ncc_before, 3)} → ${num(doc.ncc_after, 3)}`],
      ["Degrees of freedom", String(doc.degrees_of_freedom ?? job.degrees_of_freedom)],
      doc.couch_rotation_correction_iec_support_deg && [
        "Couch rotation (IEC)",
        doc.couch_rotation_correction_iec_support_deg.map((v) => `${num(v, 1)}°`).join(", "),
      ],
      ["Clip box", words(doc.clip_box_source)],
    ]),
    (doc.reasons || []).length ? h("ul", { class: "rationale" }, doc.reasons.map((r) => h("li", {}, r))) : "",
    dome.reason ? h("p", { class: "hint" }, `Dome check (anatomy displacement, LPS z, superior +): ${dome.reason}`) : "",
    h("a", { href: imageUrl(`/registrations/${job.id}/dicom-reg`), download: "registration.dcm" }, "Download DICOM Spatial Registration"),
  );
}

export async function showRegistration(view, registrationId) {
  const job = await api(`/registrations/${registrationId}`);
  const head = h(
    "div",
    { class: "page-head" },
    h("h1", {}, "Registration review"),
    h("p", { class: "hint" }, h("a", { href: `#/sessions/${job.session_id}` }, "Back to the session"), ` · CBCT to planning CT · ${words(job.status)}`),
  );
  if (job.status === "queued" || job.status === "running") {
    view.replaceChildren(head, section("Status", h("p", { role: "status" }, `The registration is ${job.status}; this page refreshes itself.`)));
    const timer = setTimeout(rerender, 1500);
    return () => clearTimeout(timer);
  }
  if (job.status === "failed") {
    const review = await reviewPanel({
      subjectPath: `/registrations/${registrationId}`,
      decisions: ["repeat_cbct", "no_repositioning", "reposition"],
      computed: null,
      withCorrection: true,
      onReviewed: rerender,
    });
    view.replaceChildren(head, section("Failed", h("p", {}, job.reason || "No reason given.")), review);
    return null;
  }
  const result = await api(`/registrations/${registrationId}/result`);
  const trusted = result.quality !== "failed" && result.repositioning;
  const review = await reviewPanel({
    subjectPath: `/registrations/${registrationId}`,
    decisions: ["reposition", "no_repositioning", "repeat_cbct"],
    computed: trusted ? (result.repositioning.required ? "reposition" : "no_repositioning") : null,
    correction: trusted ? result.couch_correction_iec_support_mm : null,
    withCorrection: true,
    onReviewed: rerender,
  });
  view.replaceChildren(
    head,
    h("div", { class: "grid registration" }, section("Images", await viewer(registrationId, result.document || {})), h("div", { class: "stack" }, resultCard(job, result), review)),
  );
  return null;
}
