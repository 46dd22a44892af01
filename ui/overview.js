// The overview: messages and delivery rate over time (GET /v1/stats/series), and for the
// same window the counts by status and the top error codes (GET /v1/stats).

import { api, errorLabel, formatCount, formatRate, h, show, statusBadge } from "./lib.js";
import { seriesChart } from "./chart.js";

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

export async function renderOverview(params) {
  document.title = "Overview · statushook";
  const rangeKey = params.has("since") ? "custom" : (params.get("range") ?? "24h");
  const preset = RANGES[rangeKey];
  const query = new URLSearchParams();
  if (preset) {
    query.set("since", new Date(Date.now() - preset.back).toISOString());
    query.set("bucket", preset.bucket);
  } else {
    for (const name of ["since", "until", "bucket"]) {
      if (params.get(name)) query.set(name, params.get(name));
    }
  }
  show(h("h1", {}, "Overview"), picker(rangeKey, params), h("p", { class: "muted" }, "Loading…"));
  const series = await api("stats/series", query);
  // The totals of exactly the window the series counted (whole buckets).
  const window = new URLSearchParams({ since: series.since, until: series.until });
  const stats = await api("stats", window);

  const byDay = series.bucket === "day";
  const label = (date) => byDay
    ? date.toLocaleDateString("en-GB", { month: "short", day: "numeric" })
    : date.toLocaleString("en-GB", { weekday: "short", hour: "2-digit", minute: "2-digit" });
  const points = series.series.map((bucket) => ({
    start: new Date(bucket.start), total: bucket.total, rate: bucket.delivery_rate,
  }));
  const busiest = points.reduce((best, p) => (p.total > (best?.total ?? -1) ? p : best), null);
  const summary = `${points.length} ${series.bucket} buckets, ${formatCount(stats.total)} messages` +
    (busiest && busiest.total > 0 ? `, most in ${label(busiest.start)} (${busiest.total})` : "");

  show(
    h("h1", {}, "Overview"),
    picker(rangeKey, params),
    h("p", { class: "muted window" }, "From ", h("time", { datetime: series.since }, series.since),
      " to ", h("time", { datetime: series.until }, series.until),
      ` (UTC, whole ${series.bucket}s)`),
    h("section", { class: "cards", "aria-label": "Totals" },
      card("Messages", formatCount(stats.total), "total"),
      card("Delivery rate", formatRate(stats.delivery_rate), "delivery-rate"),
      card("Failed", formatCount(stats.by_status.failed), "failed"),
      card("Undelivered", formatCount(stats.by_status.undelivered), "undelivered")),
    h("section", { class: "card", "aria-labelledby": "chart-title" },
      h("h2", { id: "chart-title" }, `Messages and delivery rate per ${series.bucket}`),
      h("p", { class: "legend" },
        h("span", { class: "key bar-key" }), "messages (left axis) ",
        h("span", { class: "key rate-key" }), "delivery rate (right axis)"),
      seriesChart(points, label, summary),
      seriesTable(series, label)),
    h("div", { class: "columns" },
      statusTable(stats, window),
      errorTable(stats, window)),
  );
  document.body.dataset.view = "overview";
  performance.mark("statushook:ready");
}

function picker(rangeKey, params) {
  const select = h("select", { id: "range", name: "range" },
    Object.entries(RANGES).map(([key, range]) =>
      h("option", { value: key, selected: key === rangeKey }, range.label)),
    h("option", { value: "custom", selected: rangeKey === "custom" }, "Custom…"));
  const custom = h("fieldset", { class: "custom", hidden: rangeKey !== "custom" },
    h("legend", {}, "Custom window (your local time)"),
    h("label", { for: "since" }, "From"),
    h("input", { id: "since", name: "since", type: "datetime-local",
      value: localInput(params.get("since")) }),
    h("label", { for: "until" }, "Until"),
    h("input", { id: "until", name: "until", type: "datetime-local",
      value: localInput(params.get("until")) }),
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
        if (form.get(name)) query.set(name, new Date(form.get(name)).toISOString());
      }
      query.set("bucket", form.get("bucket"));
      if (!query.has("since")) query.set("since", new Date(Date.now() - DAY).toISOString());
      location.hash = `#/?${query}`;
    },
  }, h("label", { for: "range" }, "Time range"), select, custom);
}

/** An RFC 3339 time as the value of a datetime-local input, in local time. */
function localInput(iso) {
  if (!iso) return null;
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return null;
  return new Date(date.getTime() - date.getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
}

function card(title, value, key) {
  return h("div", { class: "card stat", "data-stat": key },
    h("h2", {}, title), h("p", { class: "value" }, value));
}

function seriesTable(series, label) {
  return h("details", {},
    h("summary", {}, "Show these numbers as a table"),
    h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, series.bucket === "day" ? "Day" : "Hour"),
        h("th", { scope: "col", class: "num" }, "Messages"),
        h("th", { scope: "col", class: "num" }, "Delivery rate"))),
      h("tbody", {}, series.series.map((bucket) => h("tr", {},
        h("td", {}, h("time", { datetime: bucket.start, title: bucket.start },
          label(new Date(bucket.start)))),
        h("td", { class: "num" }, formatCount(bucket.total)),
        h("td", { class: "num" }, formatRate(bucket.delivery_rate))))))));
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
