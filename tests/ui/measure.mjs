// Page weight and speed of the overview, on a running statushook:
//
//   STATUSHOOK_URL=http://127.0.0.1:9094 STATUSHOOK_API_TOKEN=… node tests/ui/measure.mjs
//
// Each run is a cold load (a new browser context: empty cache) of /ui/ already signed in
// (the token put in sessionStorage before the first request). Prints the bytes transferred
// (headers and gzip included, from Resource Timing), split into the dashboard's files and
// the API's answers, and the time from navigation start to the overview drawn with its
// data ("ready": the app's `statushook:ready` mark), as the median of RUNS runs.

import { launchChromium } from "./harness.mjs";

const base = process.env.STATUSHOOK_URL;
const token = process.env.STATUSHOOK_API_TOKEN;
const runs = Number(process.env.RUNS ?? 5);
if (!base || !token) throw new Error("set STATUSHOOK_URL and STATUSHOOK_API_TOKEN");

const browser = await launchChromium();
const results = [];
for (let run = 0; run < runs; run += 1) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.addInitScript((t) => sessionStorage.setItem("statushook.token", t), token);
  const page = await context.newPage();
  await page.goto(`${base}/ui/`);
  await page.waitForSelector('body[data-view="overview"]', { timeout: 120_000 });
  results.push(await page.evaluate(() => {
    const navigation = performance.getEntriesByType("navigation")[0];
    const resources = performance.getEntriesByType("resource");
    const api = resources.filter((r) => new URL(r.name).pathname.startsWith("/v1/"));
    const files = resources.filter((r) => !api.includes(r));
    const sum = (entries) => entries.reduce((total, r) => total + r.transferSize, 0);
    return {
      requests: resources.length + 1,
      files: navigation.transferSize + sum(files),
      filesDecoded: navigation.decodedBodySize + files.reduce((t, r) => t + r.decodedBodySize, 0),
      api: sum(api),
      domContentLoaded: navigation.domContentLoadedEventEnd,
      apiTime: Math.max(...api.map((r) => r.responseEnd)) - Math.min(...api.map((r) => r.startTime)),
      ready: performance.getEntriesByName("statushook:ready")[0].startTime,
    };
  }));
  await context.close();
}
await browser.close();

const median = (key) => {
  const sorted = results.map((r) => r[key]).sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};
const first = results[0];
console.log(`overview, ${runs} cold loads (median):`);
console.log(`  requests: ${first.requests}`);
console.log(`  transferred: ${first.files + first.api} bytes ` +
  `(dashboard files ${first.files}, ${first.filesDecoded} uncompressed; API answers ${first.api})`);
console.log(`  DOMContentLoaded: ${median("domContentLoaded").toFixed(0)} ms`);
console.log(`  API calls (series, then stats): ${median("apiTime").toFixed(0)} ms`);
console.log(`  ready (drawn with its data): ${median("ready").toFixed(0)} ms`);
