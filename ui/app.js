// Entry point: sign-in, navigation between the views, sign-out.
//
// The API token lives in sessionStorage: it is gone when the tab closes, and it is sent
// only as the bearer token of /v1 requests to this origin.

import { api, ApiError, alertBox, h, route, show, token, Unauthorized } from "./lib.js";
import { renderOverview } from "./overview.js";
import { renderMessages, renderMessage } from "./messages.js";

const SID = /^\/messages\/((SM|MM)[0-9a-fA-F]{32})$/;

async function render() {
  const nav = document.getElementById("nav");
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
    const sid = path.match(SID);
    if (sid) await renderMessage(sid[1]);
    else if (path === "/messages") await renderMessages(params);
    else await renderOverview(params);
  } catch (error) {
    if (error instanceof Unauthorized) {
      token.clear();
      signIn("The API token was refused; sign in again.");
    } else if (error instanceof ApiError) {
      show(alertBox(error.message));
    } else {
      show(alertBox(`Something went wrong: ${error.message}`));
      throw error;
    }
  }
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
    h("p", {}, "Enter the API token of this statushook (STATUSHOOK_API_TOKEN). ",
      "It is kept for this browser tab only."),
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
