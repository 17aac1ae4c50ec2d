// The DICOM quarantine: instances the receiver held back from every session (therapists and
// physicists only; the service answers 403 to a console, so the panel is not shown to one).
// A physicist releases an entry's series to a session (by its id) or discards it, with a reason.

import { api } from "./api.js";
import { h, when, words } from "./dom.js";
import { state } from "./state.js";

const LIMIT = 20;

function resolved(resolution) {
  return [
    h("span", { class: `badge resolution-${resolution.action}` }, words(resolution.action)),
    h("div", { class: "hint" }, resolution.reason),
  ];
}

// The form of one decision: release needs the session's id, both need a reason.
function decisionForm(item, action, cell, refresh) {
  const reason = h("input", { type: "text", name: "reason", required: true, maxlength: 2000, placeholder: "Reason (what was checked)", "aria-label": "Reason" });
  const session = action === "release"
    ? h("input", { type: "text", name: "session_id", required: true, maxlength: 64, placeholder: "Session id", "aria-label": "Session id" })
    : null;
  const message = h("p", { class: "hint", role: "status" });
  const form = h(
    "form",
    {
      class: "quarantine-decision",
      onsubmit: async (event) => {
        event.preventDefault();
        const body = { reason: reason.value };
        if (session) body.session_id = session.value.trim();
        try {
          await api(`/dicom-quarantine/${item.id}/${action}`, { method: "POST", body });
          await refresh();
        } catch (exc) {
          message.textContent = exc.message;
          message.classList.add("error");
        }
      },
    },
    session,
    reason,
    h("button", { type: "submit" }, action === "release" ? "Release the series" : "Discard the series"),
    h("button", { type: "button", onclick: () => cell.replaceChildren(...actions(item, cell, refresh)) }, "Cancel"),
    message,
  );
  cell.replaceChildren(form);
  (session || reason).focus();
}

function actions(item, cell, refresh) {
  if (!state.user || state.user.role !== "physicist") return [h("span", { class: "hint" }, "undecided")];
  return [
    h("button", { type: "button", class: "release", onclick: () => decisionForm(item, "release", cell, refresh) }, "Release…"),
    h("button", { type: "button", class: "discard", onclick: () => decisionForm(item, "discard", cell, refresh) }, "Discard…"),
  ];
}

function row(item, refresh) {
  const decision = h("td", { class: "decision" });
  decision.replaceChildren(...(item.resolution ? resolved(item.resolution) : actions(item, decision, refresh)));
  return h(
    "tr",
    { class: "quarantine-row", dataset: { reason: item.reason_code } },
    h("td", {}, when(item.received_at)),
    h("td", {}, item.patient_id_in_file || "(none)", h("div", { class: "hint" }, item.patient_name_in_file || "")),
    h("td", {}, words(item.kind), h("div", { class: "hint" }, item.modality)),
    h("td", {}, item.calling_ae, h("div", { class: "hint" }, words(item.source_role))),
    h("td", {}, h("span", { class: "badge status-failed" }, words(item.reason_code)), h("div", { class: "hint" }, item.reason)),
    decision,
  );
}

// Returns { element, refresh } or null for a role that may not see the quarantine.
export function quarantinePanel() {
  if (!state.user || state.user.role === "console") return null;
  const body = h("tbody");
  const summary = h("p", { class: "hint", role: "status" });
  const element = h(
    "section",
    { class: "card quarantine", "aria-labelledby": "quarantine-title" },
    h("h2", { id: "quarantine-title" }, "DICOM quarantine"),
    h(
      "p",
      { class: "hint" },
      "Objects the DICOM receiver did not attach to any session (unknown or wrong patient, no fitting session, a changed resend). Correct them at the sender and send them again, or (physicists) release a series to a session of the patient it names, or discard it.",
    ),
    summary,
    h(
      "table",
      { class: "quarantine-table" },
      h(
        "thead",
        {},
        h("tr", {}, ["Received", "Patient ID in file", "Object", "Sender", "Reason", "Decision"].map((t) => h("th", { scope: "col" }, t))),
      ),
      body,
    ),
  );

  async function refresh(background = false) {
    try {
      const page = await api(`/dicom-quarantine?limit=${LIMIT}`, { background });
      body.replaceChildren(...page.data.map((item) => row(item, refresh)));
      if (page.count === 0) body.replaceChildren(h("tr", {}, h("td", { colspan: 6 }, "Nothing held.")));
      summary.textContent =
        page.count > LIMIT ? `${page.count} held; the newest ${LIMIT} shown.` : `${page.count} held.`;
      summary.classList.remove("error");
    } catch (exc) {
      summary.textContent = `Could not load the quarantine (${exc.message}).`;
      summary.classList.add("error");
    }
  }

  return { element, refresh };
}
