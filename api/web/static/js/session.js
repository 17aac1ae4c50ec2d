// One session: its results, the live monitor, and its history (reviews and alerts).

import { ApiError, api } from "./api.js";
import { h, recommendationLabel, section, when, words } from "./dom.js";
import { rerender } from "./navigation.js";
import { state } from "./state.js";

// An alert raised after the last acknowledgement keeps the session on the worklist's alert status.
function unacknowledgedAlert(entries) {
  const last = (kind) => entries.map((entry) => entry.kind).lastIndexOf(kind);
  return last("stream.alert_raised") > last("stream.alert_acknowledged");
}

function acknowledgeForm(sessionId) {
  const note = h("input", { id: "acknowledge-note", type: "text", maxlength: 500, size: 60 });
  const message = h("p", { class: "error", role: "alert" });
  const mayAcknowledge = state.user && state.user.role !== "console";
  const form = h(
    "form",
    { class: "acknowledge", "aria-label": "Acknowledge the alerts" },
    h("p", { class: "alert-text" }, "An intrafraction alert fired on this session and has not been acknowledged."),
    h("label", { for: "acknowledge-note" }, "What was done (required)"),
    note,
    h("button", { type: "submit", id: "acknowledge", disabled: !mayAcknowledge }, "Acknowledge the alerts"),
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!note.value.trim()) {
      message.textContent = "Say what was done about the alert.";
      note.focus();
      return;
    }
    try {
      await api(`/sessions/${sessionId}/alert-acknowledgements`, { method: "POST", body: { note: note.value.trim() } });
      rerender();
    } catch (exc) {
      message.textContent = exc instanceof ApiError ? exc.message : String(exc);
    }
  });
  return form;
}

export function historyList(entries) {
  if (entries.length === 0) return h("p", { class: "hint" }, "Nothing yet.");
  return h(
    "ol",
    { class: "history", "aria-label": "Session history" },
    entries.map((entry) =>
      h(
        "li",
        { class: `history-${entry.kind.replace(".", "-")}` },
        h("time", { datetime: entry.occurred_at }, when(entry.occurred_at)),
        " ",
        h("span", {}, entry.summary),
        entry.review && !entry.review.standing ? h("span", { class: "hint" }, " (superseded)") : "",
      ),
    ),
  );
}

export async function showSession(view, sessionId) {
  const session = await api(`/sessions/${sessionId}`);
  const [patient, assessments, registrations, history] = await Promise.all([
    api(`/patients/${session.patient_id}`),
    api(`/sessions/${sessionId}/motion-assessments`),
    api(`/sessions/${sessionId}/registrations`),
    api(`/sessions/${sessionId}/history`),
  ]);
  const title =
    session.kind === "fraction" ? `Fraction ${session.fraction_number ?? "?"}` : words(session.kind);
  view.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, `${patient.name || patient.external_id} · ${title}`),
      h("p", { class: "hint" }, `${patient.external_id} · ${session.patient_position} · protocol ${session.protocol_version}`),
    ),
    h(
      "div",
      { class: "grid two" },
      section(
        "Motion assessments",
        assessments.data.length === 0
          ? h("p", { class: "hint" }, "None.")
          : h(
              "ul",
              { class: "links" },
              assessments.data.map((a) =>
                h(
                  "li",
                  {},
                  h("a", { href: `#/assessments/${a.id}` }, a.recommendation ? recommendationLabel(a.recommendation) : words(a.status)),
                  h(
                    "span",
                    { class: "hint" },
                    ` ${when(a.created_at)} · ${words(a.context)}${a.dome_hint ? ` · dome hint by ${a.dome_hint.given_by || "unknown"}` : ""}`,
                  ),
                ),
              ),
            ),
      ),
      section(
        "Registrations",
        registrations.data.length === 0
          ? h("p", { class: "hint" }, "None.")
          : h(
              "ul",
              { class: "links" },
              registrations.data.map((r) =>
                h(
                  "li",
                  {},
                  h("a", { href: `#/registrations/${r.id}` }, `CBCT to planning CT · ${words(r.status)}`),
                  r.repositioning_required ? h("span", { class: "badge flag" }, " reposition") : "",
                  h("span", { class: "hint" }, ` ${when(r.created_at)}${r.quality ? ` · quality ${r.quality}` : ""}`),
                ),
              ),
            ),
      ),
    ),
    section(
      "Live monitor",
      h("p", {}, "Watch the dome while the console streams fluoroscopy for this session."),
      h("a", { class: "button", href: `#/sessions/${sessionId}/monitor` }, "Open live monitor"),
      unacknowledgedAlert(history.data) ? acknowledgeForm(sessionId) : "",
    ),
    section("History", historyList(history.data)),
  );
}

