// Real-browser tests: Debian's Chromium, driven by playwright-core, against `imsgate demo` (the
// broker, the IMS emulator and the stand-in partner app) on loopback.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.IMSGATE_BIN ?? resolve(here, "../../../target/debug/imsgate");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = join(here, "artifacts");
// Short tokens so a refresh cycle fits in a test: the broker refreshes 2.4 s before expiry.
const LIFETIME_S = 12;

let demo;
let browser;
const urls = {};

function startDemo() {
  return new Promise((resolveStart, reject) => {
    const child = spawn(BIN, ["demo", "--listen", "127.0.0.1:0", "--token-lifetime", String(LIFETIME_S)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    child.on("error", (e) => reject(new Error(`cannot start ${BIN}: ${e.message}; build it with cargo build`)));
    const lines = createInterface({ input: child.stdout });
    let previous = "";
    lines.on("line", (line) => {
      const t = line.trim();
      if (t.startsWith("broker:")) urls.broker = t.split(/\s+/)[1];
      if (t.startsWith("IMS emulator:")) urls.emulator = t.split(/\s+/)[2];
      if (previous.startsWith("Connect an Adobe org")) urls.app = t.replace(/\/$/, "");
      if (t.endsWith("/embed")) {
        urls.embed = t;
        resolveStart(child);
      }
      previous = t;
    });
    setTimeout(() => reject(new Error("imsgate demo did not print its URLs in 30 s")), 30_000).unref();
  });
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  demo = await startDemo();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  demo?.kill("SIGTERM");
});

async function emulatorAdmin(method, path, body) {
  const r = await fetch(`${urls.emulator}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  assert.ok(r.ok, `${method} ${path}: ${r.status}`);
  return r.status === 204 ? undefined : r.json().catch(() => undefined);
}

/** Records every state the page shows, so a test can assert it never showed an error. */
async function watchState(page) {
  await page.evaluate(() => {
    window.__states = [];
    const el = document.getElementById("state");
    new MutationObserver(() => window.__states.push(el.textContent)).observe(el, {
      childList: true,
      characterData: true,
      subtree: true,
    });
  });
}

const text = (page, id) => page.locator(`#${id}`).innerText();

test("the demo page obtains a client token and the emulator accepts it", async () => {
  const page = await browser.newPage();
  await page.goto(`${urls.embed}?margin=3000&user=browser-user-1`);
  await page.locator("#state", { hasText: "ready" }).waitFor({ timeout: 15_000 });
  await page.locator("#ims", { hasText: "accepted" }).waitFor({ timeout: 10_000 });
  assert.match(await text(page, "guid"), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  const expiry = Number(await text(page, "expiry"));
  assert.ok(expiry > Date.now() && expiry <= Date.now() + LIFETIME_S * 1000 + 1000, `expiry ${expiry}`);
  await page.locator("#countdown", { hasText: / s$/ }).waitFor({ timeout: 5_000 });
  assert.match(await text(page, "countdown"), /^\d+\.\d s$/);
  await page.screenshot({ path: join(ARTIFACTS, "client-token-ready.png") });
  await page.close();
});

test("the page refreshes before expiry without ever showing an error", async () => {
  const page = await browser.newPage();
  await page.goto(`${urls.embed}?margin=3000&user=browser-user-2`);
  await page.locator("#state", { hasText: "ready" }).waitFor({ timeout: 15_000 });
  await watchState(page);
  const first = await text(page, "token");
  const firstExpiry = Number(await text(page, "expiry"));
  // A new token must arrive before the first one expires.
  await page.waitForFunction(
    (t) => document.getElementById("token").textContent !== t,
    first,
    { timeout: LIFETIME_S * 1000 + 5_000 },
  );
  assert.ok(Date.now() < firstExpiry, "the new token arrived before the old one expired");
  const events = await text(page, "events");
  assert.match(events, /token background/);
  assert.deepEqual(await page.evaluate(() => window.__states.filter((s) => s !== "ready")), []);
  await page.screenshot({ path: join(ARTIFACTS, "client-token-refreshed.png") });
  await page.close();
});

test("the page rides out an IMS outage across a refresh and recovers", async () => {
  const page = await browser.newPage();
  await page.goto(`${urls.embed}?margin=3000&user=browser-user-3`);
  await page.locator("#state", { hasText: "ready" }).waitFor({ timeout: 15_000 });
  await watchState(page);
  // Start the outage before the broker's refresh point and end it before the token's expiry.
  const expiry = Number(await text(page, "expiry"));
  const waitUntil = async (t) => {
    const ms = t - Date.now();
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  };
  if (expiry - Date.now() < 7_000) {
    await page.waitForFunction((e) => Number(document.getElementById("expiry").textContent) !== e, expiry, {
      timeout: 20_000,
    });
  }
  const current = Number(await text(page, "expiry"));
  const before = (await emulatorAdmin("GET", "/__admin/counters")).token;
  await emulatorAdmin("PUT", "/__admin/faults/token", {
    status: 503,
    body: '{"error":"internal_error","error_description":"Please try again later"}',
  });
  await waitUntil(current - 1_600);
  const during = (await emulatorAdmin("GET", "/__admin/counters")).token;
  await emulatorAdmin("DELETE", "/__admin/faults/token");
  assert.ok(during > before, `the broker tried IMS during the outage (${before} -> ${during})`);
  // Recovery: a token expiring later than the one held through the outage.
  await page.waitForFunction(
    (e) => Number(document.getElementById("expiry").textContent) > e,
    current,
    { timeout: 20_000 },
  );
  assert.deepEqual(await page.evaluate(() => window.__states.filter((s) => s !== "ready")), []);
  await page.screenshot({ path: join(ARTIFACTS, "client-token-after-outage.png") });
  await page.close();
});

test("the page shows the error state when imsgate refuses the caller", async () => {
  const page = await browser.newPage();
  await page.goto(`${urls.embed}?margin=3000&user=browser-user-4`);
  await page.locator("#state", { hasText: "ready" }).waitFor({ timeout: 15_000 });
  await page.click("#sign-out");
  await page.locator("#state", { hasText: "error" }).waitFor({ timeout: 10_000 });
  assert.match(await text(page, "error"), /refused the caller credential \(401/);
  await page.screenshot({ path: join(ARTIFACTS, "client-token-refused.png") });
  await page.close();
});

test("Connect with Adobe: the whole consent flow in the browser", async () => {
  const page = await browser.newPage();
  const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `consent-${name}.png`), fullPage: true });
  await page.goto(`${urls.app}/?account=browser-acct`);
  assert.equal(await text(page, "status"), "unlinked");
  await shot("1-partner-app");
  await page.click("#connect");
  await page.waitForURL((u) => u.toString().startsWith(`${urls.emulator}/consent`));
  await page.selectOption("#org", "CUSTOMERB0000000000000@AdobeOrg");
  await shot("2-adobe-consent");
  await page.click("#allow");
  await page.waitForURL((u) => u.toString().startsWith(`${urls.app}/`) && u.searchParams.has("result"));
  const back = new URL(page.url());
  assert.equal(back.searchParams.get("result"), "linked", `came back with ${back}`);
  assert.equal(await text(page, "status"), "linked");
  assert.equal(await text(page, "org"), "CUSTOMERB0000000000000@AdobeOrg");
  await shot("3-linked");
  await page.click("#get-token");
  await page.locator("#token", { hasText: "Org token" }).waitFor();
  await shot("4-org-token");
  // The session cookie was consumed: replaying the callback URL is refused.
  const cookies = await page.context().cookies(urls.broker);
  assert.equal(cookies.filter((c) => c.name === "__Host-imsgate-consent").length, 0);
  await page.close();
});

test("Sign in with Adobe: user OAuth with PKCE in the browser, then revoke", async () => {
  const page = await browser.newPage();
  const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `sign-in-${name}.png`), fullPage: true });
  const ADA = "USERA00000000000000000@AdobeID";
  await page.goto(`${urls.app}/?user=browser-user`);
  assert.equal(await text(page, "user-status"), "not signed in");
  await shot("1-partner-app");
  await page.click("#sign-in");
  await page.waitForURL((u) => u.toString().startsWith(`${urls.emulator}/ims/authorize/v2`));
  const authorize = new URL(page.url());
  assert.equal(authorize.searchParams.get("code_challenge_method"), "S256");
  assert.equal(authorize.searchParams.get("response_type"), "code");
  await shot("2-adobe-sign-in");
  await page.click(`button[value="${ADA}"]`);
  await page.waitForURL((u) => u.toString().startsWith(`${urls.app}/`) && u.searchParams.has("result"));
  const back = new URL(page.url());
  assert.equal(back.searchParams.get("result"), "signed_in", `came back with ${back}`);
  assert.equal(await text(page, "user-status"), "signed in");
  assert.equal(await text(page, "ims-user"), ADA);
  await shot("3-signed-in");
  // The sign-in session cookie was consumed and cleared.
  const cookies = await page.context().cookies(urls.broker);
  assert.equal(cookies.filter((c) => c.name === "__Host-imsgate-login").length, 0);
  await page.click("#sign-out");
  await page.waitForURL((u) => u.searchParams.get("result") === "signed_out");
  assert.equal(await text(page, "user-status"), "not signed in");
  await shot("4-signed-out");
  await page.close();
});

test("Sign in with Adobe: declining on Adobe's page comes back as cancelled", async () => {
  const page = await browser.newPage();
  await page.goto(`${urls.app}/?user=declining-user`);
  await page.click("#sign-in");
  await page.waitForURL((u) => u.toString().startsWith(`${urls.emulator}/ims/authorize/v2`));
  await page.click("#deny");
  await page.waitForURL((u) => u.toString().startsWith(`${urls.app}/`) && u.searchParams.has("result"));
  const back = new URL(page.url());
  assert.equal(back.searchParams.get("result"), "cancelled");
  assert.equal(back.searchParams.get("code"), "access_denied");
  assert.equal(await text(page, "user-status"), "not signed in");
  await page.screenshot({ path: join(ARTIFACTS, "sign-in-declined.png"), fullPage: true });
  await page.close();
});
