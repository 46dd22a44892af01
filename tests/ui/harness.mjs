// What the dashboard tests need: the real statushook binary on a free port with a fresh
// store, callbacks signed as Twilio signs them, and Debian's Chromium driven by
// playwright-core (which never downloads a browser).

import { spawn, execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

export const API_TOKEN = "ui-test-api-token-0123456789abcdef0123";
const AUTH_TOKEN = "ui-test-auth-token";
const PUBLIC_URL = "https://hooks.example.com";
export const ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef";

/**
 * Starts `STATUSHOOK_BIN serve` on 127.0.0.1:0 with a temporary data folder and reads the
 * port it logs. Answers {base, stop()}.
 */
export async function startStatushook({ dataDir, env = {} } = {}) {
  const binary = process.env.STATUSHOOK_BIN;
  if (!binary) throw new Error("set STATUSHOOK_BIN to the statushook binary (scripts/test-ui does)");
  const ownDir = dataDir ? null : mkdtempSync(join(tmpdir(), "statushook-ui-"));
  const child = spawn(binary, ["serve"], {
    env: {
      PATH: process.env.PATH,
      STATUSHOOK_LISTEN: "127.0.0.1:0",
      STATUSHOOK_DATA_DIR: dataDir ?? join(ownDir, "db"),
      STATUSHOOK_PUBLIC_URL: PUBLIC_URL,
      STATUSHOOK_API_TOKEN: process.env.STATUSHOOK_API_TOKEN ?? API_TOKEN,
      TWILIO_AUTH_TOKEN: AUTH_TOKEN,
      STATUSHOOK_LOG_FORMAT: "json",
      RUST_LOG: "info",
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const lines = createInterface({ input: child.stderr });
  const port = await new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`statushook exited (${code}) before listening`)));
    lines.on("line", (line) => {
      try {
        const entry = JSON.parse(line);
        if (entry.message === "listening") resolve(entry.port);
      } catch {
        // Not a JSON line; ignore.
      }
    });
  });
  return {
    base: `http://127.0.0.1:${port}`,
    async stop() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
      if (ownDir) rmSync(ownDir, { recursive: true, force: true });
    },
  };
}

/** X-Twilio-Signature: base64(HMAC-SHA1(token, url + each name and value in name order)). */
export function sign(url, params) {
  const names = [...new Set(params.map(([name]) => name))].sort((a, b) =>
    Buffer.compare(Buffer.from(a), Buffer.from(b)));
  let data = url;
  for (const name of names) {
    const values = [...new Set(params.filter(([n]) => n === name).map(([, v]) => v))].sort();
    for (const value of values) data += name + value;
  }
  return createHmac("sha1", AUTH_TOKEN).update(data, "utf8").digest("base64");
}

/** The parameters Twilio sends with an SMS status callback. */
export function callback(sid, status, { to, from, errorCode, service, rawDlrDoneDate } = {}) {
  const params = [
    ["SmsSid", sid], ["SmsStatus", status], ["MessageStatus", status],
    ["To", to ?? "+15005550009"], ["MessagingServiceSid", service ?? ""], ["MessageSid", sid],
    ["AccountSid", ACCOUNT_SID], ["From", from ?? "+15005550006"], ["ApiVersion", "2010-04-01"],
  ];
  if (errorCode !== undefined) params.push(["ErrorCode", String(errorCode)]);
  if (rawDlrDoneDate !== undefined) params.push(["RawDlrDoneDate", rawDlrDoneDate]);
  return params;
}

/** Posts a signed callback; fails unless statushook answers 200. */
export async function postCallback(base, params) {
  const response = await fetch(`${base}/twilio/status`, {
    method: "POST",
    headers: {
      "Content-Type": "application/x-www-form-urlencoded",
      "X-Twilio-Signature": sign(`${PUBLIC_URL}/twilio/status`, params),
    },
    body: new URLSearchParams(params).toString(),
  });
  if (response.status !== 200) {
    throw new Error(`callback answered ${response.status}: ${await response.text()}`);
  }
}

/** GET under /v1 with the API token, as JSON. */
export async function apiGet(base, path) {
  const response = await fetch(`${base}/v1/${path}`, {
    headers: { Authorization: `Bearer ${API_TOKEN}` },
  });
  if (!response.ok) throw new Error(`GET /v1/${path} answered ${response.status}`);
  return response.json();
}

/** GET under /v1 with the API token, as text (an export). */
export async function apiText(base, path) {
  const response = await fetch(`${base}/v1/${path}`, {
    headers: { Authorization: `Bearer ${API_TOKEN}` },
  });
  if (!response.ok) throw new Error(`GET /v1/${path} answered ${response.status}`);
  return response.text();
}

/** Debian's Chromium, headless, with nothing fetched from the network on its own. */
export async function launchChromium() {
  const executablePath = process.env.CHROMIUM ?? execFileSync("which", ["chromium"]).toString().trim();
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update",
    ],
  });
}
