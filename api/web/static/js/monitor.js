// Live monitor: the dome trace of a session while the console streams, the current offset from
// the reference, and an alert banner when the protocol's rule fires (offset beyond the
// threshold for longer than the persistence time).

import { api } from "./api.js";
import { h, mm, num, section, words } from "./dom.js";
import { TraceChart } from "./trace_chart.js";

const WINDOW_S = 30;

export async function showMonitor(view, sessionId) {
  const session = await api(`/sessions/${sessionId}`);
  const patient = await api(`/patients/${session.patient_id}`);
  const banner = h("div", { class: "alert-banner", id: "alert-banner", role: "alert", hidden: true });
  const status = h("p", { class: "monitor-status", id: "monitor-status", role: "status" }, "Connecting…");
  const offset = h("p", { class: "offset", id: "current-offset" }, "—");
  const rule = h("p", { class: "hint", id: "alert-rule" });
  const canvas = h("canvas", { class: "trace", id: "live-chart", role: "img", "aria-label": "Live dome trace" });
  const chart = new TraceChart(canvas, { yLabel: "dome SI (mm, superior +)" });
  const samples = { times: [], values: [], statuses: [] };
  let reference = null;
  let threshold = 3;

  view.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Live monitor"),
      h("p", { class: "hint" }, h("a", { href: `#/sessions/${sessionId}` }, "Back to the session"), ` · ${patient.name || patient.external_id} · ${words(session.kind)}`),
    ),
    banner,
    h(
      "div",
      { class: "grid monitor" },
      section("Dome trace (last 30 s)", canvas),
      section("Offset from the reference", offset, status, rule),
    ),
  );

  function redraw(lastTime) {
    const lines = [];
    if (reference !== null) {
      lines.push({ y: reference, label: "reference", colour: "#9aa7b4", dash: [2, 3] });
      lines.push({ y: reference + threshold, label: `+${threshold} mm` });
      lines.push({ y: reference - threshold, label: `−${threshold} mm` });
    }
    chart.setXRange([Math.max(0, lastTime - WINDOW_S), Math.max(WINDOW_S, lastTime)]);
    chart.setData({ ...samples, lines });
  }

  function onResult(message) {
    samples.times.push(message.time_s);
    samples.values.push(message.dome.si_isocentre_mm);
    samples.statuses.push(message.dome.status);
    while (samples.times.length && samples.times[0] < message.time_s - WINDOW_S - 5) {
      samples.times.shift();
      samples.values.shift();
      samples.statuses.shift();
    }
    reference = message.reference_si_mm;
    threshold = message.alert.threshold_mm;
    offset.textContent = message.displacement_si_mm === null ? "establishing the reference…" : mm(message.displacement_si_mm, 1, true);
    offset.classList.toggle("over", message.alert.over_threshold_s !== null);
    if (message.alert.active) {
      banner.hidden = false;
      banner.className = "alert-banner active";
      banner.textContent = `ALERT: the dome is ${mm(message.displacement_si_mm, 1, true)} from the reference, beyond ${mm(threshold, 0)} for ${num(message.alert.over_threshold_s, 1, "s")}. Hold the beam and check the patient.`;
    } else if (message.alert.event === "cleared") {
      banner.hidden = false;
      banner.className = "alert-banner cleared";
      banner.textContent = "Alert cleared: the dome is back within the threshold.";
    }
    status.textContent = `Streaming · frame ${message.frame_index + 1} · t = ${num(message.time_s, 1, "s")} · ${words(message.dome.status)}`;
    redraw(message.time_s);
  }

  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/v1/sessions/${sessionId}/monitor`);
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "ready") {
      threshold = message.alert_threshold_mm;
      rule.textContent = `Alert rule (protocol ${message.protocol_version}): more than ${mm(message.alert_threshold_mm, 0)} from the reference for longer than ${num(message.alert_persistence_s, 0, "s")}.`;
      status.textContent = "Waiting for the console to stream…";
      view.dataset.monitor = "ready";
    } else if (message.type === "started") {
      status.textContent = "Stream started.";
    } else if (message.type === "result") {
      onResult(message);
    } else if (message.type === "summary") {
      status.textContent = `Stream ended · ${message.frames} frames · ${message.alerts_raised} alert(s).`;
    } else if (message.type === "error") {
      status.textContent = message.detail;
    }
  });
  socket.addEventListener("close", () => {
    if (view.dataset.monitor === "ready") status.textContent += " (disconnected)";
  });
  redraw(0);
  return () => {
    delete view.dataset.monitor;
    socket.close();
    chart.destroy();
  };
}
