// Show the current view again, through the router, so that the old view is cleaned up first.

export function rerender() {
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}
