// Motion assessment: cine with the tracked dome, the breathing trace (click to jump), the
// decision with its inputs, thresholds and rationale, the margin suggestion, and the review.
// Therapists and physicists may click on the dome in the cine to re-run the assessment from
// that point of the first frame (a new assessment; this one stays).

import { ApiError, api, imageUrl } from "./api.js";
import { Cine } from "./cine.js";
import { definitionList, h, mm, num, recommendationLabel, section, words } from "./dom.js";
import { rerender } from "./navigation.js";
import { reviewPanel } from "./review.js";
import { state } from "./state.js";
import { TraceChart } from "./trace_chart.js";

const MOTION_DECISIONS = [
  "no_device",
  "active_breathing_control",
  "abdominal_compression",
  "breath_hold_trial_next",
  "gating_or_larger_margin",
  "reassess",
];

function median(values) {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

// The threshold the decision compared the excursion with: the motion threshold in free breathing,
// the residual allowed under compression.
function motionThreshold(decision) {
  const thresholds = (decision && decision.thresholds) || {};
  if (Number.isFinite(thresholds.compression_residual_threshold_mm)) {
    return { value: thresholds.compression_residual_threshold_mm, name: "largest residual under compression" };
  }
  if (Number.isFinite(thresholds.motion_threshold_mm)) {
    return { value: thresholds.motion_threshold_mm, name: "motion threshold" };
  }
  return { value: null, name: "" };
}

function abcCard(assessment) {
  if (!assessment) return "";
  return h(
    "div",
    {},
    h("h3", {}, `Breath-hold (ABC) suitability: ${assessment.suitable ? "suitable" : "not suitable"}`),
    h(
      "ul",
      { class: "rationale" },
      (assessment.criteria || []).map((criterion) =>
        h("li", { class: criterion.passed ? "passed" : "failed" }, `${criterion.passed ? "✓" : "✗"} ${criterion.sentence}`),
      ),
    ),
  );
}

function chartOverlays(analysis, decision) {
  const overlays = { bands: [], lines: [], spans: [] };
  if (!analysis) return overlays;
  const cycles = (analysis.cycles || []).filter((cycle) => !cycle.is_outlier);
  const exhale = median(cycles.map((cycle) => cycle.exhale_end_mm));
  const inhale = median(cycles.map((cycle) => cycle.inhale_mm));
  if (exhale !== null && inhale !== null) {
    overlays.bands.push({
      low: Math.min(exhale, inhale),
      high: Math.max(exhale, inhale),
      label: `median excursion ${mm(analysis.excursion_median_mm)}`,
    });
    const { value: threshold, name } = motionThreshold(decision);
    if (threshold !== null) {
      // Inhalation moves the dome away from end-exhale; breaths that cross this line move more
      // than the threshold.
      const direction = inhale < exhale ? -1 : 1;
      overlays.lines.push({
        y: exhale + direction * threshold,
        label: `${threshold} mm from end-exhale (${name}): breaths crossing it exceed it`,
      });
    }
  }
  overlays.spans = (analysis.holds || []).map((hold) => ({
    start: hold.start_s,
    end: hold.end_s,
    label: `hold ${num(hold.duration_s, 0, "s")}`,
  }));
  return overlays;
}

function decisionCard(assessment) {
  const result = assessment.result || {};
  const decision = result.decision;
  const analysis = result.analysis;
  if (!decision) {
    return section(
      "Decision",
      h("p", { class: "recommendation none", id: "recommendation" }, "No decision"),
      h("p", {}, assessment.reason || "The assessment did not reach a decision."),
    );
  }
  const inputs = decision.inputs || {};
  const thresholds = decision.thresholds || {};
  return section(
    "Decision",
    h("p", { class: `recommendation rec-${decision.recommendation}`, id: "recommendation" }, recommendationLabel(decision.recommendation)),
    h("p", { class: "hint" }, `${words(decision.reason)} · ${words(decision.context)} · protocol ${decision.protocol_version}`),
    h("h3", {}, "Inputs"),
    definitionList([
      [`Excursion (${inputs.excursion_statistic || "median"})`, `${mm(inputs.excursion_mm)} ± ${mm(inputs.excursion_uncertainty_mm)}`],
      ["Excursion p95", mm(inputs.excursion_p95_mm)],
      Number.isFinite(inputs.free_breathing_excursion_mm) && ["Free-breathing excursion (before)", mm(inputs.free_breathing_excursion_mm)],
      ["Cycles (outliers)", `${inputs.n_cycles ?? "—"} (${inputs.n_outlier_cycles ?? 0})`],
      analysis && ["Period (median)", num(analysis.period_median_s, 1, "s")],
      analysis && ["Irregularity (amplitude CV)", num(analysis.amplitude_cv, 2)],
      analysis && ["Drift", num(analysis.drift_mm_per_min, 2, "mm/min")],
      analysis && ["Lost frames", `${num(100 * analysis.lost_fraction, 1)} %`],
      analysis && ["Breath holds", String((analysis.holds || []).length)],
      (inputs.quality_flags || []).length > 0 && ["Quality flags", inputs.quality_flags.map(words).join(", ")],
    ]),
    h("h3", {}, "Thresholds"),
    definitionList([
      [motionThreshold(decision).name || "Motion threshold", mm(motionThreshold(decision).value)],
      ["No device up to (p95)", mm(thresholds.no_device_max_p95_excursion_mm)],
      ["Minimum cycles", String(thresholds.min_cycles ?? "—")],
      ["Most lost frames", `${num(100 * (thresholds.max_lost_fraction ?? NaN), 0)} %`],
    ]),
    abcCard(decision.abc_assessment),
    h("h3", {}, "Rationale"),
    h("ul", { class: "rationale" }, (decision.rationale || []).map((line) => h("li", {}, line))),
    // The report names the patient: people only (the service refuses a console).
    state.user && state.user.role !== "console"
      ? h("p", {}, h("a", { href: imageUrl(`/motion-assessments/${assessment.id}/report.pdf`), id: "report-pdf", download: `motion-assessment-${assessment.id}.pdf` }, "Download the report (PDF)"))
      : "",
  );
}

function marginCard(result) {
  const margins = result && result.margins;
  if (!margins) {
    return section("Margin suggestion", h("p", { class: "hint" }, (result && result.margins_reason) || "No margin suggestion."));
  }
  return section(
    "Margin suggestion",
    definitionList([
      ["Internal margin (SI)", mm(margins.internal_margin_mm)],
      ["PTV margin (SI)", `${mm(margins.ptv_margin_mm)}${margins.minimum_applied ? " (protocol minimum)" : ""}`],
      ["Setup model", `Σ ${mm(margins.systematic_setup_sd_mm)}, σ ${mm(margins.random_setup_sd_mm)} (service defaults)`],
    ]),
    h("ul", { class: "rationale" }, (margins.rationale || []).map((line) => h("li", {}, line))),
  );
}

function hintNote(assessment) {
  const hint = assessment.dome_hint;
  const parts = [];
  if (hint) {
    parts.push(
      h("span", { id: "dome-hint" }, `Tracked from a dome hint by ${hint.given_by || "an unknown user"} `),
      h("span", { class: "hint" }, `(column ${num(hint.column_px, 1)}, row ${num(hint.row_px, 1)} of the first frame)`),
    );
  }
  if (assessment.rerun_of) {
    parts.push(" · re-run of ", h("a", { href: `#/assessments/${assessment.rerun_of}`, id: "rerun-of" }, "the earlier assessment"));
  }
  return parts.length ? h("p", { class: "dome-hint-note" }, parts) : "";
}

// Ask before re-running from a clicked point; on yes, POST the new assessment and show it.
function rerunDialog(assessment, cine) {
  const text = h("p", { id: "rerun-question" });
  const message = h("p", { class: "error", role: "alert" });
  const confirm = h("button", { type: "button", id: "rerun-confirm" }, "Re-run from this point");
  const cancel = h("button", { type: "button", class: "quiet", id: "rerun-cancel" }, "Cancel");
  const dialog = h(
    "dialog",
    { class: "card rerun-dialog", "aria-labelledby": "rerun-title" },
    h("h2", { id: "rerun-title" }, "Re-run the assessment from a dome hint?"),
    text,
    message,
    h("div", { class: "actions" }, confirm, cancel),
  );
  let hint = null;
  cancel.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    if (!confirm.disabled) cine.setHint(assessment.dome_hint ? { column: assessment.dome_hint.column_px, row: assessment.dome_hint.row_px } : null);
  });
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    message.textContent = "";
    try {
      const created = await api(`/sessions/${assessment.session_id}/motion-assessments`, {
        method: "POST",
        body: {
          upload_id: assessment.upload_id,
          context: assessment.context,
          dome_hint: { column_px: hint.column, row_px: hint.row },
          rerun_of: assessment.id,
        },
      });
      dialog.close();
      location.hash = `#/assessments/${created.id}`;
    } catch (exc) {
      confirm.disabled = false;
      message.textContent = exc instanceof ApiError ? exc.message : String(exc);
    }
  });
  return {
    element: dialog,
    ask(point) {
      hint = point;
      cine.pause();
      cine.seek(0);
      cine.setHint(point);
      text.textContent =
        `Track the dome from column ${point.column}, row ${point.row} of the first frame (circled). ` +
        "This makes a new assessment; this one stays as it is.";
      message.textContent = "";
      confirm.disabled = false;
      dialog.showModal();
      confirm.focus();
    },
  };
}

export async function showAssessment(view, assessmentId) {
  const assessment = await api(`/motion-assessments/${assessmentId}`);
  const upload = await api(`/uploads/${assessment.upload_id}`);
  const track = assessment.track;
  const result = assessment.result || {};
  const chartCanvas = h("canvas", {
    class: "trace",
    id: "trace-chart",
    role: "img",
    "aria-label": "Breathing trace: click to show that frame",
  });
  let cine = null;
  let rerun = null;
  const mayHint = state.user && state.user.role !== "console";
  const chart = new TraceChart(chartCanvas, {
    onPick: (time) => {
      let best = 0;
      track.forEach((o, i) => {
        if (Math.abs(o.time_s - time) < Math.abs(track[best].time_s - time)) best = i;
      });
      cine.pause();
      cine.seek(best);
    },
  });
  cine = new Cine({
    uploadId: assessment.upload_id,
    track,
    rows: upload.rows,
    columns: upload.columns,
    onFrame: (_, observation) => chart.setCursor(observation.time_s),
    onPick: mayHint ? (point) => rerun.ask(point) : null,
  });
  rerun = rerunDialog(assessment, cine);
  if (assessment.dome_hint) cine.setHint({ column: assessment.dome_hint.column_px, row: assessment.dome_hint.row_px });

  const review = await reviewPanel({
    subjectPath: `/motion-assessments/${assessmentId}`,
    decisions: MOTION_DECISIONS,
    computed: assessment.recommendation,
    onReviewed: rerender,
  });

  view.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Motion assessment"),
      h(
        "p",
        { class: "hint" },
        h("a", { href: `#/sessions/${assessment.session_id}` }, "Back to the session"),
        ` · ${upload.n_frames} frames · tracked ${num(100 * assessment.tracked_fraction, 1)} % · ${words(assessment.context)}`,
      ),
      hintNote(assessment),
    ),
    h(
      "div",
      { class: "grid assessment" },
      section(
        "Fluoroscopy",
        cine.element,
        h("p", { class: "hint legend" }, "Dome: green tracked · amber low confidence · red lost · blue circle: dome hint"),
        mayHint
          ? h("p", { class: "hint", id: "rerun-help" }, "Wrong edge tracked? Click on the dome to re-run the assessment from that point of the first frame.")
          : "",
        rerun.element,
      ),
      h(
        "div",
        { class: "stack" },
        section(
          "Breathing trace",
          chartCanvas,
          h("p", { class: "hint legend" }, "Superior up. Band: median excursion · dashed: the decision's threshold from end-exhale · shaded: breath holds · red ticks: lost frames · click to jump"),
        ),
        decisionCard(assessment),
      ),
    ),
    h("div", { class: "grid two" }, marginCard(result), review),
  );
  chart.setData({
    times: track.map((o) => o.time_s),
    values: track.map((o) => o.si_isocentre_mm),
    statuses: track.map((o) => o.status),
    ...chartOverlays(result.analysis, result.decision),
  });
  cine.seek(0);
  return () => {
    cine.destroy();
    chart.destroy();
  };
}
