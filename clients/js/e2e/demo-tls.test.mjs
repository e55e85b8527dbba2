// The consent flow in Debian's Chromium over https: `imsgate demo --tls` serves the broker with a
// throwaway CA, and Chromium trusts exactly that certificate's key
// (--ignore-certificate-errors-spki-list is a pin, not a blanket ignore).

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

let demo;
const urls = {};

function startDemo() {
  return new Promise((resolveStart, reject) => {
    const child = spawn(BIN, ["demo", "--tls", "--listen", "127.0.0.1:0"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    child.on("error", (e) => reject(new Error(`cannot start ${BIN}: ${e.message}; build it with cargo build`)));
    const lines = createInterface({ input: child.stdout });
    let previous = "";
    lines.on("line", (line) => {
      const t = line.trim();
      if (t.startsWith("broker:")) urls.broker = t.split(/\s+/)[1];
      if (t.startsWith("IMS emulator:")) urls.emulator = t.split(/\s+/)[2];
      if (t.startsWith("Chromium trust pin:")) urls.pin = t.split(/\s+/)[3];
      if (previous.startsWith("Connect an Adobe org")) urls.app = t.replace(/\/$/, "");
      if (t.endsWith("/embed")) resolveStart(child);
      previous = t;
    });
    setTimeout(() => reject(new Error("imsgate demo --tls did not print its URLs in 30 s")), 30_000).unref();
  });
}

const launch = (extra) =>
  chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...extra,
    ],
  });

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  demo = await startDemo();
});

after(() => {
  demo?.kill("SIGTERM");
});

test("the demo serves https and prints the key pin", () => {
  assert.match(urls.broker, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.match(urls.pin, /^--ignore-certificate-errors-spki-list=[A-Za-z0-9+/]{43}=$/);
});

test("without the pin Chromium refuses the broker's certificate", async () => {
  const browser = await launch([]);
  try {
    const page = await browser.newPage();
    await assert.rejects(page.goto(`${urls.broker}/healthz`), /ERR_CERT_AUTHORITY_INVALID/);
  } finally {
    await browser.close();
  }
});

test("Connect with Adobe over https: consent flow to result=linked with a __Host- Secure cookie", async () => {
  const browser = await launch([urls.pin]);
  try {
    const page = await browser.newPage();
    const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `tls-consent-${name}.png`), fullPage: true });
    // Every broker response the browser gets, with its TLS details.
    const brokerResponses = [];
    page.on("response", async (r) => {
      if (r.url().startsWith(urls.broker)) {
        brokerResponses.push({ url: r.url(), tls: await r.securityDetails() });
      }
    });
    await page.goto(`${urls.app}/?account=tls-acct`);
    assert.equal(await page.locator("#status").innerText(), "unlinked");
    await page.click("#connect");
    await page.waitForURL((u) => u.toString().startsWith(`${urls.emulator}/consent`));
    // The consent session cookie set by https://broker/connect/...: __Host-, Secure, HttpOnly.
    const session = (await page.context().cookies(urls.broker)).find((c) => c.name === "__Host-imsgate-consent");
    assert.ok(session, "the broker set its consent session cookie");
    assert.equal(session.secure, true);
    assert.equal(session.httpOnly, true);
    assert.equal(session.path, "/");
    assert.equal(session.domain, "127.0.0.1");
    await page.selectOption("#org", "CUSTOMERB0000000000000@AdobeOrg");
    await shot("1-adobe-consent");
    await page.click("#allow");
    await page.waitForURL((u) => u.toString().startsWith(`${urls.app}/`) && u.searchParams.has("result"));
    const back = new URL(page.url());
    assert.equal(back.searchParams.get("result"), "linked", `came back with ${back}`);
    assert.equal(await page.locator("#status").innerText(), "linked");
    await shot("2-linked");
    // The connect link and the callback both came over TLS with the demo's certificate.
    const connect = brokerResponses.find((r) => r.url.includes("/connect/"));
    const callback = brokerResponses.find((r) => r.url.includes("/consent/callback"));
    for (const [name, r] of [["connect", connect], ["callback", callback]]) {
      assert.ok(r, `${name} response seen`);
      assert.match(r.tls?.protocol ?? "", /^TLS 1\.[23]$/, `${name}: ${JSON.stringify(r.tls)}`);
      assert.equal(r.tls.issuer, "imsgate demo CA (throwaway)", name);
    }
    // Consumed by the callback.
    const left = (await page.context().cookies(urls.broker)).filter((c) => c.name === "__Host-imsgate-consent");
    assert.equal(left.length, 0);
    await page.close();
  } finally {
    await browser.close();
  }
});
