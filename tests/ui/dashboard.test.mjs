// The dashboard end to end: the real binary, signed callbacks, headless Chromium.
//
// Every number the pages show is checked against the API's own answer and against the
// callbacks posted here (the model). SCREENSHOTS_DIR, when set, receives a screenshot of
// each page (scripts/test-ui --screenshots writes docs/screenshots/).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  API_TOKEN, apiGet, apiText, callback, launchChromium, postCallback, startStatushook,
} from "./harness.mjs";

/** (how many, statuses in arrival order, error code of the last, recipient) */
const MIX = [
  [5, ["queued", "sent", "delivered"], undefined],
  [2, ["queued", "sent", "delivered", "read"], undefined],
  [2, ["queued", "failed"], 30008],
  [1, ["queued", "failed"], 21610],
  [3, ["queued", "sent", "undelivered"], 30003],
  [1, ["queued", "sent"], undefined],
  [1, ["queued"], undefined],
];

const SERVICE = "MG0123456789abcdef0123456789abcdef";
/** Messages of other senders and countries, and histories out of order. */
const EXTRA = [
  // A late `queued`: it arrives after `sent` and does not change the status.
  { statuses: ["sent", "queued"], final: "sent", to: "+447400123456", from: "+15005550007" },
  // The carrier's done date, YYMMDDhhmm in UTC.
  { statuses: ["queued", "sent", "delivered"], final: "delivered", to: "+4915112345678",
    from: "+15005550007", service: SERVICE, rawDlrDoneDate: "2611260900" },
  { statuses: ["queued", "sent", "undelivered"], final: "undelivered", errorCode: 30003,
    to: "+4915112345679", from: "+15005550007", service: SERVICE },
];

const screenshots = process.env.SCREENSHOTS_DIR;
let app;
let browser;
/** Every message posted: sid → {statuses, final, errorCode, to, params of each event} */
const model = new Map();
/** Requests the pages made that did not go to statushook (there must be none). */
const offsite = [];
/** Console errors and CSP violations of every page (there must be none). */
const consoleErrors = [];

function sid(n) {
  return `SM${n.toString(16).padStart(32, "0")}`;
}

/** Posts a message's callbacks and adds it to the model. */
async function post(messageSid, { statuses, final, errorCode, to, from, service, rawDlrDoneDate }) {
  const events = [];
  for (const [index, status] of statuses.entries()) {
    const last = status === final && index === statuses.lastIndexOf(final);
    const params = callback(messageSid, status, {
      to, from, service,
      errorCode: last ? errorCode : undefined,
      rawDlrDoneDate: last ? rawDlrDoneDate : undefined,
    });
    await postCallback(app.base, params);
    events.push({ status, params });
  }
  model.set(messageSid, {
    final, errorCode: errorCode ?? null, to, from, service: service ?? null, events, rawDlrDoneDate,
  });
}

before(async () => {
  app = await startStatushook();
  let n = 0xabc000;
  for (const [count, statuses, errorCode] of MIX) {
    for (let i = 0; i < count; i += 1) {
      n += 1;
      const messageSid = sid(n);
      const to = `+1555000${String(n % 10000).padStart(4, "0")}`;
      const events = [];
      for (const [index, status] of statuses.entries()) {
        const last = index === statuses.length - 1;
        const params = callback(messageSid, status, {
          to, errorCode: last ? errorCode : undefined,
        });
        await postCallback(app.base, params);
        events.push({ status, params });
      }
      model.set(messageSid, {
        final: statuses.at(-1), errorCode: errorCode ?? null, to, from: "+15005550006",
        service: null, events,
      });
    }
  }
  for (const extra of EXTRA) {
    n += 1;
    await post(sid(n), extra);
  }
  browser = await launchChromium();
  if (screenshots) mkdirSync(screenshots, { recursive: true });
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

/** A fresh browser tab, watched for off-site requests and console errors. */
async function newPage(viewport = { width: 1280, height: 900 }, { timezoneId, base } = {}) {
  const context = await browser.newContext({ viewport, timezoneId, acceptDownloads: true });
  const page = await context.newPage();
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(base ?? app.base) && !url.startsWith("data:") && !url.startsWith("blob:")) {
      offsite.push(url);
    }
  });
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(`${message.text()} ${message.location().url}`);
  });
  page.on("pageerror", (error) => consoleErrors.push(error.message));
  return page;
}

async function signIn(page) {
  await page.goto(`${app.base}/ui/`);
  // The token field has the focus: a keyboard user types and presses Enter.
  await page.keyboard.type(API_TOKEN);
  await page.keyboard.press("Enter");
  await page.waitForSelector('body[data-view="overview"]');
}

async function shoot(page, name) {
  if (screenshots) await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
}

function expectedCounts() {
  const byStatus = {};
  const byError = {};
  for (const message of model.values()) {
    byStatus[message.final] = (byStatus[message.final] ?? 0) + 1;
    if (message.errorCode !== null) byError[message.errorCode] = (byError[message.errorCode] ?? 0) + 1;
  }
  return { byStatus, byError };
}

describe("the dashboard", () => {
  test("a wrong token is refused with a clear message and nothing is kept", async () => {
    const page = await newPage();
    await page.goto(`${app.base}/ui/`);
    await page.getByLabel("API token").fill("not-the-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    const alert = page.getByRole("alert");
    await alert.waitFor();
    assert.match(await alert.textContent(), /not accepted \(401\)/);
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    await shoot(page, "sign-in-refused");
    await page.context().close();
  });

  test("the overview shows the API's numbers, which are the callbacks posted", async () => {
    const page = await newPage();
    await signIn(page);
    // The window the page counted, as the API echoed it.
    const [since, until] = await page.locator(".window time").evaluateAll(
      (times) => times.map((t) => t.getAttribute("datetime")));
    const stats = await apiGet(app.base, `stats?since=${since}&until=${until}`);
    const series = await apiGet(app.base, `stats/series?since=${since}&until=${until}&bucket=hour`);
    const { byStatus, byError } = expectedCounts();

    // The API agrees with the model...
    assert.equal(stats.total, model.size);
    assert.deepEqual(stats.by_status, byStatus);
    assert.deepEqual(Object.fromEntries(Object.entries(stats.by_error_code)), Object.fromEntries(
      Object.entries(byError).map(([code, count]) => [String(code), count])));
    const delivered = byStatus.delivered + byStatus.read;
    const rate = delivered / (delivered + byStatus.failed + byStatus.undelivered);
    assert.equal(stats.delivery_rate, rate);
    assert.equal(series.series.reduce((sum, bucket) => sum + bucket.total, 0), model.size);

    // ...and the page shows the API's numbers.
    const card = (key) => page.locator(`[data-stat="${key}"] .value`).textContent();
    assert.equal(await card("total"), String(stats.total));
    assert.equal(await card("delivery-rate"), `${(stats.delivery_rate * 100).toFixed(1)} %`);
    assert.equal(await card("failed"), String(stats.by_status.failed));
    assert.equal(await card("undelivered"), String(stats.by_status.undelivered));
    const statusRows = await page.locator("#by-status tbody tr").evaluateAll((rows) =>
      rows.map((row) => [row.dataset.status, row.querySelector("td.num").textContent]));
    assert.deepEqual(Object.fromEntries(statusRows),
      Object.fromEntries(Object.entries(stats.by_status).map(([s, c]) => [s, String(c)])));
    const errorRows = await page.locator("#by-error tbody tr").evaluateAll((rows) =>
      rows.map((row) => ({
        code: row.dataset.errorCode,
        count: row.querySelector("td.num").textContent,
        link: row.querySelector("a[target=_blank]").href,
        text: row.querySelector("td").textContent,
      })));
    assert.deepEqual(errorRows.map((row) => row.code), ["30003", "30008", "21610"],
      "error codes, most frequent first");
    for (const row of errorRows) {
      assert.equal(row.count, String(stats.by_error_code[row.code]));
      assert.equal(row.link, `https://www.twilio.com/docs/api/errors/${row.code}`);
      assert.ok(row.text.includes(stats.error_descriptions[row.code]), row.text);
    }
    assert.ok(errorRows[0].text.includes("Unreachable destination handset"));
    // One bar per bucket of the series, and the table behind the chart sums to the total.
    assert.equal(await page.locator("svg.chart rect.bar").count(), series.series.length);
    const tableTotal = await page.locator("details table tbody tr td.num:nth-child(2)")
      .evaluateAll((cells) => cells.reduce((sum, cell) => sum + Number(cell.textContent.replace(/,/g, "")), 0));
    assert.equal(tableTotal, stats.total);
    await shoot(page, "overview");

    // The range picker asks for day buckets over 30 days.
    await page.getByLabel("Time range").selectOption("30d");
    await page.waitForFunction(() => document.querySelector("#chart-title")?.textContent.includes("per day"));
    assert.equal(await page.locator("svg.chart rect.bar").count(), 31);
    assert.equal(await card("total"), String(stats.total));
    await page.context().close();
  });

  test("the list filtered to failed shows exactly the failed messages", async () => {
    const page = await newPage();
    await signIn(page);
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Messages" }).click();
    await page.waitForSelector('body[data-view="messages"] #messages');
    await page.getByRole("checkbox", { name: "failed" }).check();
    await page.getByRole("button", { name: "Apply filters" }).click();
    await page.waitForFunction(() => location.hash.includes("status=failed")
      && document.querySelectorAll("#messages tbody tr").length > 0
      && [...document.querySelectorAll("#messages tbody tr")].every((row) =>
        row.querySelector(".badge").textContent === "failed"));
    const shown = await page.locator("#messages tbody tr").evaluateAll((rows) =>
      rows.map((row) => row.dataset.sid).sort());
    const failed = [...model].filter(([, m]) => m.final === "failed").map(([s]) => s).sort();
    assert.deepEqual(shown, failed);
    const listed = await apiGet(app.base, "messages?status=failed");
    assert.deepEqual(listed.messages.map((m) => m.sid).sort(), failed);
    // The error column carries Twilio's description.
    const firstError = await page.locator("#messages tbody tr .error-label").first().textContent();
    assert.match(firstError, /^(30008 Unknown error|21610 Attempt to send to unsubscribed recipient)$/);
    await shoot(page, "messages-failed");
    await page.context().close();
  });

  test("paging with the cursor visits every message once", async () => {
    const page = await newPage();
    await signIn(page);
    await page.goto(`${app.base}/ui/#/messages?limit=25`);
    await page.waitForSelector('body[data-view="messages"] #messages');
    // 25 is the smallest page the form offers; ask the API's own cursor for pages of 4.
    await page.goto(`${app.base}/ui/#/messages?limit=4`);
    const seen = [];
    for (;;) {
      await page.waitForFunction(() => document.querySelectorAll("#messages tbody tr").length > 0
        && document.body.dataset.view === "messages");
      const rows = await page.locator("#messages tbody tr").evaluateAll((r) => r.map((row) => row.dataset.sid));
      seen.push(...rows);
      const next = page.getByRole("button", { name: "Next page" });
      if (await next.count() === 0) break;
      const before = rows[0];
      await next.click();
      await page.waitForFunction((first) =>
        document.querySelector("#messages tbody tr")?.dataset.sid !== first, before);
    }
    assert.equal(seen.length, model.size);
    assert.deepEqual([...new Set(seen)].sort(), [...model.keys()].sort());
    await page.context().close();
  });

  test("a message page shows its timeline with every parameter of each event", async () => {
    const page = await newPage();
    await signIn(page);
    const [messageSid, expected] = [...model].find(([, m]) => m.errorCode === 30003);
    await page.goto(`${app.base}/ui/#/messages`);
    await page.waitForSelector('body[data-view="messages"] #messages');
    await page.getByRole("searchbox").fill(messageSid);
    await page.getByRole("button", { name: "Find" }).click();
    await page.waitForSelector('body[data-view="message"] #timeline');
    const message = await apiGet(app.base, `messages/${messageSid}`);
    assert.equal(message.error_description, "Unreachable destination handset");
    const events = await page.locator("#timeline > li").evaluateAll((items) => items.map((item) => ({
      status: item.dataset.status,
      source: item.querySelector(".source").textContent,
      time: item.querySelector("time").getAttribute("datetime"),
      params: Object.fromEntries([...item.querySelectorAll("table.params tr")].map((row) =>
        [row.querySelector("th").textContent, row.querySelector("td").textContent])),
    })));
    assert.deepEqual(events.map((e) => e.status), expected.events.map((e) => e.status));
    assert.deepEqual(events.map((e) => e.time), message.events.map((e) => e.received_at));
    for (const [index, event] of events.entries()) {
      assert.equal(event.source, "from callback");
      assert.deepEqual(event.params, Object.fromEntries(expected.events[index].params));
    }
    const facts = await page.locator("dl.facts").textContent();
    assert.ok(facts.includes(expected.to));
    assert.ok(facts.includes("30003 Unreachable destination handset"));
    await shoot(page, "message");
    await page.context().close();
  });

  test("a number is searched as recipient and as sender, and no match says so", async () => {
    const page = await newPage();
    await signIn(page);
    const search = async (number) => {
      await page.goto(`${app.base}/ui/#/messages`);
      await page.waitForSelector('body[data-view="messages"] #messages');
      await page.getByRole("searchbox").fill(number);
      await page.getByRole("button", { name: "Find" }).click();
      await page.waitForFunction((n) => document.body.dataset.view === "messages"
        && new URLSearchParams(location.hash.split("?")[1]).get("number") === n
        && document.querySelector("#list-summary")?.textContent.includes(n), number);
      return page.locator("#messages tbody tr").evaluateAll((rows) => rows.map((row) => row.dataset.sid).sort());
    };
    const having = (field, number) => [...model].filter(([, m]) => m[field] === number).map(([s]) => s).sort();
    // A recipient's number: its one message.
    const [messageSid, expected] = [...model][3];
    assert.deepEqual(await search(expected.to), [messageSid]);
    // A sender's number, by default too: every message it sent.
    const sender = "+15005550007";
    assert.equal(having("from", sender).length, EXTRA.length);
    assert.deepEqual(await search(sender), having("from", sender));
    // A number nobody used: a message that says so, not an empty table.
    assert.deepEqual(await search("+19995550123"), []);
    const status = page.getByRole("status");
    assert.match(await status.textContent(), /No message was sent to or from \+19995550123\./);
    assert.match(await status.textContent(), /E\.164/);
    await page.context().close();
  });

  test("on a phone-sized screen nothing scrolls sideways", async () => {
    const page = await newPage({ width: 390, height: 844 });
    await signIn(page);
    const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(await overflow() <= 0, "overview fits");
    await shoot(page, "phone-overview");
    await page.goto(`${app.base}/ui/#/messages?status=undelivered`);
    await page.waitForSelector('body[data-view="messages"] #messages');
    assert.ok(await overflow() <= 0, "list fits");
    await shoot(page, "phone-messages");
    await page.context().close();
  });

  test("the overview is small and quick, and nothing comes from elsewhere", async () => {
    const page = await newPage();
    await signIn(page);
    // A cold load of the signed-in overview: a new context shares no cache; the token is
    // put in sessionStorage before the first request, as if signed in earlier in the tab.
    const cold = await newPage();
    await cold.context().addInitScript((t) => sessionStorage.setItem("statushook.token", t), API_TOKEN);
    await cold.goto(`${app.base}/ui/`);
    await cold.waitForSelector('body[data-view="overview"]');
    const figures = await cold.evaluate(() => {
      const navigation = performance.getEntriesByType("navigation")[0];
      const resources = performance.getEntriesByType("resource");
      return {
        transfer: navigation.transferSize + resources.reduce((sum, r) => sum + r.transferSize, 0),
        requests: resources.length + 1,
        ready: performance.getEntriesByName("statushook:ready")[0].startTime,
      };
    });
    console.log(`overview: ${figures.requests} requests, ${figures.transfer} bytes transferred, ` +
      `interactive with data after ${figures.ready.toFixed(0)} ms`);
    assert.ok(figures.transfer < 64 * 1024, `transfer ${figures.transfer} bytes`);
    const headers = (await fetch(`${app.base}/ui/app.js`)).headers;
    assert.match(headers.get("content-security-policy"), /script-src 'self';/);
    assert.equal(headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.deepEqual(offsite, []);
    assert.deepEqual(consoleErrors.filter((e) => !e.includes("401")), []);
    await page.context().close();
    await cold.context().close();
  });
});

describe("the dashboard for the people on call", () => {
  const HOUR = 3600e3;

  test("'Sign out' is there only when signed in", async () => {
    const page = await newPage();
    await page.goto(`${app.base}/ui/`);
    await page.getByLabel("API token").waitFor();
    const signOut = page.getByRole("button", { name: "Sign out" });
    assert.equal(await signOut.isVisible(), false, "not on the sign-in page");
    await page.keyboard.type(API_TOKEN);
    await page.keyboard.press("Enter");
    await page.waitForSelector('body[data-view="overview"]');
    assert.equal(await signOut.isVisible(), true);
    await signOut.click();
    await page.getByLabel("API token").waitFor();
    assert.equal(await signOut.isVisible(), false, "gone again once signed out");
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    await page.context().close();
  });

  test("times are UTC and named so, or local with the zone named, everywhere", async () => {
    const timezoneId = "America/New_York";
    const page = await newPage(undefined, { timezoneId });
    await signIn(page);
    const [messageSid] = [...model][0];
    const message = await apiGet(app.base, `messages/${messageSid}`);
    const shown = (zone) => new Date(message.updated_at).toLocaleString("en-GB", {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZone: zone,
    });
    // UTC by default, whatever the browser's zone.
    assert.equal(await page.getByLabel("Times in").inputValue(), "utc");
    assert.match(await page.locator(".window").textContent(), /UTC.* to .*UTC/);
    assert.match(await page.locator("#chart-title").textContent(), /\(UTC\)/);
    await page.goto(`${app.base}/ui/#/messages`);
    const updated = page.locator(`#messages tr[data-sid="${messageSid}"] td[data-label="Updated"] time`);
    await updated.waitFor();
    assert.equal(await updated.textContent(), `${shown("UTC")} UTC`);
    await page.goto(`${app.base}/ui/#/messages/${messageSid}`);
    await page.waitForSelector('body[data-view="message"] #timeline');
    const times = page.locator("main time");
    for (const text of await times.allTextContents()) assert.match(text, / UTC$/);

    // Local time: every time names the zone; the choice is kept for the next visit.
    await page.getByLabel("Times in").selectOption("local");
    await page.waitForFunction(() => document.querySelector("main time")?.textContent.endsWith("America/New_York"));
    for (const text of await times.allTextContents()) assert.match(text, / America\/New_York$/);
    assert.ok((await times.allTextContents()).includes(`${shown(timezoneId)} ${timezoneId}`));
    await page.goto(`${app.base}/ui/#/`);
    await page.waitForSelector('body[data-view="overview"]');
    assert.match(await page.locator(".window").textContent(), /America\/New_York.* to .*America\/New_York/);
    assert.match(await page.locator("#chart-title").textContent(), /\(America\/New_York\)/);
    await page.context().close();
  });

  test("windows are picked with date and time pickers, in the zone shown", async () => {
    const page = await newPage(undefined, { timezoneId: "Asia/Tokyo" });
    await signIn(page);
    await page.goto(`${app.base}/ui/#/messages`);
    await page.waitForSelector('body[data-view="messages"] #messages');
    const since = page.getByLabel("Updated since (UTC)");
    assert.equal(await since.getAttribute("type"), "datetime-local");
    await since.fill("2026-01-02T03:04:05");
    await page.getByRole("button", { name: "Apply filters" }).click();
    await page.waitForFunction(() => location.hash.includes("since="));
    const query = () => page.evaluate(() => new URLSearchParams(location.hash.split("?")[1]).get("since"));
    assert.equal(await query(), "2026-01-02T03:04:05.000Z");
    // The picker shows the filter again, in the zone shown.
    await page.waitForSelector('body[data-view="messages"]');
    assert.equal(await page.getByLabel("Updated since (UTC)").inputValue(), "2026-01-02T03:04:05");

    await page.getByLabel("Times in").selectOption("local");
    const local = page.getByLabel("Updated since (Asia/Tokyo)");
    await local.waitFor();
    assert.equal(await local.inputValue(), "2026-01-02T12:04:05");
    await local.fill("2026-01-02T09:00:00");
    await page.getByRole("button", { name: "Apply filters" }).click();
    await page.waitForFunction(() => location.hash.includes("since=2026-01-02T00"));
    assert.equal(await query(), "2026-01-02T00:00:00.000Z");

    // The overview's custom window too.
    await page.goto(`${app.base}/ui/#/`);
    await page.waitForSelector('body[data-view="overview"]');
    await page.getByLabel("Time range").selectOption("custom");
    assert.equal(await page.getByLabel("From").getAttribute("type"), "datetime-local");
    await page.getByLabel("From").fill("2026-01-01T09:00");
    await page.getByRole("button", { name: "Show" }).click();
    await page.waitForFunction(() => location.hash.includes("since="));
    assert.equal(await page.evaluate(() => new URLSearchParams(location.hash.split("?")[1]).get("since")),
      "2026-01-01T00:00:00.000Z");
    await page.context().close();
  });

  test("a message page shows RawDlrDoneDate as a time and marks events that changed nothing", async () => {
    const page = await newPage();
    await signIn(page);
    const [done] = [...model].find(([, m]) => m.rawDlrDoneDate);
    await page.goto(`${app.base}/ui/#/messages/${done}`);
    await page.waitForSelector('body[data-view="message"] #timeline');
    const carrier = page.locator("#timeline .dlr time");
    assert.equal(await carrier.getAttribute("datetime"), "2026-11-26T09:00:00.000Z");
    assert.equal(await carrier.textContent(), "26 Nov 2026, 09:00:00 UTC");
    assert.match(await page.locator("#timeline .dlr").textContent(), /RawDlrDoneDate 2611260900/);
    assert.equal(await page.locator('#timeline li[data-changed="false"]').count(), 0);

    // A `queued` that arrived after `sent`: stored and shown, marked as changing nothing.
    const [late] = [...model].find(([, m]) => m.events.map((e) => e.status).join() === "sent,queued");
    const message = await apiGet(app.base, `messages/${late}`);
    assert.equal(message.status, "sent");
    await page.goto(`${app.base}/ui/#/messages/${late}`);
    // The page of the other message, drawn: its heading shows while it loads, its timeline
    // once it has come.
    await page.waitForFunction((s) => document.querySelector("h1.sid")?.textContent === s
      && document.querySelector("#timeline"), late);
    const events = await page.locator("#timeline > li").evaluateAll((items) => items.map((item) => ({
      status: item.dataset.status, changed: item.dataset.changed, note: item.querySelector(".note")?.textContent ?? null,
    })));
    assert.deepEqual(events.map((e) => [e.status, e.changed]), [["sent", "true"], ["queued", "false"]]);
    assert.match(events[1].note, /^Did not change the status: sent stands/);
    await shoot(page, "message-late-event");
    await page.context().close();
  });

  test("the overview draws the failure rate and steps its axis by round hours and days", async () => {
    const page = await newPage();
    await signIn(page);
    const finals = [...model.values()].map((m) => m.final);
    const count = (...statuses) => finals.filter((f) => statuses.includes(f)).length;
    const failed = count("failed", "undelivered");
    const rate = failed / (failed + count("delivered", "read"));
    assert.equal(await page.locator('[data-stat="failure-rate"] .value').textContent(),
      `${(rate * 100).toFixed(1)} %`);
    // The failure chart has a point for each bucket with concluded messages, and its
    // table a failure-rate column that sums back to the model.
    assert.ok(await page.locator("svg.chart circle.failure-dot").count() >= 1);
    const cells = await page.locator("#series-table tbody tr").evaluateAll((rows) => rows
      .map((row) => [...row.querySelectorAll("td")].map((td) => td.textContent))
      .filter((cells) => cells[1] !== "0"));
    assert.ok(cells.every((row) => row.length === 4));

    const steps = async () => {
      const starts = await page.locator("svg.chart").first().locator("text.tick").evaluateAll((ticks) =>
        ticks.map((tick) => new Date(tick.dataset.start)));
      return { starts, gaps: starts.slice(1).map((start, i) => start - starts[i]) };
    };
    // 24 hours: a label every three or six hours, on hours divisible by the step.
    let { starts, gaps } = await steps();
    const hours = gaps[0] / HOUR;
    assert.ok([3, 6].includes(hours) && gaps.every((gap) => gap === gaps[0]), `gaps ${gaps}`);
    assert.ok(starts.every((start) => start.getUTCHours() % hours === 0 && start.getUTCMinutes() === 0));
    // 7 days of hours: a label a day, at midnight (not every 34 hours).
    await page.getByLabel("Time range").selectOption("7d");
    await page.waitForFunction(() => document.querySelectorAll("svg.chart rect.bar").length >= 168);
    ({ starts, gaps } = await steps());
    assert.ok(starts.length >= 6 && starts.length <= 8, `${starts.length} labels`);
    assert.ok(gaps.every((gap) => gap === 24 * HOUR), `gaps ${gaps}`);
    assert.ok(starts.every((start) => start.getUTCHours() === 0));
    assert.match(await page.locator("svg.chart text.tick").first().textContent(), /^[A-Z][a-z]{2} \d{1,2} [A-Z][a-z]{2}$/);
    // 30 days: a label a week.
    await page.getByLabel("Time range").selectOption("30d");
    await page.waitForFunction(() => document.querySelector("#chart-title")?.textContent.includes("per day"));
    ({ gaps } = await steps());
    assert.ok(gaps.every((gap) => gap === 7 * 24 * HOUR), `gaps ${gaps}`);
    await page.context().close();
  });

  test("breakdowns by sender, messaging service and country show the API's groups", async () => {
    const page = await newPage();
    await signIn(page);
    const [since, until] = await page.locator(".window time").evaluateAll(
      (times) => times.map((t) => t.getAttribute("datetime")));
    const rows = () => page.locator("#breakdown tbody tr").evaluateAll((trs) => trs.map((tr) => ({
      key: tr.dataset.key, name: tr.querySelector("th").textContent,
      total: tr.querySelector("td.num").textContent,
    })));
    const expectGroups = async (by) => {
      const answer = await apiGet(app.base, `stats/breakdown?by=${by}&since=${since}&until=${until}`);
      await page.waitForSelector(`#breakdown[data-by="${by}"]`);
      const shown = await rows();
      assert.deepEqual(shown.map((r) => [r.key, r.total]),
        answer.groups.map((g) => [g.key ?? "", String(g.total)]));
      return { shown, answer };
    };
    // By sender, the model's senders.
    const { answer } = await expectGroups("from");
    const senders = {};
    for (const message of model.values()) senders[message.from] = (senders[message.from] ?? 0) + 1;
    assert.deepEqual(Object.fromEntries(answer.groups.map((g) => [g.key, g.total])), senders);
    // A sender links to its messages.
    await page.locator('#breakdown tr[data-key="+15005550007"] a').click();
    await page.waitForFunction(() => location.hash.includes("from=%2B15005550007")
      && document.querySelectorAll("#messages tbody tr").length === 3);
    await page.goBack();
    await page.waitForSelector('#breakdown[data-by="from"]');

    await page.getByLabel("By", { exact: true }).selectOption("messaging_service");
    await expectGroups("messaging_service");
    await page.getByLabel("By", { exact: true }).selectOption("country");
    const { shown } = await expectGroups("country");
    const named = Object.fromEntries(shown.map((r) => [r.key, r.name]));
    assert.equal(named.DE, "Germany (DE)");
    assert.equal(named.GB, "United Kingdom (GB)");
    assert.equal(shown.find((r) => r.key === "DE").total, "2");
    await shoot(page, "overview-breakdown");
    await page.context().close();
  });

  test("the export buttons download the current window or list as CSV and JSON lines", async () => {
    const page = await newPage();
    await signIn(page);
    const [since, until] = await page.locator(".window time").evaluateAll(
      (times) => times.map((t) => t.getAttribute("datetime")));
    for (const [button, format] of [["Export JSON lines", "jsonl"], ["Export CSV", "csv"]]) {
      const [download] = await Promise.all([
        page.waitForEvent("download"),
        page.getByRole("button", { name: button }).click(),
      ]);
      const path = await download.path();
      const text = readFileSync(path, "utf8");
      assert.match(download.suggestedFilename(), new RegExp(`\\.${format === "csv" ? "csv" : "jsonl"}$`));
      const expected = await apiText(app.base, `export?since=${since}&until=${until}&format=${format}`);
      assert.equal(text, expected);
      for (const messageSid of model.keys()) assert.ok(text.includes(messageSid), messageSid);
      if (format === "jsonl") assert.equal(text.trim().split("\n").length, model.size);
    }
    assert.match(await page.locator(".export [aria-live]").textContent(), /^Downloaded /);
    // The list's export holds exactly the messages of its filters.
    await page.goto(`${app.base}/ui/#/messages?status=failed&status=undelivered`);
    await page.waitForSelector('body[data-view="messages"] #messages');
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Export JSON lines" }).click(),
    ]);
    const exported = readFileSync(await download.path(), "utf8").trim().split("\n")
      .map((line) => JSON.parse(line).sid).sort();
    const failing = [...model].filter(([, m]) => ["failed", "undelivered"].includes(m.final))
      .map(([s]) => s).sort();
    assert.deepEqual(exported, failing);
    await page.context().close();
  });

  test("with the read-only token the page offers no erasing; with the API token it erases", async () => {
    const READ_TOKEN = "ui-test-read-token-0123456789abcdef012";
    const other = await startStatushook({ env: { STATUSHOOK_READ_TOKEN: READ_TOKEN } });
    try {
      const [keep, erase] = [sid(0xfee001), sid(0xfee002)];
      for (const messageSid of [keep, erase]) await postCallback(other.base, callback(messageSid, "delivered"));
      const open = async (token, messageSid) => {
        const page = await newPage(undefined, { base: other.base });
        await page.goto(`${other.base}/ui/`);
        await page.keyboard.type(token);
        await page.keyboard.press("Enter");
        await page.waitForSelector('body[data-view="overview"]');
        await page.goto(`${other.base}/ui/#/messages/${messageSid}`);
        await page.waitForSelector('body[data-view="message"] #timeline');
        return page;
      };
      const reader = await open(READ_TOKEN, keep);
      assert.equal(await reader.getByRole("button", { name: "Erase this message" }).count(), 0);
      assert.equal(await reader.locator("#read-only").isVisible(), true);
      // Reading still works: the list, the overview, the export.
      await reader.goto(`${other.base}/ui/#/messages`);
      await reader.waitForSelector('body[data-view="messages"] #messages');
      assert.equal(await reader.getByRole("button", { name: "Export CSV" }).count(), 1);
      await reader.context().close();

      const writer = await open(API_TOKEN, erase);
      assert.equal(await writer.locator("#read-only").isVisible(), false);
      writer.once("dialog", (dialog) => dialog.accept());
      await writer.getByRole("button", { name: "Erase this message" }).click();
      await writer.waitForFunction(() => location.hash === "#/messages"
        && document.body.dataset.view === "messages");
      const gone = await fetch(`${other.base}/v1/messages/${erase}`, { headers: { Authorization: `Bearer ${API_TOKEN}` } });
      assert.equal(gone.status, 404);
      const kept = await fetch(`${other.base}/v1/messages/${keep}`, { headers: { Authorization: `Bearer ${API_TOKEN}` } });
      assert.equal(kept.status, 200);
      await writer.context().close();
    } finally {
      await other.stop();
    }
  });

  test("auto-refresh redraws the view with new data every 30 seconds when asked", async () => {
    const page = await newPage();
    let fetched = 0;
    page.on("request", (request) => {
      if (new URL(request.url()).pathname === "/v1/stats/series") fetched += 1;
    });
    await page.clock.install();
    await signIn(page);
    const total = () => page.locator('[data-stat="total"] .value').textContent();
    assert.equal(await total(), String(model.size));
    assert.equal(await page.getByLabel("Refresh").inputValue(), "0");
    // Off: a minute passes, a message arrives, nothing is fetched again.
    const before = fetched;
    await post(sid(0xabcfff), { statuses: ["queued", "failed"], final: "failed", errorCode: 30008,
      to: "+15550009999", from: "+15005550006" });
    await page.clock.runFor(61_000);
    await page.evaluate(() => document.readyState);
    assert.equal(fetched, before, "nothing fetched while refresh is off");
    assert.equal(await total(), String(model.size - 1));
    // Every 30 s: the next tick shows it.
    await page.getByLabel("Refresh").selectOption("30");
    await page.clock.runFor(31_000);
    await page.waitForFunction((n) =>
      document.querySelector('[data-stat="total"] .value')?.textContent === String(n), model.size);
    // The choice is kept for the next visit.
    await page.reload();
    await page.waitForSelector('body[data-view="overview"]');
    assert.equal(await page.getByLabel("Refresh").inputValue(), "30");
    await page.context().close();
  });
});
