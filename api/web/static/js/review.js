// Approve, or override with a required reason (and, for a registration, an edited correction).

import { ApiError, api } from "./api.js";
import { h, when, words } from "./dom.js";
import { state } from "./state.js";

const AXES = ["lateral", "longitudinal", "vertical"];

function standingReview(reviews) {
  return reviews.find((review) => review.standing) || null;
}

function describe(review) {
  const parts = [`${words(review.outcome)} by a ${review.reviewer_role} on ${when(review.created_at)}`];
  if (review.decision) parts.push(`decision: ${words(review.decision)}`);
  if (review.couch_correction_iec_support_mm) {
    const [lat, lng, vrt] = review.couch_correction_iec_support_mm.map((v) => `${v > 0 ? "+" : ""}${v.toFixed(1)}`);
    parts.push(`couch correction applied: lat ${lat}, long ${lng}, vert ${vrt} mm (IEC 61217)`);
  }
  if (review.reason) parts.push(`reason: ${review.reason}`);
  return parts.join(" · ");
}

/**
 * @param {object} options
 * @param {string} options.subjectPath  e.g. "/motion-assessments/ID"
 * @param {string[]} options.decisions  decisions an override may take
 * @param {string|null} options.computed  the computed decision (what approval accepts)
 * @param {number[]|null} options.correction  computed couch correction (registrations only)
 * @param {boolean} options.withCorrection  offer an edited correction (registrations)
 * @param {function} options.onReviewed  called after a review is stored
 */
export async function reviewPanel({
  subjectPath,
  decisions,
  computed,
  correction = null,
  withCorrection = false,
  onReviewed,
}) {
  const reviews = (await api(`${subjectPath}/reviews`)).data;
  const standing = standingReview(reviews);
  const mayReview = state.user && state.user.role !== "console";
  const message = h("p", { class: "error", role: "alert" });
  const panel = h("section", { class: "card review", "aria-labelledby": "review-title" });

  async function submit(body) {
    message.textContent = "";
    if (standing) {
      // Replacing a colleague's verdict is a decision of its own: say so, and say why.
      if (!body.reason) {
        const why = window.prompt(`This replaces the standing review (${describe(standing)}). Why?`);
        if (!why || !why.trim()) {
          message.textContent = "Replacing a standing review needs a reason.";
          return;
        }
        body.reason = why.trim();
      }
      body.supersedes_id = standing.id;
    }
    try {
      await api(`${subjectPath}/reviews`, { method: "POST", body });
      await onReviewed();
    } catch (exc) {
      message.textContent = exc instanceof ApiError ? exc.message : String(exc);
      // Someone else reviewed meanwhile: show what stands now.
      if (exc instanceof ApiError && exc.status === 409) setTimeout(onReviewed, 1500);
    }
  }

  const approve = h(
    "button",
    { type: "button", id: "approve", disabled: !mayReview || computed === null },
    standing ? "Replace with an approval…" : "Approve",
  );
  approve.addEventListener("click", () => submit({ outcome: "approved" }));

  const decision = h(
    "select",
    { id: "override-decision", "aria-required": "true" },
    h("option", { value: "" }, "Choose…"),
    decisions.map((value) => h("option", { value }, words(value))),
  );
  const reason = h("textarea", { id: "override-reason", rows: 3, "aria-required": "true", maxlength: 2000 });
  // A registration always offers the fields: without a trusted result they start empty, so the
  // therapist can still record the correction applied by hand.
  const correctionInputs = AXES.map((axis, index) =>
    h("input", {
      id: `correction-${axis}`,
      type: "number",
      step: "0.1",
      min: "-100",
      max: "100",
      value: correction ? correction[index].toFixed(1) : "",
      "aria-label": `${axis} couch correction (mm)`,
    }),
  );
  const editCorrection = h("input", { id: "edit-correction", type: "checkbox" });
  const correctionFields = h(
    "fieldset",
    { class: "correction", disabled: true },
    h("legend", {}, "Couch correction applied (IEC 61217, mm)"),
    AXES.map((axis, index) => h("label", {}, `${axis} `, correctionInputs[index])),
  );
  editCorrection.addEventListener("change", () => {
    correctionFields.disabled = !editCorrection.checked;
    if (editCorrection.checked) decision.value = "reposition";
  });

  const form = h(
    "form",
    { class: "override", "aria-label": "Override" },
    h("h3", {}, "Override"),
    h("label", { for: "override-decision" }, "Decision taken instead"),
    decision,
    withCorrection
      ? h("div", {}, h("label", { class: "inline" }, editCorrection, " Edit the couch correction"), correctionFields)
      : "",
    h("label", { for: "override-reason" }, "Reason (required)"),
    reason,
    h("button", { type: "submit", id: "override-submit", disabled: !mayReview }, standing ? "Replace with an override" : "Override"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!reason.value.trim()) {
      message.textContent = "An override needs a reason.";
      reason.focus();
      return;
    }
    if (!decision.value) {
      message.textContent = "Choose the decision taken instead.";
      decision.focus();
      return;
    }
    const body = { outcome: "overridden", decision: decision.value, reason: reason.value.trim() };
    if (withCorrection && editCorrection.checked) {
      const values = correctionInputs.map((input) => input.valueAsNumber);
      const missing = correctionInputs.find((input) => !Number.isFinite(input.valueAsNumber));
      if (missing) {
        message.textContent = "Enter all three couch correction values (mm), or untick Edit.";
        missing.focus();
        return;
      }
      body.couch_correction_iec_support_mm = values;
    }
    submit(body);
  });

  panel.append(
    h("h2", { id: "review-title" }, "Review"),
    standing
      ? h("p", { class: `standing outcome-${standing.outcome}`, id: "standing-review" }, describe(standing))
      : h("p", { class: "hint", id: "standing-review" }, "Not reviewed yet."),
    mayReview ? "" : h("p", { class: "hint" }, "Your role may view but not review results."),
    h(
      "div",
      { class: "actions" },
      approve,
      computed === null ? h("span", { class: "hint" }, " Nothing computed to approve: override instead.") : "",
    ),
    form,
    message,
  );
  return panel;
}
