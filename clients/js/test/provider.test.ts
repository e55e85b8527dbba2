// The provider's behaviours under fake timers and a scripted fetch.

import { afterEach, beforeEach, mock, test } from "node:test";
import assert from "node:assert/strict";

import {
  ClientAuthError,
  createClientAuthProvider,
  parseClientToken,
  retryAfterMs,
  type ClientAuthProviderOptions,
  type ProviderErrorEvent,
  type RefreshEvent,
} from "../src/index.js";

const START = 1_800_000_000_000;
const GUID = "3ab6695f-2616-503d-9f9b-55012187ac39";
const ENDPOINT = "https://imsgate.test/api/client-token";

type Step = Response | Error | ((init: RequestInit | undefined) => Response);

/** A fetch that answers from a script and records what it was asked. */
function scripted(steps: Step[]) {
  const calls: { auth: string | undefined }[] = [];
  const fn = async (_url: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const headers = (init?.headers ?? {}) as Record<string, string>;
    calls.push({ auth: headers["Authorization"] });
    const step = steps.shift();
    if (step === undefined) throw new Error("fetch called more often than scripted");
    if (step instanceof Error) throw step;
    if (typeof step === "function") return step(init);
    return step;
  };
  return { fetch: fn as typeof fetch, calls };
}

/** A success, built when fetched so its expiry is relative to the (fake) time of the request. */
function ok(token: string, lifetimeMs = 300_000, id: string = GUID): Step {
  return () =>
    Response.json({
      clientAccessToken: token,
      tokenExpiryTimestampMs: Date.now() + lifetimeMs,
      tokenId: id,
    });
}

function status(code: number, headers: Record<string, string> = {}): Response {
  return Response.json(
    { error: code === 429 ? "rate_limited" : "err", error_description: "scripted" },
    { status: code, headers },
  );
}

/** Lets pending promise callbacks run (setImmediate is not faked). */
async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

async function advance(ms: number): Promise<void> {
  await flush();
  mock.timers.tick(ms);
  await flush();
}

function provider(f: typeof fetch, extra: Partial<ClientAuthProviderOptions> = {}) {
  const refreshes: RefreshEvent[] = [];
  const errors: ProviderErrorEvent[] = [];
  let credentials = 0;
  const p = createClientAuthProvider({
    endpoint: ENDPOINT,
    getCallerCredential: async () => `Bearer caller-${++credentials}`,
    fetch: f,
    onRefresh: (e) => refreshes.push(e),
    onError: (e) => errors.push(e),
    ...extra,
  });
  return { p, refreshes, errors, credentials: () => credentials };
}

beforeEach(() => {
  mock.timers.enable({ apis: ["setTimeout", "Date"], now: START });
  // Backoff jitter at its maximum, so delays are exact.
  mock.method(Math, "random", () => 1);
});

afterEach(() => {
  mock.timers.reset();
  mock.restoreAll();
});

test("the first call fetches, later calls use the cache while it is fresh", async () => {
  const s = scripted([ok("t1")]);
  const { p, refreshes } = provider(s.fetch);
  const a = await p();
  assert.deepEqual(a, {
    clientAccessToken: "t1",
    tokenExpiryTimestampMs: START + 300_000,
    userGuid: GUID,
  });
  await advance(200_000);
  assert.equal((await p()).clientAccessToken, "t1");
  assert.equal(s.calls.length, 1);
  assert.equal(s.calls[0]?.auth, "Bearer caller-1");
  assert.deepEqual(refreshes.map((r) => r.reason), ["initial"]);
});

test("concurrent calls share one request", async () => {
  const s = scripted([ok("t1")]);
  const { p } = provider(s.fetch);
  const all = await Promise.all([p(), p(), p(), p(), p()]);
  assert.equal(s.calls.length, 1);
  assert.ok(all.every((d) => d.clientAccessToken === "t1"));
});

test("a call inside the margin refreshes (at 4 minutes for a 5-minute token)", async () => {
  const s = scripted([ok("t1"), ok("t2")]);
  const { p, refreshes } = provider(s.fetch);
  await p();
  await advance(239_000);
  assert.equal((await p()).clientAccessToken, "t1", "still outside the 60 s margin");
  await advance(1_000);
  assert.equal((await p()).clientAccessToken, "t2");
  assert.equal(s.calls.length, 2);
  assert.deepEqual(refreshes.map((r) => r.reason), ["initial", "expiring"]);
});

test("a token that arrives inside the margin is refreshed halfway, not in a loop", async () => {
  const s = scripted([ok("t1", 40_000), ok("t2", 300_000)]);
  const { p } = provider(s.fetch, { backgroundRefresh: true });
  assert.equal((await p()).clientAccessToken, "t1");
  await advance(1_000);
  assert.equal((await p()).clientAccessToken, "t1");
  assert.equal(s.calls.length, 1, "no refetch while the backend is about to refresh");
  await advance(19_000);
  assert.equal(s.calls.length, 2, "refreshed at half the remaining life");
  assert.equal((await p()).clientAccessToken, "t2");
});

test("a failed refresh returns the old token while it is still valid, then fails", async () => {
  const s = scripted([ok("t1"), status(500), status(500)]);
  const { p, errors } = provider(s.fetch, { maxRetries: 0 });
  await p();
  await advance(250_000);
  assert.equal((await p()).clientAccessToken, "t1");
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.error.status, 500);
  await advance(50_000);
  await assert.rejects(p(), (e: ClientAuthError) => e.kind === "http" && e.status === 500);
});

test("network errors and 5xx are retried with exponential backoff", async () => {
  const s = scripted([new TypeError("Failed to fetch"), status(503), ok("t1")]);
  const { p, errors } = provider(s.fetch, { retryBaseDelayMs: 500 });
  const result = p();
  await flush();
  assert.equal(s.calls.length, 1);
  await advance(499);
  assert.equal(s.calls.length, 1, "no retry before the first backoff delay");
  await advance(1);
  assert.equal(s.calls.length, 2);
  await advance(999);
  assert.equal(s.calls.length, 2, "the second delay doubles");
  await advance(1);
  assert.equal((await result).clientAccessToken, "t1");
  assert.deepEqual(
    errors.map((e) => [e.error.kind, e.attempt, e.willRetry]),
    [
      ["network", 1, true],
      ["http", 2, true],
    ],
  );
});

test("backoff delays are jittered below the exponential bound", async () => {
  mock.method(Math, "random", () => 0.25);
  const s = scripted([status(500), status(500), ok("t1")]);
  const { p } = provider(s.fetch, { retryBaseDelayMs: 1000 });
  const result = p();
  await advance(249);
  assert.equal(s.calls.length, 1);
  await advance(1);
  assert.equal(s.calls.length, 2, "first retry after 0.25 x 1000 ms");
  await advance(499);
  assert.equal(s.calls.length, 2);
  await advance(1);
  assert.equal(s.calls.length, 3, "second retry after 0.25 x 2000 ms");
  assert.equal((await result).clientAccessToken, "t1");
});

test("retries stop after maxRetries", async () => {
  const s = scripted([status(502), status(502), status(502)]);
  const { p, errors } = provider(s.fetch, { maxRetries: 2 });
  const result = p();
  result.catch(() => {});
  await advance(500);
  await advance(1000);
  await assert.rejects(result, (e: ClientAuthError) => e.status === 502);
  assert.equal(s.calls.length, 3);
  assert.equal(errors.at(-1)?.willRetry, false);
});

test("429 waits for Retry-After", async () => {
  const s = scripted([status(429, { "Retry-After": "7" }), ok("t1")]);
  const { p, errors } = provider(s.fetch);
  const result = p();
  await advance(6_999);
  assert.equal(s.calls.length, 1);
  await advance(1);
  assert.equal((await result).clientAccessToken, "t1");
  assert.equal(errors[0]?.error.kind, "rate_limited");
});

test("401 asks for the caller credential again, once", async () => {
  const s = scripted([status(401), ok("t1")]);
  const { p, credentials } = provider(s.fetch);
  assert.equal((await p()).clientAccessToken, "t1");
  assert.equal(credentials(), 2);
  assert.deepEqual(s.calls.map((c) => c.auth), ["Bearer caller-1", "Bearer caller-2"]);

  const twice = scripted([status(401), status(401)]);
  const second = provider(twice.fetch);
  await assert.rejects(second.p(), (e: ClientAuthError) => e.kind === "unauthorized" && e.status === 401);
  assert.equal(second.credentials(), 2);
  assert.equal(twice.calls.length, 2);
});

test("other 4xx are not retried", async () => {
  const s = scripted([status(403)]);
  const { p } = provider(s.fetch);
  await assert.rejects(p(), (e: ClientAuthError) => e.kind === "http" && e.status === 403);
  assert.equal(s.calls.length, 1);
});

test("bad responses are errors with a clear message and never reach the SDK", async () => {
  const rows: [string, Response, RegExp][] = [
    ["not JSON", new Response("<html>", { status: 200 }), /not JSON/],
    ["an array", Response.json([1]), /not a JSON object/],
    ["no token", Response.json({ tokenExpiryTimestampMs: START + 1000, tokenId: GUID }), /clientAccessToken/],
    ["empty token", Response.json({ clientAccessToken: "", tokenExpiryTimestampMs: START + 1000, tokenId: GUID }), /clientAccessToken/],
    ["expiry a string", Response.json({ clientAccessToken: "t", tokenExpiryTimestampMs: "soon", tokenId: GUID }), /tokenExpiryTimestampMs/],
    ["expiry in the past", Response.json({ clientAccessToken: "t", tokenExpiryTimestampMs: START - 1, tokenId: GUID }), /already expired/],
    ["tokenId not a UUID", Response.json({ clientAccessToken: "t", tokenExpiryTimestampMs: START + 1000, tokenId: "user-42" }), /UUID/],
    ["tokenId missing", Response.json({ clientAccessToken: "t", tokenExpiryTimestampMs: START + 1000 }), /UUID/],
  ];
  for (const [name, resp, message] of rows) {
    const s = scripted([resp]);
    const { p } = provider(s.fetch);
    await assert.rejects(
      p(),
      (e: ClientAuthError) => e.kind === "invalid_response" && message.test(e.message),
      name,
    );
    assert.equal(s.calls.length, 1, `${name}: not retried`);
  }
});

test("the background timer refreshes before expiry without a call", async () => {
  const s = scripted([ok("t1"), ok("t2")]);
  const { p, refreshes } = provider(s.fetch, { backgroundRefresh: true, refreshMarginMs: 30_000 });
  await p();
  await advance(269_999);
  assert.equal(s.calls.length, 1);
  await advance(1);
  assert.equal(s.calls.length, 2);
  assert.deepEqual(refreshes.map((r) => r.reason), ["initial", "background"]);
  assert.equal((await p()).clientAccessToken, "t2");
  assert.equal(s.calls.length, 2);
});

test("background failures back off and stop once the token has expired", async () => {
  const s = scripted(Array.from({ length: 40 }, () => status(503)));
  s.calls.length = 0;
  const first = scripted([ok("t1", 20_000)]);
  let useFirst = true;
  const f = (async (u: string | URL | Request, i?: RequestInit) =>
    useFirst ? ((useFirst = false), first.fetch(u, i)) : s.fetch(u, i)) as typeof fetch;
  const { p } = provider(f, { backgroundRefresh: true, maxRetries: 0, retryBaseDelayMs: 500 });
  await p();
  // Refresh point: half of 20 s. Then retries after 2 s, 4 s, 8 s... until expiry at 20 s.
  await advance(10_000);
  assert.equal(s.calls.length, 1);
  await advance(2_000);
  assert.equal(s.calls.length, 2);
  await advance(4_000);
  assert.equal(s.calls.length, 3);
  await advance(8_000);
  assert.equal(s.calls.length, 3, "the retry due after expiry is not sent");
  await advance(120_000);
  assert.equal(s.calls.length, 3, "no background requests after the token expired");
});

test("aborting stops the timer and fails later calls", async () => {
  const s = scripted([ok("t1")]);
  const controller = new AbortController();
  const { p } = provider(s.fetch, { backgroundRefresh: true, signal: controller.signal });
  await p();
  controller.abort();
  await advance(600_000);
  assert.equal(s.calls.length, 1, "no background refresh after abort");
  await assert.rejects(p(), (e: ClientAuthError) => e.kind === "aborted");
});

test("invalidate forgets the token after an SDK token error", async () => {
  const s = scripted([ok("t1"), ok("t2")]);
  const { p, refreshes } = provider(s.fetch);
  await p();
  p.invalidate();
  assert.equal(p.current(), undefined);
  assert.equal((await p()).clientAccessToken, "t2");
  assert.deepEqual(refreshes.map((r) => r.reason), ["initial", "invalidated"]);
});

test("parsing helpers", () => {
  assert.equal(retryAfterMs("120", 0), 120_000);
  assert.equal(retryAfterMs(" 3 ", 0), 3_000);
  assert.equal(retryAfterMs(new Date(START + 5_000).toUTCString(), START), 5_000);
  assert.equal(retryAfterMs("soon", 0), undefined);
  assert.equal(retryAfterMs(null, 0), undefined);
  const d = parseClientToken(
    { clientAccessToken: "t", tokenExpiryTimestampMs: 10, tokenId: GUID.toUpperCase() },
    5,
  );
  assert.equal(d.userGuid, GUID, "userGuid is lower case");
});
