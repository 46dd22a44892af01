// Shared by every view: the token, calls to the /v1 API, building elements, formatting.
// Everything shown comes from the documented API; nothing is computed here that the API
// does not answer, except sums and shares of its numbers for display.

const TOKEN_KEY = "statushook.token";
const ACCESS_KEY = "statushook.access";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ACCESS_KEY);
  },
};

/** Preferences of this browser (not secrets): kept in localStorage. */
function preference(key, values) {
  return {
    get: () => {
      const value = localStorage.getItem(`statushook.${key}`);
      return values.includes(value) ? value : values[0];
    },
    set: (value) => localStorage.setItem(`statushook.${key}`, value),
  };
}

/** Times are shown in UTC, or in the browser's zone; the zone is always named. */
export const zone = preference("zone", ["utc", "local"]);
/** Seconds between refreshes of the current view; "0" is off. */
export const refresh = preference("refresh", ["0", "30", "60"]);

const LOCAL_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone ?? "local time";

/** The name of the zone times are shown in. */
export function zoneName() {
  return zone.get() === "utc" ? "UTC" : LOCAL_ZONE;
}

/** Intl options that put a date in the chosen zone. */
function inZone(options) {
  return zone.get() === "utc" ? { ...options, timeZone: "UTC" } : options;
}

/** A date in the chosen zone: `format(date, {hour: "2-digit"})`. */
export function format(date, options) {
  return date.toLocaleString("en-GB", inZone(options));
}

/** The hour and minute of `date` in the chosen zone (for axis steps). */
export function clock(date) {
  const parts = new Intl.DateTimeFormat("en-GB", inZone({
    hour: "numeric", minute: "numeric", hourCycle: "h23",
  })).formatToParts(date);
  const part = (type) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return { hour: part("hour"), minute: part("minute") };
}

/** A `datetime-local` input's value (`2026-11-26T09:00`) as a Date, in the chosen zone. */
export function fromInput(value) {
  if (!value) return null;
  const date = new Date(zone.get() === "utc" ? `${value}Z` : value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** An RFC 3339 time as a `datetime-local` input's value in the chosen zone, to the minute or second. */
export function toInput(iso, precision = "minutes") {
  if (!iso) return null;
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return null;
  const shift = zone.get() === "utc" ? 0 : date.getTimezoneOffset() * 60e3;
  return new Date(date.getTime() - shift).toISOString().slice(0, precision === "seconds" ? 19 : 16);
}

/** The API refused the token: the app signs the user out and says why. */
export class Unauthorized extends Error {}

/** A JSON error answer of the API (`{"error": "…"}`), with its status. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** A request under /v1 with the bearer token; answers the Response, or throws. */
async function call(path, params, method = "GET") {
  const query = params && String(params) ? `?${params}` : "";
  let response;
  try {
    response = await fetch(`/v1/${path}${query}`, {
      method, headers: { Authorization: `Bearer ${token.get() ?? ""}` },
    });
  } catch {
    throw new ApiError(0, "statushook cannot be reached; is it running?");
  }
  if (response.status === 401) throw new Unauthorized();
  return response;
}

async function failure(response) {
  const body = await response.json().catch(() => ({}));
  return new ApiError(response.status, body.error ?? `HTTP ${response.status}`);
}

/** GET `path` (under /v1) with the bearer token; answers the parsed JSON. */
export async function api(path, params) {
  const response = await call(path, params);
  if (!response.ok) throw await failure(response);
  return response.json();
}

/** DELETE `path` (under /v1); answers the parsed JSON, if any. */
export async function apiDelete(path, params) {
  const response = await call(path, params, "DELETE");
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? {} : response.json();
}

/**
 * Whether the token may change anything: the read-only token (STATUSHOOK_READ_TOKEN) may
 * only GET. Asked of `GET /v1/access` once per sign-in and kept beside the token.
 */
export async function canWrite() {
  const known = sessionStorage.getItem(ACCESS_KEY);
  if (!known) sessionStorage.setItem(ACCESS_KEY, (await api("access")).access);
  return sessionStorage.getItem(ACCESS_KEY) === "full";
}

/** Downloads `GET /v1/export` for `params` under the name its Content-Disposition gives. */
export async function download(params) {
  const response = await call("export", params);
  if (!response.ok) throw await failure(response);
  const disposition = response.headers.get("content-disposition") ?? "";
  const name = disposition.match(/filename="?([^";]+)"?/)?.[1] ?? "statushook-export";
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60e3);
  return name;
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

/**
 * (failed + undelivered) / (delivered + read + undelivered + failed), the delivery rate's
 * denominator; null when there are none. A share of the API's counts.
 */
export function failureRate(counts) {
  const n = (status) => counts.by_status?.[status] ?? 0;
  const failed = n("failed") + n("undelivered");
  const concluded = failed + n("delivered") + n("read");
  return concluded > 0 ? failed / concluded : null;
}

export function formatRate(rate) {
  return rate === null || rate === undefined ? "–" : `${(rate * 100).toFixed(1)} %`;
}

/** A time in the chosen zone, named; its RFC 3339 (UTC) form in a tooltip and `datetime`. */
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "–");
  const text = format(new Date(iso), {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  return h("time", { datetime: iso, title: iso }, `${text} ${zoneName()}`);
}

/**
 * `RawDlrDoneDate` as a time: the carrier's "done date", `YYMMDDhhmm` (or with seconds,
 * `YYMMDDhhmmss`) in UTC. Answers null for a value of another shape.
 */
export function dlrDoneDate(raw) {
  const match = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)?$/.exec(raw ?? "");
  if (!match) return null;
  const [, yy, mm, dd, hh, mi, ss = "00"] = match;
  const date = new Date(`20${yy}-${mm}-${dd}T${hh}:${mi}:${ss}Z`);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
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

/**
 * Buttons that download `GET /v1/export` of the messages `filters` select (the listing's
 * filters) as CSV or JSON lines, with a `note` if the export is not exactly what is shown.
 */
export function exportControls(filters, note) {
  const status = h("span", { class: "muted", "aria-live": "polite" });
  const button = (label, format) => h("button", {
    type: "button", class: "secondary", "data-format": format,
    onclick: async (event) => {
      event.target.disabled = true;
      status.textContent = "Exporting…";
      try {
        const query = new URLSearchParams(filters);
        query.set("format", format);
        status.textContent = `Downloaded ${await download(query)}.`;
      } catch (error) {
        status.textContent = `The export failed: ${error.message}`;
      } finally {
        event.target.disabled = false;
      }
    },
  }, label);
  return h("div", { class: "row export", role: "group", "aria-label": "Export" },
    button("Export CSV", "csv"), button("Export JSON lines", "jsonl"),
    note ? h("span", { class: "muted" }, note) : null, status);
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

/**
 * The ranks of domain/status.rs (`known_statuses!`): a status replaces the current one
 * only if its rank is at least as high (see `KnownStatus::is_news_for`).
 */
export const RANKS = {
  accepted: 0, scheduled: 1, queued: 2, sending: 3, receiving: 3, sent: 4,
  received: 5, delivered: 5, undelivered: 5, failed: 5, canceled: 5,
  partially_delivered: 5, read: 6,
};

export const STATUSES = [
  "accepted", "scheduled", "queued", "sending", "sent", "receiving", "received",
  "delivered", "undelivered", "failed", "canceled", "partially_delivered", "read",
];
