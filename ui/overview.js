// The overview: messages, delivery and failure rates over time (GET /v1/stats/series), and
// for the same window the counts by status, the top error codes (GET /v1/stats) and the
// largest senders, messaging services or destination countries (GET /v1/stats/breakdown).

import {
  alertBox, api, errorLabel, exportControls, failureRate, format, formatCount, formatRate, fromInput, h,
  show, statusBadge, toInput, zoneName,
} from "./lib.js";
import { failureChart, seriesChart } from "./chart.js";

const HOUR = 3600e3;
const DAY = 24 * HOUR;

/** Preset windows: how far back from now, and the bucket to draw them with. */
const RANGES = {
  "24h": { label: "Last 24 hours", back: DAY, bucket: "hour" },
  "7d": { label: "Last 7 days", back: 7 * DAY, bucket: "hour" },
  "30d": { label: "Last 30 days", back: 30 * DAY, bucket: "day" },
  "90d": { label: "Last 90 days", back: 90 * DAY, bucket: "day" },
  "365d": { label: "Last 365 days", back: 365 * DAY, bucket: "day" },
};

const BREAKDOWNS = {
  from: "sender (From)",
  messaging_service: "messaging service",
  country: "destination country",
};

const regions = new Intl.DisplayNames(["en"], { type: "region" });

export async function renderOverview(params, { quiet, current }) {
  document.title = "Overview · statushook";
  const rangeKey = params.has("since") ? "custom" : (params.get("range") ?? "24h");
  const preset = RANGES[rangeKey];
  const by = BREAKDOWNS[params.get("by")] ? params.get("by") : "from";
  const query = new URLSearchParams();
  if (preset) {
    query.set("since", new Date(Date.now() - preset.back).toISOString());
    query.set("bucket", preset.bucket);
  } else {
    for (const name of ["since", "until", "bucket"]) {
      if (params.get(name)) query.set(name, params.get(name));
    }
  }
  if (!quiet) show(h("h1", {}, "Overview"), picker(rangeKey, params), h("p", { class: "muted" }, "Loading…"));
  const series = await api("stats/series", query);
  if (!current()) return;
  // The totals of exactly the window the series counted (whole buckets).
  const window = new URLSearchParams({ since: series.since, until: series.until });
  // The breakdown reads messages, not counters: it fills its section in when it comes,
  // and the rest of the page does not wait for it.
  const breakdown = api("stats/breakdown", new URLSearchParams({ ...Object.fromEntries(window), by }));
  breakdown.catch(() => {});
  const stats = await api("stats", window);
  if (!current()) return;

  // Day buckets are UTC days whatever the zone shown; hours are shown in the chosen zone.
  const byDay = series.bucket === "day";
  const zoned = (options) => (date) => byDay
    ? date.toLocaleDateString("en-GB", { ...options, timeZone: "UTC" })
    : format(date, options);
  const label = zoned(byDay ? { weekday: "short", month: "short", day: "numeric" }
    : { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
  const points = series.series.map((bucket) => ({
    start: new Date(bucket.start), total: bucket.total, rate: bucket.delivery_rate,
    failure: failureRate(bucket),
  }));
  const hours = points.length > 1 && points.length / 24 > 4;
  const tick = zoned(byDay ? { month: "short", day: "numeric" }
    : hours ? { weekday: "short", day: "numeric", month: "short" }
      : { hour: "2-digit", minute: "2-digit" });
  const zone = byDay ? "UTC days" : zoneName();
  const busiest = points.reduce((best, p) => (p.total > (best?.total ?? -1) ? p : best), null);
  const summary = `${points.length} ${series.bucket} buckets, ${formatCount(stats.total)} messages` +
    (busiest && busiest.total > 0 ? `, most in ${label(busiest.start)} (${busiest.total})` : "");
  const worst = points.reduce((best, p) => ((p.failure ?? -1) > (best?.failure ?? -1) ? p : best), null);
  const failureSummary = `Failure rate per ${series.bucket}` + (worst?.failure !== null && worst
    ? `, highest ${formatRate(worst.failure)} in ${label(worst.start)}` : ", no message concluded");
  const failures = points.map((p) => ({ start: p.start, rate: p.failure }));

  show(
    h("h1", {}, "Overview"),
    picker(rangeKey, params),
    h("p", { class: "muted window" }, "From ", windowTime(series.since), " to ",
      windowTime(series.until), ` (whole ${byDay ? "UTC days" : "hours"})`),
    exportControls(window),
    h("section", { class: "cards", "aria-label": "Totals" },
      card("Messages", formatCount(stats.total), "total"),
      card("Delivery rate", formatRate(stats.delivery_rate), "delivery-rate"),
      card("Failure rate", formatRate(failureRate(stats)), "failure-rate"),
      card("Failed", formatCount(stats.by_status.failed), "failed"),
      card("Undelivered", formatCount(stats.by_status.undelivered), "undelivered")),
    h("section", { class: "card", "aria-labelledby": "chart-title" },
      h("h2", { id: "chart-title" }, `Messages and delivery rate per ${series.bucket} (${zone})`),
      h("p", { class: "legend" },
        h("span", { class: "key bar-key" }), "messages (left axis) ",
        h("span", { class: "key rate-key" }), "delivery rate (right axis)"),
      seriesChart(points, { bucket: series.bucket, label, tick, summary })),
    h("section", { class: "card", "aria-labelledby": "failure-title" },
      h("h2", { id: "failure-title" }, `Failure rate per ${series.bucket} (${zone})`),
      h("p", { class: "legend" }, h("span", { class: "key failure-key" }),
        "(failed + undelivered) / messages that reached delivered, read, failed or undelivered"),
      failureChart(failures, { bucket: series.bucket, tick, summary: failureSummary }),
      seriesTable(series, label)),
    h("div", { class: "columns" },
      statusTable(stats, window),
      errorTable(stats, window)),
    breakdownSection(breakdown, by, params, window),
  );
  document.body.dataset.view = "overview";
  performance.mark("statushook:ready");
}

function windowTime(iso) {
  return h("time", { datetime: iso, title: iso }, `${format(new Date(iso), {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  })} ${zoneName()}`);
}

function picker(rangeKey, params) {
  const select = h("select", { id: "range", name: "range" },
    Object.entries(RANGES).map(([key, range]) =>
      h("option", { value: key, selected: key === rangeKey }, range.label)),
    h("option", { value: "custom", selected: rangeKey === "custom" }, "Custom…"));
  const custom = h("fieldset", { class: "custom", hidden: rangeKey !== "custom" },
    h("legend", {}, `Custom window (${zoneName()})`),
    h("label", { for: "since" }, "From"),
    h("input", { id: "since", name: "since", type: "datetime-local",
      value: toInput(params.get("since")) }),
    h("label", { for: "until" }, "Until"),
    h("input", { id: "until", name: "until", type: "datetime-local",
      value: toInput(params.get("until")) }),
    h("label", { for: "bucket" }, "Per"),
    h("select", { id: "bucket", name: "bucket" },
      ["hour", "day"].map((b) => h("option", { value: b, selected: params.get("bucket") === b }, b))),
    h("button", { type: "submit" }, "Show"));
  select.addEventListener("change", () => {
    if (select.value === "custom") {
      custom.hidden = false;
      custom.querySelector("input").focus();
    } else {
      location.hash = `#/?range=${select.value}`;
    }
  });
  return h("form", {
    class: "picker",
    onsubmit: (event) => {
      event.preventDefault();
      const form = new FormData(event.target);
      const query = new URLSearchParams();
      for (const name of ["since", "until"]) {
        const date = fromInput(form.get(name));
        if (date) query.set(name, date.toISOString());
      }
      query.set("bucket", form.get("bucket"));
      if (!query.has("since")) query.set("since", new Date(Date.now() - DAY).toISOString());
      location.hash = `#/?${query}`;
    },
  }, h("label", { for: "range" }, "Time range"), select, custom);
}

function card(title, value, key) {
  return h("div", { class: "card stat", "data-stat": key },
    h("h2", {}, title), h("p", { class: "value" }, value));
}

function seriesTable(series, label) {
  return h("details", {},
    h("summary", {}, "Show these numbers as a table"),
    h("div", { class: "scroll" }, h("table", { id: "series-table" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, series.bucket === "day" ? "Day (UTC)" : `Hour (${zoneName()})`),
        h("th", { scope: "col", class: "num" }, "Messages"),
        h("th", { scope: "col", class: "num" }, "Delivery rate"),
        h("th", { scope: "col", class: "num" }, "Failure rate"))),
      h("tbody", {}, series.series.map((bucket) => h("tr", {},
        h("td", {}, h("time", { datetime: bucket.start, title: bucket.start },
          label(new Date(bucket.start)))),
        h("td", { class: "num" }, formatCount(bucket.total)),
        h("td", { class: "num" }, formatRate(bucket.delivery_rate)),
        h("td", { class: "num" }, formatRate(failureRate(bucket)))))))));
}

function statusTable(stats, window) {
  const rows = Object.entries(stats.by_status).sort((a, b) => b[1] - a[1]);
  return h("section", { class: "card", "aria-labelledby": "status-title" },
    h("h2", { id: "status-title" }, "Messages by status"),
    rows.length === 0 ? h("p", { class: "muted" }, "No messages in this window.") :
      h("table", { id: "by-status" },
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Status"),
          h("th", { scope: "col", class: "num" }, "Messages"),
          h("th", { scope: "col", class: "num" }, "Share"))),
        h("tbody", {}, rows.map(([status, count]) => h("tr", { "data-status": status },
          h("th", { scope: "row" }, h("a", {
            href: `#/messages?${new URLSearchParams({ status, ...Object.fromEntries(window) })}`,
            "aria-label": `${status}: list these messages`,
          }, statusBadge(status))),
          h("td", { class: "num" }, formatCount(count)),
          h("td", { class: "num" }, `${((count / stats.total) * 100).toFixed(1)} %`))))));
}

function errorTable(stats, window) {
  const rows = Object.entries(stats.by_error_code).sort((a, b) => b[1] - a[1]).slice(0, 10);
  return h("section", { class: "card", "aria-labelledby": "errors-title" },
    h("h2", { id: "errors-title" }, "Top error codes"),
    rows.length === 0 ? h("p", { class: "muted" }, "No errors in this window.") :
      h("table", { id: "by-error" },
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Error (Twilio's description)"),
          h("th", { scope: "col", class: "num" }, "Messages"),
          h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "List")))),
        h("tbody", {}, rows.map(([code, count]) => h("tr", { "data-error-code": code },
          h("td", {}, errorLabel(code, stats.error_descriptions?.[code] ?? "(no description known)")),
          h("td", { class: "num" }, formatCount(count)),
          h("td", {}, h("a", {
            href: `#/messages?${new URLSearchParams({ error_code: code, ...Object.fromEntries(window) })}`,
          }, "List")))))));
}

/** A group's name: the sender (linked to its messages), the service, or the country. */
function groupName(by, key, window) {
  if (key === null) {
    return h("span", { class: "muted" },
      by === "country" ? "no country (not a phone number)" : by === "from" ? "no sender" : "no messaging service");
  }
  if (by === "from") {
    return h("a", { href: `#/messages?${new URLSearchParams({ from: key, ...Object.fromEntries(window) })}` }, key);
  }
  if (by === "country") return `${regions.of(key) ?? key} (${key})`;
  return h("span", { class: "sid" }, key);
}

function breakdownSection(pending, by, params, window) {
  const select = h("select", { id: "breakdown-by", name: "by" },
    Object.entries(BREAKDOWNS).map(([value, text]) => h("option", { value, selected: value === by }, text)));
  select.addEventListener("change", () => {
    const query = new URLSearchParams(params);
    query.set("by", select.value);
    location.hash = `#/?${query}`;
  });
  const row = (group, name, attributes) => h("tr", attributes,
    h("th", { scope: "row" }, name),
    h("td", { class: "num" }, formatCount(group.total)),
    h("td", { class: "num" }, formatCount((group.by_status.failed ?? 0) + (group.by_status.undelivered ?? 0))),
    h("td", { class: "num" }, formatRate(failureRate(group))),
    h("td", { class: "num" }, formatRate(group.delivery_rate)));
  const body = h("div", { "aria-busy": "true" }, h("p", { class: "muted" }, "Loading…"));
  pending.finally(() => body.removeAttribute("aria-busy")).catch(() => {});
  pending.then((breakdown) => body.replaceChildren(...[
    breakdown.complete ? null : h("p", { class: "muted" },
      `Counted the newest ${formatCount(breakdown.scanned)} messages of this window; it holds more.`),
    breakdown.groups.length === 0 ? h("p", { class: "muted" }, "No messages in this window.") :
      h("div", { class: "scroll" }, h("table", { id: "breakdown", "data-by": breakdown.by },
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, BREAKDOWNS[by][0].toUpperCase() + BREAKDOWNS[by].slice(1)),
          h("th", { scope: "col", class: "num" }, "Messages"),
          h("th", { scope: "col", class: "num" }, "Failed or undelivered"),
          h("th", { scope: "col", class: "num" }, "Failure rate"),
          h("th", { scope: "col", class: "num" }, "Delivery rate"))),
        h("tbody", {},
          breakdown.groups.map((group) =>
            row(group, groupName(by, group.key, window), { "data-key": group.key ?? "" })),
          breakdown.others ? row(breakdown.others,
            `${formatCount(breakdown.others.groups)} others`, { "data-others": "" }) : null))),
  ].filter(Boolean)), (error) => body.replaceChildren(alertBox(error.message)));
  return h("section", { class: "card", "aria-labelledby": "breakdown-title" },
    h("h2", { id: "breakdown-title" }, "Largest groups"),
    h("div", { class: "row" }, h("label", { for: "breakdown-by" }, "By"), select),
    body);
}
