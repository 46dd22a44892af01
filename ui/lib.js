// Shared by every view: the token, calls to the /v1 API, building elements, formatting.
// Everything shown comes from the documented API; nothing is computed here that the API
// does not answer, except sums and shares of its numbers for display.

const TOKEN_KEY = "statushook.token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** The API refused the token: the app signs the user out and says why. */
export class Unauthorized extends Error {}

/** A JSON error answer of the API (`{"error": "…"}`), with its status. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GET `path` (under /v1) with the bearer token; answers the parsed JSON. */
export async function api(path, params) {
  const query = params ? `?${params}` : "";
  let response;
  try {
    response = await fetch(`/v1/${path}${query}`, {
      headers: { Authorization: `Bearer ${token.get() ?? ""}` },
    });
  } catch {
    throw new ApiError(0, "statushook cannot be reached; is it running?");
  }
  if (response.status === 401) throw new Unauthorized();
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, body.error ?? `HTTP ${response.status}`);
  }
  return body;
}

/**
 * Builds an element: `h("a", {href: "#/"}, "text", child)`. Attributes that start with
 * `on` are listeners; `null`/`false` attributes and children are skipped. Text is always
 * set as text, never parsed as HTML.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces the main region's content and moves the focus there for screen readers. */
export function show(...children) {
  const main = document.getElementById("main");
  main.replaceChildren();
  append(main, children);
}

export const numberFormat = new Intl.NumberFormat("en");

export function formatCount(value) {
  return numberFormat.format(value ?? 0);
}

export function formatRate(rate) {
  return rate === null || rate === undefined ? "–" : `${(rate * 100).toFixed(1)} %`;
}

/** A time as the user's local time, its UTC form in a tooltip and `datetime`. */
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "–");
  const date = new Date(iso);
  return h("time", { datetime: iso, title: iso }, date.toLocaleString("en-GB", {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }));
}

/** A status as a coloured badge; colour is never the only cue (the word is there). */
export function statusBadge(status) {
  const name = status ?? "unknown";
  return h("span", { class: `badge status-${name}` }, name);
}

/** An error code linked to Twilio's page about it, with its title when known. */
export function errorLabel(code, description) {
  if (code === null || code === undefined) return h("span", { class: "muted" }, "–");
  return h("span", { class: "error-label" },
    h("a", {
      href: `https://www.twilio.com/docs/api/errors/${code}`,
      target: "_blank",
      rel: "noopener noreferrer",
      title: `Twilio's page about error ${code} (opens in a new tab)`,
    }, String(code)),
    description ? ` ${description}` : null);
}

/** A region that announces an error to screen readers. */
export function alertBox(message) {
  return h("p", { class: "alert", role: "alert" }, message);
}

/** `#/messages?status=failed` → {path: "/messages", params: URLSearchParams}. */
export function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  return { path, params: new URLSearchParams(query) };
}

export const STATUSES = [
  "accepted", "scheduled", "queued", "sending", "sent", "receiving", "received",
  "delivered", "undelivered", "failed", "canceled", "partially_delivered", "read",
];
