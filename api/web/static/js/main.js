// The review page: sign-in, hash routes, and one view at a time.

import { ApiError, api, setCsrfToken } from "./api.js";
import { h } from "./dom.js";
import { showAssessment } from "./assessment.js";
import { showMonitor } from "./monitor.js";
import { showRegistration } from "./registration.js";
import { showSession } from "./session.js";
import { state } from "./state.js";
import { showWorklist } from "./worklist.js";

const view = document.getElementById("view");

const ROUTES = [
  [/^#\/worklist(?:\?.*)?$/, showWorklist],
  [/^#\/sessions\/([\w-]+)$/, showSession],
  [/^#\/sessions\/([\w-]+)\/monitor$/, showMonitor],
  [/^#\/assessments\/([\w-]+)$/, showAssessment],
  [/^#\/registrations\/([\w-]+)$/, showRegistration],
];

let leaveView = null;

function showUser() {
  const signedIn = state.user !== null;
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("user").hidden = !signedIn;
  if (signedIn) {
    document.getElementById("user-name").textContent = state.user.name;
    document.getElementById("user-role").textContent = state.user.role;
  }
}

function signedIn(session) {
  state.user = session;
  setCsrfToken(session.csrf_token);
  showUser();
}

export function signedOut() {
  state.user = null;
  setCsrfToken(null);
  showUser();
}

function showSignIn(message) {
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    required: true,
    "aria-describedby": "token-help",
  });
  const error = h("p", { class: "error", role: "alert", id: "sign-in-error" }, message || "");
  const form = h(
    "form",
    { class: "card sign-in", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("label", { for: "token" }, "API token"),
    input,
    h(
      "p",
      { id: "token-help", class: "hint" },
      "Your API token (igrt token create). Therapists and physicists may review; console tokens may only look. The token is sent once; the browser then keeps only a session cookie.",
    ),
    error,
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      signedIn(await api("/web-session", { method: "POST", body: { token: input.value.trim() } }));
      input.value = "";
      await render();
    } catch (exc) {
      error.textContent = exc instanceof ApiError ? exc.message : "The service did not answer.";
    }
  });
  view.replaceChildren(form);
  input.focus();
}

export function showError(exc) {
  if (exc instanceof ApiError && exc.status === 401) {
    signedOut();
    showSignIn("Your sign-in has ended. Sign in again.");
    return;
  }
  const detail = exc instanceof ApiError ? exc.message : String(exc);
  view.replaceChildren(
    h("div", { class: "card error-card", role: "alert" }, h("h1", {}, "Something went wrong"), h("p", {}, detail)),
  );
}

let renderCount = 0;

async function render() {
  // Every navigation gets a number; a view that finishes loading after a newer navigation
  // started is discarded (and cleaned up), so the page never shows another record than the
  // address says, and no old view keeps a socket or timer running.
  renderCount += 1;
  const current = renderCount;
  if (leaveView) {
    leaveView();
    leaveView = null;
  }
  if (state.user === null) {
    showSignIn();
    return;
  }
  const hash = location.hash || "#/worklist";
  for (const [pattern, show] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    const target = h("div", { class: "view-body" }, h("p", { class: "loading" }, "Loading…"));
    view.replaceChildren(target);
    let cleanup = null;
    try {
      cleanup = (await show(target, ...match.slice(1))) || null;
    } catch (exc) {
      if (current === renderCount) showError(exc);
      return;
    }
    if (current !== renderCount) {
      if (cleanup) cleanup();
      return;
    }
    leaveView = cleanup;
    view.focus({ preventScroll: true });
    return;
  }
  location.hash = "#/worklist";
}

document.getElementById("sign-out").addEventListener("click", async () => {
  try {
    await api("/web-session", { method: "DELETE" });
  } catch (exc) {
    // Signed out already, or the service is gone: either way the page forgets the user.
  }
  signedOut();
  await render();
});

window.addEventListener("hashchange", render);

(async () => {
  try {
    signedIn(await api("/web-session"));
  } catch (exc) {
    signedOut();
  }
  await render();
})();
