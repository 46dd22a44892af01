// Entry point: sign-in, navigation between the views, the header's settings (time zone,
// refresh), sign-out.
//
// The API token lives in sessionStorage: it is gone when the tab closes, and it is sent
// only as the bearer token of /v1 requests to this origin.

import {
  api, ApiError, alertBox, canWrite, format, h, refresh, route, show, token, Unauthorized,
  zone, zoneName,
} from "./lib.js";
import { renderOverview } from "./overview.js";
import { renderMessages, renderMessage } from "./messages.js";

const SID = /^\/messages\/((SM|MM)[0-9a-fA-F]{32})$/;
const nav = document.getElementById("nav");

/** The pending refresh of the current view, if any. */
let timer = null;
/** Renders started; a view drawn by an older one than the last would undo a newer one. */
let renders = 0;

async function render({ quiet = false } = {}) {
  clearTimeout(timer);
  const mine = ++renders;
  const current = () => mine === renders;
  if (!token.get()) {
    nav.hidden = true;
    signIn();
    return;
  }
  nav.hidden = false;
  const { path, params } = route();
  for (const link of nav.querySelectorAll("a[data-nav]")) {
    const current = link.dataset.nav === (path.startsWith("/messages") ? "messages" : "overview");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  try {
    const writable = await canWrite();
    if (!current()) return;
    document.getElementById("read-only").hidden = writable;
    // Each view draws only while `current()`: an answer that comes after the user moved on
    // (another page, another zone) is dropped.
    const context = { quiet, writable, current };
    const sid = path.match(SID);
    if (sid) await renderMessage(sid[1], context);
    else if (path === "/messages") await renderMessages(params, context);
    else await renderOverview(params, context);
    if (!current()) return;
    document.getElementById("updated").textContent = `Updated ${format(new Date(), {
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    })} ${zoneName()}`;
  } catch (error) {
    if (!current()) return;
    if (error instanceof Unauthorized) {
      token.clear();
      signIn("The API token was refused; sign in again.");
      return;
    } else if (error instanceof ApiError) {
      show(alertBox(error.message));
    } else {
      show(alertBox(`Something went wrong: ${error.message}`));
      throw error;
    }
  }
  schedule();
}

/** Renders the view again after the chosen interval, unless someone is typing in it. */
function schedule() {
  const seconds = Number(refresh.get());
  if (!seconds) return;
  timer = setTimeout(() => {
    const typing = document.activeElement?.closest("main input, main select, main textarea");
    if (document.hidden || typing) schedule();
    else render({ quiet: true });
  }, seconds * 1000);
}

function signIn(message) {
  document.title = "Sign in · statushook";
  const input = h("input", {
    id: "token", name: "token", type: "password", required: true,
    autocomplete: "current-password", spellcheck: "false",
  });
  const status = h("div", { "aria-live": "polite" }, message ? alertBox(message) : null);
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "card sign-in", onsubmit: submit },
    h("h1", {}, "Sign in"),
    h("p", {}, "Enter the API token of this statushook (STATUSHOOK_API_TOKEN), or its ",
      "read-only token (STATUSHOOK_READ_TOKEN). It is kept for this browser tab only."),
    h("label", { for: "token" }, "API token"),
    input,
    button,
    status);
  show(form);
  input.focus();

  async function submit(event) {
    event.preventDefault();
    button.disabled = true;
    token.set(input.value.trim());
    try {
      // Any authenticated call proves the token; the all-time stats are cheap.
      await api("stats");
      render();
    } catch (error) {
      token.clear();
      const text = error instanceof Unauthorized
        ? "That token was not accepted (401). Check STATUSHOOK_API_TOKEN and try again."
        : error.message;
      status.replaceChildren(alertBox(text));
      button.disabled = false;
      input.select();
    }
  }
}

const zoneSelect = document.getElementById("zone");
const refreshSelect = document.getElementById("refresh");
document.getElementById("zone-local").textContent =
  `local time (${Intl.DateTimeFormat().resolvedOptions().timeZone})`;
zoneSelect.value = zone.get();
refreshSelect.value = refresh.get();
zoneSelect.addEventListener("change", () => {
  zone.set(zoneSelect.value);
  render({ quiet: true });
});
refreshSelect.addEventListener("change", () => {
  refresh.set(refreshSelect.value);
  clearTimeout(timer);
  schedule();
});
document.getElementById("sign-out").addEventListener("click", () => {
  token.clear();
  location.hash = "#/";
  render();
});
window.addEventListener("hashchange", () => {
  render();
  document.getElementById("main").focus({ preventScroll: true });
});
render();
