/**
 * A `ClientAuthProvider` for Adobe's Express Embed SDK, backed by imsgate's `GET /api/client-token`.
 *
 * The SDK calls the provider whenever it needs a token. The provider caches the token, shares one
 * request among concurrent calls, refreshes a margin before expiry, keeps serving the old token
 * while a refresh fails and the old one is still valid, retries network errors and 5xx with
 * exponential backoff and jitter, honours `Retry-After` on 429, asks the partner's caller
 * credential again once on 401, and validates every response before the SDK sees it.
 */

/** What the SDK expects from a `ClientAuthProvider`. */
export interface ClientAuthDetails {
  clientAccessToken: string;
  tokenExpiryTimestampMs: number;
  /** imsgate's `tokenId`: a 36-character hyphenated UUID, stable per user. */
  userGuid: string;
}

/** The SDK's provider type: `CCEverywhere.initialize(hostInfo, configParams, authOption, provider)`. */
export type ClientAuthProvider = () => Promise<ClientAuthDetails>;

export type ClientAuthErrorKind =
  | "network"
  | "http"
  | "unauthorized"
  | "rate_limited"
  | "invalid_response"
  | "aborted";

/** Every failure the provider reports. `message` says what happened and what to check. */
export class ClientAuthError extends Error {
  readonly kind: ClientAuthErrorKind;
  readonly status: number | undefined;
  /** imsgate's `error` code, when it sent one. */
  readonly code: string | undefined;

  constructor(kind: ClientAuthErrorKind, message: string, status?: number, code?: string) {
    super(message);
    this.name = "ClientAuthError";
    this.kind = kind;
    this.status = status;
    this.code = code;
  }
}

export type RefreshReason = "initial" | "expiring" | "background" | "invalidated";

export interface RefreshEvent {
  reason: RefreshReason;
  details: ClientAuthDetails;
}

export interface ProviderErrorEvent {
  error: ClientAuthError;
  /** Whether the provider will try again on its own (backoff or the background timer). */
  willRetry: boolean;
  /** 1-based attempt number within the current refresh. */
  attempt: number;
}

export interface ClientAuthProviderOptions {
  /** URL of imsgate's `GET /api/client-token`. */
  endpoint: string;
  /**
   * The `Authorization` header value proving who the user is, for example `Bearer <caller token>`
   * minted by the partner's backend. Called before each request, and once more after a 401.
   */
  getCallerCredential: () => Promise<string>;
  /** Refresh this long before expiry (default 60 000 ms: at 4 minutes for a 5-minute token). */
  refreshMarginMs?: number;
  /** A `fetch` implementation (default: the global one). */
  fetch?: typeof fetch;
  /** Aborting stops the background timer and makes every pending and later call fail. */
  signal?: AbortSignal;
  /** Called after every successful refresh. */
  onRefresh?: (event: RefreshEvent) => void;
  /** Called for every failed attempt. */
  onError?: (event: ProviderErrorEvent) => void;
  /** Refresh in the background before expiry, so the SDK never waits (default false). */
  backgroundRefresh?: boolean;
  /** Retries after the first attempt for network errors, 5xx and 429 (default 3). */
  maxRetries?: number;
  /** First backoff delay (default 500 ms); doubles per retry, with full jitter. */
  retryBaseDelayMs?: number;
  /** Backoff cap, also the cap on a `Retry-After` wait (default 30 000 ms). */
  retryMaxDelayMs?: number;
}

/** The provider function, with controls the SDK does not need but an app does. */
export interface ClientAuthProviderHandle extends ClientAuthProvider {
  /** Forget the cached token (after the SDK reports a token error); the next call fetches. */
  invalidate(): void;
  /** The cached token, if any, without fetching. */
  current(): ClientAuthDetails | undefined;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Validates imsgate's response body; a bad one never reaches the SDK. */
export function parseClientToken(body: unknown, nowMs: number): ClientAuthDetails {
  const bad = (what: string) =>
    new ClientAuthError("invalid_response", `imsgate's client-token response ${what}`);
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw bad("is not a JSON object");
  }
  const b = body as Record<string, unknown>;
  const token = b["clientAccessToken"];
  const expiry = b["tokenExpiryTimestampMs"];
  const id = b["tokenId"];
  if (typeof token !== "string" || token.length === 0) {
    throw bad("has no clientAccessToken string");
  }
  if (typeof expiry !== "number" || !Number.isSafeInteger(expiry)) {
    throw bad("has no integer tokenExpiryTimestampMs");
  }
  if (expiry <= nowMs) {
    throw bad("carries a token that has already expired (check the clocks)");
  }
  if (typeof id !== "string" || !UUID.test(id)) {
    throw bad("has no tokenId in UUID form (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
  }
  return { clientAccessToken: token, tokenExpiryTimestampMs: expiry, userGuid: id.toLowerCase() };
}

/** `Retry-After` as seconds or an HTTP date, in milliseconds from `nowMs`. */
export function retryAfterMs(value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const date = Date.parse(v);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}

function abortError(): ClientAuthError {
  return new ClientAuthError("aborted", "the client auth provider was aborted");
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError());
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** What one attempt concluded. */
type Attempt =
  | { ok: true; details: ClientAuthDetails }
  | { ok: false; error: ClientAuthError; retry: boolean; waitMs?: number; reauth?: boolean };

export function createClientAuthProvider(options: ClientAuthProviderOptions): ClientAuthProviderHandle {
  const margin = options.refreshMarginMs ?? 60_000;
  const maxRetries = options.maxRetries ?? 3;
  const baseDelay = options.retryBaseDelayMs ?? 500;
  const maxDelay = options.retryMaxDelayMs ?? 30_000;
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const signal = options.signal;

  let current: ClientAuthDetails | undefined;
  /** When to refresh `current`: the margin before expiry, but never before half its remaining
   * life, so a token that arrives already inside the margin (the backend is about to refresh it)
   * is not fetched again in a loop. */
  let refreshAt = 0;
  let inflight: Promise<ClientAuthDetails> | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let backgroundFailures = 0;

  signal?.addEventListener("abort", () => clearTimeout(timer), { once: true });

  const report = (error: ClientAuthError, willRetry: boolean, attempt: number) => {
    try {
      options.onError?.({ error, willRetry, attempt });
    } catch {
      // A throwing hook must not break token delivery.
    }
  };

  async function attempt(credential: string): Promise<Attempt> {
    let resp: Response;
    try {
      resp = await doFetch(options.endpoint, {
        method: "GET",
        headers: { Authorization: credential },
        credentials: "omit",
        cache: "no-store",
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      if (signal?.aborted) return { ok: false, error: abortError(), retry: false };
      const why = e instanceof Error ? e.message : String(e);
      return {
        ok: false,
        error: new ClientAuthError("network", `cannot reach imsgate at ${options.endpoint}: ${why}`),
        retry: true,
      };
    }
    if (resp.ok) {
      let body: unknown;
      try {
        body = await resp.json();
      } catch {
        return {
          ok: false,
          error: new ClientAuthError("invalid_response", "imsgate's client-token response is not JSON"),
          retry: false,
        };
      }
      try {
        return { ok: true, details: parseClientToken(body, Date.now()) };
      } catch (e) {
        return { ok: false, error: e as ClientAuthError, retry: false };
      }
    }
    let code: string | undefined;
    let description = "";
    try {
      const err = (await resp.json()) as { error?: unknown; error_description?: unknown };
      if (typeof err.error === "string") code = err.error;
      if (typeof err.error_description === "string") description = `: ${err.error_description}`;
    } catch {
      // Not JSON: the status says enough.
    }
    const wait = retryAfterMs(resp.headers.get("Retry-After"), Date.now());
    const status = resp.status;
    if (status === 401) {
      return {
        ok: false,
        error: new ClientAuthError(
          "unauthorized",
          `imsgate refused the caller credential (401${description}); check getCallerCredential`,
          status,
          code,
        ),
        retry: false,
        reauth: true,
      };
    }
    if (status === 429) {
      return {
        ok: false,
        error: new ClientAuthError("rate_limited", `imsgate rate limit reached (429${description})`, status, code),
        retry: true,
        ...(wait !== undefined ? { waitMs: wait } : {}),
      };
    }
    if (status >= 500) {
      return {
        ok: false,
        error: new ClientAuthError("http", `imsgate failed (${status}${description})`, status, code),
        retry: true,
        ...(wait !== undefined ? { waitMs: wait } : {}),
      };
    }
    return {
      ok: false,
      error: new ClientAuthError("http", `imsgate refused the request (${status}${description})`, status, code),
      retry: false,
    };
  }

  /** One refresh: attempts with backoff, and one fresh credential after a 401. */
  async function fetchToken(): Promise<ClientAuthDetails> {
    let credential = await options.getCallerCredential();
    let reasked = false;
    for (let n = 1; ; n++) {
      if (signal?.aborted) throw abortError();
      const r = await attempt(credential);
      if (r.ok) return r.details;
      if (r.reauth && !reasked) {
        reasked = true;
        report(r.error, true, n);
        credential = await options.getCallerCredential();
        continue;
      }
      const retry = r.retry && n <= maxRetries;
      report(r.error, retry, n);
      if (!retry) throw r.error;
      const backoff = Math.random() * Math.min(maxDelay, baseDelay * 2 ** (n - 1));
      const delay = r.waitMs !== undefined ? Math.min(maxDelay, Math.max(r.waitMs, backoff)) : backoff;
      await sleep(delay, signal);
    }
  }

  function schedule(): void {
    clearTimeout(timer);
    if (!options.backgroundRefresh || !current || signal?.aborted) return;
    // An expired token is refetched by the next caller; the timer does not poll for it.
    if (Date.now() >= current.tokenExpiryTimestampMs) return;
    const due = Math.max(0, refreshAt - Date.now());
    timer = setTimeout(() => {
      refresh("background").then(
        () => {
          backgroundFailures = 0;
        },
        () => {
          // Reported through onError. Try again, backing off further each time, while the old
          // token lasts; once it has expired the next caller fetches, and the timer stops.
          backgroundFailures += 1;
          if (current && Date.now() < current.tokenExpiryTimestampMs && !signal?.aborted) {
            clearTimeout(timer);
            const wait = Math.min(maxDelay, baseDelay * 2 ** (backgroundFailures + 1));
            timer = setTimeout(() => schedule(), wait);
          }
        },
      );
    }, due);
  }

  function refresh(reason: RefreshReason): Promise<ClientAuthDetails> {
    if (inflight) return inflight;
    const p = fetchToken().then((details) => {
      const now = Date.now();
      current = details;
      const expiry = details.tokenExpiryTimestampMs;
      refreshAt = Math.max(expiry - margin, now + (expiry - now) / 2);
      schedule();
      try {
        options.onRefresh?.({ reason, details });
      } catch {
        // A throwing hook must not break token delivery.
      }
      return details;
    });
    inflight = p;
    const clear = () => {
      if (inflight === p) inflight = undefined;
    };
    p.then(clear, clear);
    return p;
  }

  let invalidated = false;

  const provider = async (): Promise<ClientAuthDetails> => {
    if (signal?.aborted) throw abortError();
    const now = Date.now();
    if (current && now < refreshAt) return current;
    const reason: RefreshReason = invalidated ? "invalidated" : current ? "expiring" : "initial";
    invalidated = false;
    try {
      return await refresh(reason);
    } catch (e) {
      // The old token is still good: hand it out rather than fail the SDK.
      if (current && Date.now() < current.tokenExpiryTimestampMs && !(e instanceof ClientAuthError && e.kind === "aborted")) {
        return current;
      }
      throw e;
    }
  };

  const handle = provider as ClientAuthProviderHandle;
  handle.invalidate = () => {
    current = undefined;
    invalidated = true;
    clearTimeout(timer);
  };
  handle.current = () => current;
  return handle;
}
