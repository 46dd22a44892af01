// The dashboard end to end: the real binary, signed callbacks, headless Chromium.
//
// Every number the pages show is checked against the API's own answer and against the
// callbacks posted here (the model). SCREENSHOTS_DIR, when set, receives a screenshot of
// each page (scripts/test-ui --screenshots writes docs/screenshots/).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  API_TOKEN, apiGet, callback, launchChromium, postCallback, startStatushook,
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
        final: statuses.at(-1), errorCode: errorCode ?? null, to, events,
      });
    }
  }
  browser = await launchChromium();
  if (screenshots) mkdirSync(screenshots, { recursive: true });
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

/** A fresh browser tab, watched for off-site requests and console errors. */
async function newPage(viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(app.base) && !url.startsWith("data:")) offsite.push(url);
  });
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
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

  test("searching a phone number lists that recipient's messages", async () => {
    const page = await newPage();
    await signIn(page);
    const [messageSid, expected] = [...model][3];
    await page.goto(`${app.base}/ui/#/messages`);
    await page.waitForSelector('body[data-view="messages"] #messages');
    await page.getByRole("searchbox").fill(expected.to);
    await page.getByRole("button", { name: "Find" }).click();
    await page.waitForFunction(() => location.hash.includes("to=")
      && document.querySelectorAll("#messages tbody tr").length === 1);
    assert.equal(await page.locator("#messages tbody tr").getAttribute("data-sid"), messageSid);
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
