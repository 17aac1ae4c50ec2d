// Live monitor: the dome trace of a session while the console streams, the running end-exhale
// baseline the alert rule watches, the current offset from the reference, and an alert banner
// when the protocol's rule fires (baseline beyond the threshold for longer than the persistence
// time). A lost connection or a stream that stops sending is shown as NOT MONITORING.

import { api } from "./api.js";
import { h, mm, num, section, words } from "./dom.js";
import { TraceChart } from "./trace_chart.js";

const WINDOW_S = 30;
const SILENCE_WARNING_S = 3;
const MAX_RECONNECT_DELAY_MS = 10000;

function direction(value) {
  if (value === null || value === undefined) return "";
  return value > 0 ? " superior" : value < 0 ? " inferior" : "";
}

export async function showMonitor(view, sessionId) {
  const session = await api(`/sessions/${sessionId}`);
  const patient = await api(`/patients/${session.patient_id}`);
  // The banner's text changes with every frame; only raising it is announced (role=alert is
  // set then), not each update.
  const banner = h("div", { class: "alert-banner", id: "alert-banner", hidden: true });
  const connection = h("div", { class: "alert-banner offline", id: "connection-banner", hidden: true });
  const status = h("p", { class: "monitor-status", id: "monitor-status" }, "Connecting…");
  const offset = h("p", { class: "offset", id: "current-offset" }, "—");
  const rule = h("p", { class: "hint", id: "alert-rule" });
  const canvas = h("canvas", { class: "trace", id: "live-chart", role: "img", "aria-label": "Live dome trace" });
  const chart = new TraceChart(canvas, { yLabel: "dome SI (mm, superior +)" });
  const samples = { times: [], values: [], statuses: [] };
  const baseline = { times: [], values: [] };
  let reference = null;
  let threshold = 3;
  let lastFrameAt = null;
  let streaming = false;
  let closed = false;
  let socket = null;
  let reconnectDelayMs = 500;
  let reconnectTimer = null;

  view.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Live monitor"),
      h("p", { class: "hint" }, h("a", { href: `#/sessions/${sessionId}` }, "Back to the session"), ` · ${patient.name || patient.external_id} · ${words(session.kind)}`),
    ),
    connection,
    banner,
    h(
      "div",
      { class: "grid monitor" },
      section(
        "Dome trace (last 30 s)",
        canvas,
        h("p", { class: "hint legend" }, "Thin: the dome on each frame · thick: the running end-exhale baseline the alert rule watches · dashed: reference ± threshold"),
      ),
      section("Baseline offset from the reference", offset, status, rule),
    ),
  );

  function notMonitoring(text) {
    connection.hidden = false;
    connection.setAttribute("role", "alert");
    connection.textContent = `NOT MONITORING — ${text}`;
  }

  function monitoringAgain() {
    connection.hidden = true;
    connection.removeAttribute("role");
  }

  function redraw(lastTime) {
    const lines = [];
    if (reference !== null) {
      lines.push({ y: reference, label: "reference (end-exhale)", colour: "#9aa7b4", dash: [2, 3] });
      lines.push({ y: reference + threshold, label: `end-exhale baseline +${threshold} mm` });
      lines.push({ y: reference - threshold, label: `end-exhale baseline −${threshold} mm` });
    }
    chart.setXRange([Math.max(0, lastTime - WINDOW_S), Math.max(WINDOW_S, lastTime)]);
    chart.setData({
      ...samples,
      traceColour: "rgba(94, 200, 255, 0.55)",
      paths: [{ ...baseline, colour: "#ffffff", width: 3 }],
      lines,
    });
  }

  function onResult(message) {
    lastFrameAt = performance.now();
    streaming = true;
    monitoringAgain();
    for (const [series, value] of [
      [samples, message.dome.si_isocentre_mm],
      [baseline, message.exhale_si_mm],
    ]) {
      series.times.push(message.time_s);
      series.values.push(value);
      while (series.times.length && series.times[0] < message.time_s - WINDOW_S - 5) {
        series.times.shift();
        series.values.shift();
        if (series.statuses) series.statuses.shift();
      }
    }
    samples.statuses.push(message.dome.status);
    reference = message.reference_si_mm;
    threshold = message.alert.threshold_mm;
    const displacement = message.displacement_si_mm;
    if (message.monitoring === "building_reference") {
      offset.textContent = "establishing the reference from the stream's first seconds (not checked against the plan)…";
    } else if (message.monitoring === "no_level") {
      offset.textContent = "no end-exhale pause recently: not judged";
    } else if (message.monitoring === "between_holds") {
      offset.textContent = `breathing between holds (gate ${message.gate || "?"})`;
    } else if (message.monitoring !== "monitoring" || displacement === null) {
      offset.textContent = `untrusted (${words(message.dome.status)})`;
    } else {
      offset.textContent = `${mm(displacement, 1, true)}${direction(displacement)}`;
    }
    offset.classList.toggle("over", message.alert.over_threshold_s !== null);
    if (message.alert.active) {
      if (banner.hidden || !banner.classList.contains("active")) banner.setAttribute("role", "alert");
      banner.hidden = false;
      banner.className = "alert-banner active";
      banner.textContent = `ALERT: the end-exhale baseline is ${mm(displacement, 1, true)}${direction(displacement)} of the reference, beyond ${mm(threshold, 0)} for ${num(message.alert.over_threshold_s, 1, "s")}. Hold the beam and check the patient.`;
    } else if (message.alert.event === "cleared") {
      banner.hidden = false;
      banner.setAttribute("role", "status");
      banner.className = "alert-banner cleared";
      banner.textContent = "Alert cleared: the baseline is back within the threshold.";
    }
    status.textContent = `Streaming · frame ${message.frame_index + 1} · t = ${num(message.time_s, 1, "s")} · ${words(message.dome.status)}`;
    redraw(message.time_s);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/api/v1/sessions/${sessionId}/monitor`);
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "ready") {
        reconnectDelayMs = 500;
        monitoringAgain();
        threshold = message.alert_threshold_mm;
        rule.textContent = `Alert rule (protocol ${message.protocol_version}): the end-exhale baseline more than ${mm(message.alert_threshold_mm, 0)} from the reference for longer than ${num(message.alert_persistence_s, 0, "s")}.`;
        status.textContent = streaming ? "Reconnected; waiting for frames…" : "Waiting for the console to stream…";
        view.dataset.monitor = "ready";
      } else if (message.type === "started") {
        status.textContent = "Stream started.";
        const held = message.mode === "breath_hold";
        const reference = message.reference || {};
        rule.textContent = held
          ? `Breath-hold rule (protocol ${message.protocol_version}): a hold more than ${mm(message.alert_threshold_mm, 0)} from the reference hold level for longer than ${num(message.alert_persistence_s, 0, "s")}. Reference: ${reference.source || "?"} — ${reference.detail || ""}`
          : `Alert rule (protocol ${message.protocol_version}): the end-exhale baseline more than ${mm(message.alert_threshold_mm, 0)} from the reference for longer than ${num(message.alert_persistence_s, 0, "s")}. Reference: ${reference.source || "?"} — ${reference.detail || ""}`;
      } else if (message.type === "result") {
        onResult(message);
      } else if (message.type === "summary") {
        streaming = false;
        status.textContent = `Stream ended · ${message.frames} frames · ${message.alerts_raised} alert(s).`;
      } else if (message.type === "error") {
        status.textContent = message.detail;
      }
    });
    socket.addEventListener("close", (event) => {
      if (closed) return;
      if (event.code === 1008) {
        notMonitoring("the service refused this page (sign in again).");
        return;
      }
      notMonitoring(`connection to the service lost; retrying in ${Math.round(reconnectDelayMs / 1000)} s.`);
      reconnectTimer = setTimeout(connect, reconnectDelayMs);
      reconnectDelayMs = Math.min(MAX_RECONNECT_DELAY_MS, reconnectDelayMs * 2);
    });
  }

  // A stream that stops sending frames without a summary is not being monitored either.
  const watchdog = setInterval(() => {
    if (streaming && lastFrameAt !== null && performance.now() - lastFrameAt > SILENCE_WARNING_S * 1000) {
      notMonitoring(`no frame for ${num((performance.now() - lastFrameAt) / 1000, 0, "s")}.`);
    }
  }, 1000);

  connect();
  redraw(0);
  return () => {
    closed = true;
    clearInterval(watchdog);
    clearTimeout(reconnectTimer);
    delete view.dataset.monitor;
    if (socket) socket.close();
    chart.destroy();
  };
}
