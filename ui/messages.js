// The message list (GET /v1/messages with every filter it takes, paged by its cursor,
// searchable by SID or phone number) and the message page (GET /v1/messages/{sid}: the
// timeline of events with every parameter of each).

import {
  api, errorLabel, formatCount, h, show, statusBadge, STATUSES, time,
} from "./lib.js";

const SID = /^(SM|MM)[0-9a-fA-F]{32}$/;
const FILTERS = ["status", "error_code", "to", "from", "since", "until", "limit"];

/** Cursors of the pages before the current one, so "Previous page" can go back. */
let previous = [];

export async function renderMessages(params) {
  document.title = "Messages · statushook";
  const query = new URLSearchParams();
  for (const name of FILTERS) for (const value of params.getAll(name)) {
    if (value !== "") query.append(name, value);
  }
  if (params.get("cursor")) query.set("cursor", params.get("cursor"));
  else previous = [];
  show(h("h1", {}, "Messages"), filters(params), h("p", { class: "muted" }, "Loading…"));
  const page = await api("messages", query);
  const filtered = [...query.keys()].some((name) => name !== "cursor" && name !== "limit");
  show(
    h("h1", {}, "Messages"),
    filters(params),
    h("p", { class: "muted", "aria-live": "polite", id: "list-summary" },
      `${formatCount(page.messages.length)} message${page.messages.length === 1 ? "" : "s"}` +
      ` on this page${filtered ? ", filtered" : ""}, newest update first.`),
    page.messages.length === 0 ? h("p", {}, "No message matches these filters.") : list(page.messages),
    pager(params, page.next_cursor),
  );
  document.body.dataset.view = "messages";
}

function filters(params) {
  const chosen = new Set(params.getAll("status"));
  const field = (name, label, attributes = {}) => [
    h("label", { for: `f-${name}` }, label),
    h("input", { id: `f-${name}`, name, value: params.get(name) ?? "", ...attributes }),
  ];
  const search = h("form", { class: "search", role: "search", onsubmit: searchSubmit },
    h("label", { for: "q" }, "Find a message by SID or phone number"),
    h("div", { class: "row" },
      h("input", { id: "q", name: "q", type: "search", placeholder: "SM… or +1…",
        autocomplete: "off", spellcheck: "false" }),
      h("select", { name: "as", "aria-label": "The number is the message's" },
        h("option", { value: "to" }, "as recipient (to)"),
        h("option", { value: "from" }, "as sender (from)")),
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
      field("since", "Updated since (RFC 3339)", { placeholder: "2026-11-26T09:00:00Z" }),
      field("until", "Updated before (RFC 3339)", { placeholder: "2026-11-27T09:00:00Z" }),
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
    if (String(value).trim() !== "") query.append(name, String(value).trim());
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
    location.hash = `#/messages?${new URLSearchParams({ [form.get("as")]: number })}`;
  } else {
    hint.textContent = "Enter a message SID (SM or MM and 32 hex digits) or a phone number in E.164 form (+15005550006).";
  }
}

function list(messages) {
  return h("div", { class: "scroll" }, h("table", { id: "messages", class: "messages" },
    h("caption", { class: "visually-hidden" }, "Messages, newest update first"),
    h("thead", {}, h("tr", {},
      ["Message", "Status", "To", "From", "Error", "Updated"].map((title) =>
        h("th", { scope: "col" }, title)))),
    h("tbody", {}, messages.map((message) => h("tr", { "data-sid": message.sid },
      h("td", { "data-label": "Message" },
        h("a", { href: `#/messages/${message.sid}`, class: "sid" }, message.sid)),
      h("td", { "data-label": "Status" }, statusBadge(message.status)),
      h("td", { "data-label": "To" }, message.to ?? "–"),
      h("td", { "data-label": "From" }, message.from ?? "–"),
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

export async function renderMessage(sid) {
  document.title = `${sid} · statushook`;
  show(h("h1", { class: "sid" }, sid), h("p", { class: "muted" }, "Loading…"));
  const message = await api(`messages/${sid}`);
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
  show(
    h("p", {}, h("a", { href: "#/messages" }, "← All messages")),
    h("h1", { class: "sid" }, message.sid),
    h("dl", { class: "card facts" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
    h("h2", {}, `Timeline (${message.events.length} event${message.events.length === 1 ? "" : "s"}, in arrival order)`),
    h("ol", { class: "timeline", id: "timeline" }, message.events.map(event)),
  );
  document.body.dataset.view = "message";
}

function event(item, index) {
  const params = Object.entries(item.params).sort(([a], [b]) => (a < b ? -1 : 1));
  return h("li", { class: "card event", "data-status": item.status },
    h("div", { class: "event-head" },
      statusBadge(item.status),
      time(item.received_at),
      h("span", { class: `source source-${item.source}` }, `from ${item.source}`)),
    item.error_code !== null ? h("p", {}, "Error ", errorLabel(item.error_code, item.error_description)) : null,
    item.raw_dlr_done_date ? h("p", { class: "muted" }, `Carrier done date (RawDlrDoneDate): ${item.raw_dlr_done_date}`) : null,
    h("details", { open: index < 3 },
      h("summary", {}, `Parameters (${params.length})`),
      h("table", { class: "params" },
        h("caption", { class: "visually-hidden" }, `Parameters of event ${index + 1}`),
        h("tbody", {}, params.map(([name, value]) => h("tr", {},
          h("th", { scope: "row" }, name),
          h("td", {}, Array.isArray(value) ? value.join(", ") : value)))))));
}
