// The DICOM quarantine: instances the receiver held back from every session (therapists and
// physicists only; the service answers 403 to a console, so the panel is not shown to one).

import { api } from "./api.js";
import { h, when, words } from "./dom.js";
import { state } from "./state.js";

const LIMIT = 20;

function row(item) {
  return h(
    "tr",
    { class: "quarantine-row", dataset: { reason: item.reason_code } },
    h("td", {}, when(item.received_at)),
    h("td", {}, item.patient_id_in_file || "(none)", h("div", { class: "hint" }, item.patient_name_in_file || "")),
    h("td", {}, words(item.kind), h("div", { class: "hint" }, item.modality)),
    h("td", {}, item.calling_ae, h("div", { class: "hint" }, words(item.source_role))),
    h("td", {}, h("span", { class: "badge status-failed" }, words(item.reason_code)), h("div", { class: "hint" }, item.reason)),
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
      "Objects the DICOM receiver did not attach to any session (unknown or wrong patient, no fitting session, a changed resend). Correct them at the sender and send them again.",
    ),
    summary,
    h(
      "table",
      { class: "quarantine-table" },
      h(
        "thead",
        {},
        h("tr", {}, ["Received", "Patient ID in file", "Object", "Sender", "Reason"].map((t) => h("th", { scope: "col" }, t))),
      ),
      body,
    ),
  );

  async function refresh(background = false) {
    try {
      const page = await api(`/dicom-quarantine?limit=${LIMIT}`, { background });
      body.replaceChildren(...page.data.map(row));
      if (page.count === 0) body.replaceChildren(h("tr", {}, h("td", { colspan: 5 }, "Nothing held.")));
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
