// Worklist: sessions newest first, with what needs attention; filter by day, status, patient.

import { ApiError, api } from "./api.js";
import { h, recommendationLabel, statusBadge, when, words } from "./dom.js";
import { rerender } from "./navigation.js";
import { quarantinePanel } from "./quarantine.js";

const STATUSES = [
  "alert_during_monitoring",
  "flagged_for_repositioning",
  "awaiting_review",
  "reviewed",
  "no_results",
];

const filters = { day: "today", status: "", patient: "" };

function localMidnightIso() {
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  return midnight.toISOString();
}

function query() {
  const params = new URLSearchParams();
  if (filters.day === "today") params.set("since", localMidnightIso());
  if (filters.status) params.set("status", filters.status);
  if (filters.patient) params.set("patient", filters.patient);
  return params.toString();
}

function row(item) {
  const link = h("a", { href: `#/sessions/${item.session_id}` }, item.patient_name || item.patient_external_id);
  const session =
    item.kind === "fraction" ? `Fraction ${item.fraction_number ?? "?"}` : words(item.kind);
  return h(
    "tr",
    { class: `worklist-row status-${item.status}`, dataset: { sessionId: item.session_id } },
    h("td", {}, link, h("div", { class: "hint" }, item.patient_external_id)),
    h("td", {}, session, h("div", { class: "hint" }, item.patient_position)),
    h("td", {}, when(item.created_at)),
    h("td", {}, statusBadge(item.status)),
    h("td", { class: "number" }, String(item.awaiting_review)),
    h("td", {}, item.latest_recommendation ? recommendationLabel(item.latest_recommendation) : "—"),
  );
}

export async function showWorklist(view) {
  const table = h("tbody");
  const summary = h("p", { class: "hint", role: "status", "aria-live": "polite" });
  const daySelect = h(
    "select",
    { id: "filter-day" },
    h("option", { value: "today" }, "Today"),
    h("option", { value: "all" }, "All days"),
  );
  const statusSelect = h(
    "select",
    { id: "filter-status" },
    h("option", { value: "" }, "Any status"),
    STATUSES.map((status) => h("option", { value: status }, words(status))),
  );
  const patientInput = h("input", { id: "filter-patient", type: "search", placeholder: "id or name" });
  daySelect.value = filters.day;
  statusSelect.value = filters.status;
  patientInput.value = filters.patient;

  let requested = 0;

  async function load(background = false) {
    // Answers can arrive out of order when filters change quickly: keep only the newest.
    requested += 1;
    const mine = requested;
    const worklist = await api(`/worklist?${query()}`, { background });
    if (mine !== requested) return;
    table.replaceChildren(...worklist.data.map(row));
    if (worklist.count === 0) {
      const showAll = h("button", { type: "button", class: "quiet" }, "Show all days");
      showAll.addEventListener("click", () => {
        filters.day = daySelect.value = "all";
        refresh();
      });
      table.replaceChildren(
        h("tr", {}, h("td", { colspan: 6 }, "No sessions match. ", filters.day === "today" ? showAll : "")),
      );
    }
    const time = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    summary.textContent = `${worklist.count} session${worklist.count === 1 ? "" : "s"} · updated ${time}`;
    summary.classList.remove("error");
  }

  async function refresh(background = false) {
    try {
      await load(background);
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 401) {
        rerender(); // the router shows the sign-in form
        return;
      }
      summary.textContent = `Could not update the worklist (${exc.message}); the list below may be out of date.`;
      summary.classList.add("error");
    }
  }

  daySelect.addEventListener("change", () => {
    filters.day = daySelect.value;
    refresh();
  });
  statusSelect.addEventListener("change", () => {
    filters.status = statusSelect.value;
    refresh();
  });
  let typing = null;
  patientInput.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      filters.patient = patientInput.value.trim();
      refresh();
    }, 250);
  });

  view.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Worklist"),
      h(
        "form",
        { class: "filters", role: "search", onsubmit: (event) => event.preventDefault() },
        h("label", {}, "Day ", daySelect),
        h("label", {}, "Status ", statusSelect),
        h("label", {}, "Patient ", patientInput),
      ),
    ),
    summary,
    h(
      "table",
      { class: "worklist" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Patient", "Session", "Created", "Status", "To review", "Motion decision"].map((title) =>
            h("th", { scope: "col" }, title),
          ),
        ),
      ),
      table,
    ),
  );
  const quarantine = quarantinePanel();
  if (quarantine) view.append(quarantine.element);
  await Promise.all([load(), quarantine && quarantine.refresh()]);
  const timer = setInterval(() => {
    refresh(true);
    if (quarantine) quarantine.refresh(true);
  }, 15000);
  return () => clearInterval(timer);
}
