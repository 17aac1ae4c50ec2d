// Tiny DOM helpers. Text always goes in as text nodes: nothing from the API is parsed as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function words(value) {
  return value === null || value === undefined ? "—" : String(value).replaceAll("_", " ");
}

export function mm(value, digits = 1, signed = false) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  const text = Number(value).toFixed(digits);
  return `${signed && value > 0 ? "+" : ""}${text} mm`;
}

export function num(value, digits = 1, unit = "") {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return `${Number(value).toFixed(digits)}${unit ? ` ${unit}` : ""}`;
}

export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

export function definitionList(rows) {
  return h(
    "dl",
    { class: "facts" },
    rows.filter(Boolean).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
  );
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

export const RECOMMENDATION_LABELS = {
  no_device: "No motion-management device",
  active_breathing_control: "Active breathing control (ABC)",
  abdominal_compression: "Abdominal compression",
  breath_hold_trial_next: "Motion management required: breath-hold (ABC) trial next",
  gating_or_larger_margin: "Gating or a larger margin",
  reassess: "Re-assess (no trustworthy decision)",
};

export function recommendationLabel(value) {
  return RECOMMENDATION_LABELS[value] || words(value);
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, words(status));
}
