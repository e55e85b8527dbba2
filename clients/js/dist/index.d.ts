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
export type ClientAuthErrorKind = "network" | "http" | "unauthorized" | "rate_limited" | "invalid_response" | "aborted";
/** Every failure the provider reports. `message` says what happened and what to check. */
export declare class ClientAuthError extends Error {
    readonly kind: ClientAuthErrorKind;
    readonly status: number | undefined;
    /** imsgate's `error` code, when it sent one. */
    readonly code: string | undefined;
    constructor(kind: ClientAuthErrorKind, message: string, status?: number, code?: string);
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
/** Validates imsgate's response body; a bad one never reaches the SDK. */
export declare function parseClientToken(body: unknown, nowMs: number): ClientAuthDetails;
/** `Retry-After` as seconds or an HTTP date, in milliseconds from `nowMs`. */
export declare function retryAfterMs(value: string | null, nowMs: number): number | undefined;
export declare function createClientAuthProvider(options: ClientAuthProviderOptions): ClientAuthProviderHandle;
