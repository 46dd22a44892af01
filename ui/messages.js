// The message list (GET /v1/messages with every filter it takes, paged by its cursor,
// searchable by SID or by a phone number as recipient or sender) and the message page
// (GET /v1/messages/{sid}: the timeline of events with every parameter of each).

import {
  api, apiDelete, dlrDoneDate, errorLabel, exportControls, formatCount, fromInput, h, RANKS,
  show, statusBadge, STATUSES, time, toInput, zoneName,
} from "./lib.js";

const SID = /^(SM|MM)[0-9a-fA-F]{32}$/;
const FILTERS = ["status", "error_code", "to", "from", "since", "until", "limit"];
const NUMBER = /^\+[1-9][0-9]{0,14}$/;

/** Cursors of the pages before the current one, so "Previous page" can go back. */
let previous = [];

export async function renderMessages(params, { quiet, current }) {
  document.title = "Messages · statushook";
  const query = new URLSearchParams();
  for (const name of FILTERS) for (const value of params.getAll(name)) {
    if (value !== "") query.append(name, value);
  }
  const number = NUMBER.test(params.get("number") ?? "") ? params.get("number") : null;
  if (params.get("cursor")) query.set("cursor", params.get("cursor"));
  else previous = [];
  if (!quiet) show(h("h1", {}, "Messages"), filters(params), h("p", { class: "muted" }, "Loading…"));
  const page = number ? await either(number, query) : await api("messages", query);
  if (!current()) return;
  const filtered = number || [...query.keys()].some((name) => name !== "cursor" && name !== "limit");
  // The export takes the listing's filters, but one number at a time.
  const exported = new URLSearchParams(query);
  exported.delete("limit");
  exported.delete("cursor");
  show(
    h("h1", {}, "Messages"),
    filters(params),
    exportControls(exported, number
      ? "The export holds every message of the other filters; search the number as recipient only or sender only to export its messages." : null),
    h("p", { class: "muted", "aria-live": "polite", id: "list-summary" },
      number ? `Messages to or from ${number}, newest update first.` :
        `${formatCount(page.messages.length)} message${page.messages.length === 1 ? "" : "s"}` +
        ` on this page${filtered ? ", filtered" : ""}, newest update first.`),
    page.messages.length === 0 ? empty(number, query) : list(page.messages, number),
    number ? more(number, query, page) : pager(params, page.next_cursor),
  );
  document.body.dataset.view = "messages";
}

/**
 * The messages of `number` as recipient and as sender (two listings), merged newest first:
 * the first page of each, so the newest `limit` of either kind are all here.
 */
async function either(number, query) {
  const side = (name) => {
    const one = new URLSearchParams(query);
    one.delete("cursor");
    one.set(name, number);
    return api("messages", one);
  };
  const [to, from] = await Promise.all([side("to"), side("from")]);
  const seen = new Map();
  for (const message of [...to.messages, ...from.messages]) seen.set(message.sid, message);
  const messages = [...seen.values()].sort((a, b) =>
    (a.updated_at < b.updated_at ? 1 : a.updated_at > b.updated_at ? -1 : 0));
  return { messages, more: { to: to.next_cursor, from: from.next_cursor } };
}

/** What to say when nothing matches, and what to try instead. */
function empty(number, query) {
  const window = query.has("since") || query.has("until");
  const others = ["status", "error_code"].some((name) => query.has(name));
  const text = number
    ? `No message was sent to or from ${number}${window || others ? " with these filters" : ""}.`
    : "No message matches these filters.";
  return h("div", { class: "card empty", role: "status" },
    h("p", {}, h("strong", {}, text)),
    h("p", { class: "muted" }, number
      ? "Numbers are matched exactly, in E.164 form (+ and the country code), as Twilio reports " +
        "them in To and From; a WhatsApp or RCS address (whatsapp:+1…) is matched as written."
      : "Widen the window or clear a filter."),
    window || others ? h("p", {}, h("a", {
      href: number ? `#/messages?${new URLSearchParams({ number })}` : "#/messages",
    }, "Search again without the other filters")) : null);
}

/** Links to the rest of a number's messages, one side at a time (each pages by its cursor). */
function more(number, query, page) {
  const link = (name, text) => {
    const rest = new URLSearchParams(query);
    rest.set(name, number);
    return h("a", { href: `#/messages?${rest}`, class: "button secondary" }, text);
  };
  return h("nav", { class: "pager", "aria-label": "Pages" },
    page.more.to ? link("to", "All messages to this number") : null,
    page.more.from ? link("from", "All messages from this number") : null);
}

function filters(params) {
  const chosen = new Set(params.getAll("status"));
  const field = (name, label, attributes = {}) => [
    h("label", { for: `f-${name}` }, label),
    h("input", { id: `f-${name}`, name, value: params.get(name) ?? "", ...attributes }),
  ];
  const search = h("form", { class: "search", role: "search", onsubmit: searchSubmit },
    h("label", { for: "q" }, "Find a message by SID, or the messages to or from a phone number"),
    h("div", { class: "row" },
      h("input", { id: "q", name: "q", type: "search", placeholder: "SM… or +1…",
        autocomplete: "off", spellcheck: "false", value: params.get("number") ?? "" }),
      h("select", { name: "as", "aria-label": "The number is the message's" },
        h("option", { value: "number" }, "to or from"),
        h("option", { value: "to" }, "recipient (to) only"),
        h("option", { value: "from" }, "sender (from) only")),
      h("button", { type: "submit" }, "Find")),
    h("p", { class: "hint", id: "search-hint", "aria-live": "polite" }));
  // Open on wide screens and whenever a filter is set; folded on a phone otherwise.
  const active = FILTERS.some((name) => name !== "limit" && params.has(name));
  const form = h("form", { class: "filters", onsubmit: filterSubmit, "aria-label": "Filters" },
    h("fieldset", { class: "statuses" },
      h("legend", {}, "Status"),
      STATUSES.map((status) => h("label", { class: "check" },
        h("input", { type: "checkbox", name: "status", value: status, checked: chosen.has(status) }),
        ` ${status}`))),
    h("div", { class: "grid" },
      field("error_code", "Error code", { inputmode: "numeric", pattern: "[0-9]*" }),
      field("to", "To", { type: "tel" }),
      field("from", "From", { type: "tel" }),
      h("label", { for: "f-since" }, `Updated since (${zoneName()})`),
      h("input", { id: "f-since", name: "since", type: "datetime-local", step: 1,
        value: toInput(params.get("since"), "seconds") }),
      h("label", { for: "f-until" }, `Updated before (${zoneName()})`),
      h("input", { id: "f-until", name: "until", type: "datetime-local", step: 1,
        value: toInput(params.get("until"), "seconds") }),
      h("label", { for: "f-limit" }, "Per page"),
      h("select", { id: "f-limit", name: "limit" }, ["25", "50", "100", "250", "1000"].map((n) =>
        h("option", { value: n, selected: (params.get("limit") ?? "100") === n }, n)))),
    h("div", { class: "row" },
      h("button", { type: "submit" }, "Apply filters"),
      h("a", { href: "#/messages", class: "button secondary" }, "Clear")));
  return h("div", { class: "card" }, search,
    h("details", { open: active || window.innerWidth > 700 }, h("summary", {}, "Filters"), form));
}

function filterSubmit(event) {
  event.preventDefault();
  const query = new URLSearchParams();
  for (const [name, value] of new FormData(event.target)) {
    const text = String(value).trim();
    if (text === "") continue;
    // The pickers' values are in the zone shown; the API takes RFC 3339 (UTC).
    if (name === "since" || name === "until") query.append(name, fromInput(text)?.toISOString() ?? text);
    else query.append(name, text);
  }
  location.hash = `#/messages?${query}`;
}

function searchSubmit(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const text = String(form.get("q")).trim().replace(/[\s().-]/g, "");
  const hint = event.target.querySelector("#search-hint");
  if (SID.test(text)) {
    location.hash = `#/messages/${text}`;
  } else if (/^\+?[0-9]{3,15}$/.test(text)) {
    const number = text.startsWith("+") ? text : `+${text}`;
    location.hash = `#/messages?${new URLSearchParams({ [form.get("as") ?? "number"]: number })}`;
  } else {
    hint.textContent = "Enter a message SID (SM or MM and 32 hex digits) or a phone number in E.164 form (+15005550006).";
  }
}

function list(messages, number) {
  return h("div", { class: "scroll" }, h("table", { id: "messages", class: "messages" },
    h("caption", { class: "visually-hidden" }, "Messages, newest update first"),
    h("thead", {}, h("tr", {},
      ["Message", "Status", "To", "From", "Error", "Updated"].map((title) =>
        h("th", { scope: "col" }, title)))),
    h("tbody", {}, messages.map((message) => h("tr", { "data-sid": message.sid },
      h("td", { "data-label": "Message" },
        h("a", { href: `#/messages/${message.sid}`, class: "sid" }, message.sid)),
      h("td", { "data-label": "Status" }, statusBadge(message.status)),
      h("td", { "data-label": "To", class: number && message.to === number ? "match" : null }, message.to ?? "–"),
      h("td", { "data-label": "From", class: number && message.from === number ? "match" : null }, message.from ?? "–"),
      h("td", { "data-label": "Error" }, errorLabel(message.error_code, message.error_description)),
      h("td", { "data-label": "Updated" }, time(message.updated_at)))))));
}

function pager(params, nextCursor) {
  const at = (cursor) => {
    const query = new URLSearchParams(params);
    query.delete("cursor");
    if (cursor) query.set("cursor", cursor);
    return `#/messages?${query}`;
  };
  const current = params.get("cursor");
  const back = previous.length > 0 && current;
  return h("nav", { class: "pager", "aria-label": "Pages" },
    current ? h("a", { href: at(null), class: "button secondary" }, "First page") : null,
    back ? h("button", {
      type: "button", class: "secondary",
      onclick: () => { location.hash = at(previous.pop() || null); },
    }, "Previous page") : null,
    nextCursor ? h("button", {
      type: "button",
      onclick: () => { previous.push(current ?? ""); location.hash = at(nextCursor); },
    }, "Next page") : null);
}

export async function renderMessage(sid, { quiet, writable, current }) {
  document.title = `${sid} · statushook`;
  if (!quiet) show(h("h1", { class: "sid" }, sid), h("p", { class: "muted" }, "Loading…"));
  const message = await api(`messages/${sid}`);
  if (!current()) return;
  const facts = [
    ["Status", statusBadge(message.status)],
    ["Error", errorLabel(message.error_code, message.error_description)],
    ["To", message.to ?? "–"],
    ["From", message.from ?? "–"],
    ["Messaging service", message.messaging_service_sid ?? "–"],
    ["Account", message.account_sid ?? "–"],
    ["First seen", time(message.created_at)],
    ["Last updated", time(message.updated_at)],
  ];
  const changes = statusChanges(message.events);
  show(
    h("p", {}, h("a", { href: "#/messages" }, "← All messages")),
    h("h1", { class: "sid" }, message.sid),
    h("dl", { class: "card facts" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
    // The read-only token may not erase: the button is not there for it.
    writable ? erase(message.sid) : null,
    h("h2", {}, `Timeline (${message.events.length} event${message.events.length === 1 ? "" : "s"}, in arrival order)`),
    h("ol", { class: "timeline", id: "timeline" },
      message.events.map((item, index) => event(item, index, changes[index]))),
  );
  document.body.dataset.view = "message";
}

/**
 * For each event, the status current before it if the event left that status standing,
 * else null: the rules of domain/message.rs (`MessageState::apply`). An unknown status
 * never becomes current; a lower rank never replaces a higher one (a late `queued`); an
 * equal rank replaces the current status unless its RawDlrDoneDate is the earlier one.
 */
function statusChanges(events) {
  let current = null;
  return events.map((item) => {
    const rank = RANKS[item.status];
    const before = current;
    const stands = rank === undefined || (before !== null && (item.status === before.status
      || rank < RANKS[before.status]
      || (rank === RANKS[before.status] && before.dlr && item.raw_dlr_done_date
        && item.raw_dlr_done_date < before.dlr)));
    if (!stands) current = { status: item.status, dlr: item.raw_dlr_done_date };
    else if (item.status === before?.status && item.raw_dlr_done_date > (before.dlr ?? "")) {
      current = { ...before, dlr: item.raw_dlr_done_date };
    }
    return stands ? (before?.status ?? "none") : null;
  });
}

function erase(sid) {
  const status = h("span", { "aria-live": "polite" });
  return h("div", { class: "row erase" },
    h("button", {
      type: "button", class: "danger",
      onclick: async (event) => {
        if (!confirm(`Erase ${sid} and every event of it? This cannot be undone.`)) return;
        event.target.disabled = true;
        try {
          await apiDelete(`messages/${sid}`);
          location.hash = "#/messages";
        } catch (error) {
          status.replaceChildren(h("span", { class: "alert", role: "alert" }, error.message));
          event.target.disabled = false;
        }
      },
    }, "Erase this message"),
    status);
}

function event(item, index, stood) {
  const params = Object.entries(item.params).sort(([a], [b]) => (a < b ? -1 : 1));
  const done = dlrDoneDate(item.raw_dlr_done_date);
  return h("li", {
    class: `card event${stood === null ? "" : " unchanged"}`, "data-status": item.status,
    "data-changed": String(stood === null),
  },
    h("div", { class: "event-head" },
      statusBadge(item.status),
      time(item.received_at),
      h("span", { class: `source source-${item.source}` }, `from ${item.source}`)),
    stood === null ? null : h("p", { class: "note" }, stood === "none"
      ? "Did not change the status: not a status statushook ranks."
      : `Did not change the status: ${stood} stands (it arrived after a status of higher or equal rank).`),
    item.error_code !== null ? h("p", {}, "Error ", errorLabel(item.error_code, item.error_description)) : null,
    item.raw_dlr_done_date ? h("p", { class: "muted dlr" }, "Carrier's done date: ",
      done ? time(done) : item.raw_dlr_done_date,
      ` (RawDlrDoneDate ${item.raw_dlr_done_date}, read as UTC)`) : null,
    h("details", { open: index < 3 },
      h("summary", {}, `Parameters (${params.length})`),
      h("table", { class: "params" },
        h("caption", { class: "visually-hidden" }, `Parameters of event ${index + 1}`),
        h("tbody", {}, params.map(([name, value]) => h("tr", {},
          h("th", { scope: "row" }, name),
          h("td", {}, Array.isArray(value) ? value.join(", ") : value)))))));
}
