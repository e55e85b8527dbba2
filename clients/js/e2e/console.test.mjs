// The operator console and the browser-facing error pages in a real browser: Debian's Chromium,
// driven by playwright-core, against `imsgate demo` on loopback. Every state is screenshotted into
// artifacts/console/, at a desktop width (1280 px) and a phone width (390 px).

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
const ARTIFACTS = join(here, "artifacts", "console");
const ORG_A = "CUSTOMERA0000000000000@AdobeOrg";
const ORG_B = "CUSTOMERB0000000000000@AdobeOrg";
const ADA = "USERA00000000000000000@AdobeID";
const VIEWPORTS = [
  { width: 1280, height: 900 },
  { width: 390, height: 844 },
];

let demo;
let browser;
const urls = {};

function startDemo() {
  return new Promise((resolveStart, reject) => {
    const child = spawn(BIN, ["demo", "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "inherit"] });
    child.on("error", (e) => reject(new Error(`cannot start ${BIN}: ${e.message}; build it with cargo build`)));
    const lines = createInterface({ input: child.stdout });
    let previous = "";
    lines.on("line", (line) => {
      const t = line.trim();
      if (t.startsWith("broker:")) urls.broker = t.split(/\s+/)[1];
      if (t.startsWith("IMS emulator:")) urls.emulator = t.split(/\s+/)[2];
      if (previous.startsWith("Connect an Adobe org")) urls.app = t.replace(/\/$/, "");
      if (t.startsWith("curl -X POST") && t.includes("/api/connections")) {
        urls.key = t.split("'")[1].replace("Authorization: Bearer ", "");
      }
      if (t.endsWith("/embed")) resolveStart(child);
      previous = t;
    });
    setTimeout(() => reject(new Error("imsgate demo did not print its URLs in 30 s")), 30_000).unref();
  });
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  demo = await startDemo();
  assert.ok(urls.key?.length >= 32, "the demo printed the internal API key");
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  demo?.kill("SIGTERM");
});

async function counters() {
  const r = await fetch(`${urls.emulator}/__admin/counters`);
  assert.ok(r.ok);
  return r.json();
}

async function internal(method, path, body) {
  return fetch(`${urls.broker}${path}`, {
    method,
    headers: { authorization: `Bearer ${urls.key}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

/** A new browser context at `viewport` that fails the test on any CSP violation. */
async function newPage(viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.violations = [];
  page.on("console", (m) => {
    if (/Content Security Policy|Refused to/.test(m.text())) page.violations.push(m.text());
  });
  return page;
}

/** The page's own stylesheet applied (its CSP hash matched) and nothing wider than the screen. */
async function assertLaidOut(page, viewport) {
  const radius = await page.evaluate(() => getComputedStyle(document.querySelector("section, .card")).borderRadius);
  assert.equal(radius, "8px", "the inline stylesheet is allowed by the CSP hash");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than the ${viewport.width} px screen`);
  assert.deepEqual(page.violations, []);
}

/** Links an account through the partner app, as an org admin would. */
async function connect(page, account, org) {
  await page.goto(`${urls.app}/?account=${encodeURIComponent(account)}`);
  await page.click("#connect");
  await page.waitForURL((u) => u.toString().startsWith(`${urls.emulator}/consent`));
  await page.selectOption("#org", org);
  await page.click("#allow");
  await page.waitForURL((u) => u.toString().startsWith(`${urls.app}/`) && u.searchParams.has("result"));
  assert.equal(new URL(page.url()).searchParams.get("result"), "linked");
}

async function signIn(page, user) {
  await page.goto(`${urls.app}/?user=${encodeURIComponent(user)}`);
  await page.click("#sign-in");
  await page.waitForURL((u) => u.toString().startsWith(`${urls.emulator}/ims/authorize/v2`));
  await page.click(`button[value="${ADA}"]`);
  await page.waitForURL((u) => u.toString().startsWith(`${urls.app}/`) && u.searchParams.has("result"));
  assert.equal(new URL(page.url()).searchParams.get("result"), "signed_in");
}

for (const viewport of VIEWPORTS) {
  const w = viewport.width;
  test(`the operator console at ${w} px: sign in, search, paginate, unlink, revoke, refresh`, async () => {
    const prefix = `w${w}`;
    const page = await newPage(viewport);
    const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `${w}-${name}.png`), fullPage: true });
    await connect(page, `${prefix}-acct-1`, ORG_A);
    await connect(page, `${prefix}-acct-2`, ORG_B);
    await connect(page, `${prefix}-acct-3`, ORG_A);
    await signIn(page, `${prefix}-user`);

    // A wrong password: the form again, saying so, with 401.
    await page.goto(`${urls.broker}/admin`);
    await shot("1-sign-in");
    await page.fill("#password", "not-the-internal-key");
    const [wrong] = await Promise.all([
      page.waitForNavigation(),
      page.click("#login button[type=submit]"),
    ]);
    assert.equal(wrong.status(), 401);
    assert.match(await page.locator("#login-error").innerText(), /That password is wrong/);
    await shot("2-wrong-password");

    await page.fill("#password", urls.key);
    await page.click("#login button[type=submit]");
    await page.locator("#health-section").waitFor();
    const cookies = await page.context().cookies(urls.broker);
    const session = cookies.find((c) => c.name === "__Host-imsgate-admin");
    assert.ok(session?.httpOnly && session.secure && session.sameSite === "Strict", JSON.stringify(session));
    await assertLaidOut(page, viewport);
    await shot("3-console");

    // Search by account substring.
    await page.fill("#links-search input[name=q]", `${prefix}-acct`);
    await page.click("#links-search button");
    await page.waitForURL((u) => u.searchParams.get("q") === `${prefix}-acct`);
    assert.equal(await page.locator("#links tbody tr[data-account]").count(), 3);
    await shot("4-search");

    // Two per page: the second page holds the oldest link.
    await page.goto(`${urls.broker}/admin?q=${prefix}-acct&limit=2`);
    assert.equal(await page.locator("#links tbody tr[data-account]").count(), 2);
    assert.equal(await page.locator("#links-range").innerText(), "1–2 of 3");
    await page.click("#links-next");
    await page.locator("#links-range", { hasText: "3–3 of 3" }).waitFor();
    assert.equal(await page.locator("#links tbody tr[data-account]").count(), 1);
    assert.equal(await page.locator("#links tbody tr[data-account]").getAttribute("data-account"), `${prefix}-acct-1`);
    await assertLaidOut(page, viewport);
    await shot("5-page-2");

    // Unlink the account on this page.
    await page.locator(`tr[data-account="${prefix}-acct-1"] button`, { hasText: "Unlink" }).click();
    await page.locator("#notice", { hasText: "was unlinked" }).waitFor();
    assert.equal(await page.locator(`tr[data-account="${prefix}-acct-1"] td:nth-child(4)`).innerText(), "unlinked");
    assert.equal((await (await internal("GET", `/api/connections/${prefix}-acct-1`)).json()).status, "unlinked");
    await shot("6-unlinked");

    // Revoke the user's sign-in, at IMS.
    const revokesBefore = (await counters()).revoke ?? 0;
    await page.locator(`tr[data-user="${prefix}-user"] button`, { hasText: "Revoke" }).click();
    await page.locator("#notice", { hasText: "was revoked at Adobe" }).waitFor();
    assert.equal(await page.locator(`tr[data-user="${prefix}-user"]`).count(), 0);
    assert.equal((await internal("POST", `/api/users/${prefix}-user/token`)).status, 404);
    const revokesAfter = (await counters()).revoke ?? 0;
    assert.ok(revokesAfter > revokesBefore, `IMS saw the revocation (${revokesBefore} -> ${revokesAfter})`);
    await shot("7-revoked");

    // Force a refresh of the client-token credential: exactly one IMS token request, or none
    // when the other viewport's run forced one less than 5 s ago, and then the notice says so.
    const tokensBefore = (await counters()).token;
    await page.locator('#tokens tr[data-credential="client-entitlement"][data-org=""] button').click();
    const noticeBox = page.locator("#notice", { hasText: /A new token was fetched|moments ago/ });
    await noticeBox.waitFor();
    const notice = await noticeBox.innerText();
    if (notice.includes("moments ago")) {
      assert.equal((await counters()).token, tokensBefore, notice);
    } else {
      assert.match(notice, /A new token was fetched/);
      assert.equal((await counters()).token, tokensBefore + 1);
    }
    await assertLaidOut(page, viewport);
    await shot("8-refreshed");

    // Sign out: back to the sign-in form.
    await page.click("#sign-out");
    await page.locator("#password").waitFor();
    await shot("9-signed-out");
    await page.context().close();
  });

  test(`a reused connect link shows a page saying what to do, at ${w} px`, async () => {
    const page = await newPage(viewport);
    const r = await internal("POST", "/api/connections", { account_id: `reuse-${w}`, return_to: `${urls.app}/` });
    assert.equal(r.status, 201);
    const { connect_url: link } = await r.json();
    await page.goto(link);
    await page.waitForURL((u) => u.toString().startsWith(`${urls.emulator}/consent`));
    const again = await page.goto(link);
    assert.equal(again.status(), 410);
    assert.equal(await page.locator("h1").innerText(), "This connect link can no longer be used");
    assert.match(await page.locator("#explanation").innerText(), /click Connect with Adobe again/);
    await assertLaidOut(page, viewport);
    await page.screenshot({ path: join(ARTIFACTS, `${w}-error-reused-connect-link.png`), fullPage: true });
    // An API client asking for JSON still gets JSON.
    const json = await fetch(link, { headers: { accept: "application/json" } });
    assert.equal(json.status, 410);
    assert.equal((await json.json()).error, "connect_link_unusable");
    await page.context().close();
  });
}
