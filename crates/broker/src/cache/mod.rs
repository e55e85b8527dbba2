//! The token cache: single-flight fetches, refresh-ahead in the background, backoff on failure.
//!
//! Invariant: at most one upstream request per key is in flight, whatever the number of callers.
//! Callers on a warm key read an `ArcSwap` and never wait on a lock or on IMS. Callers on a cold or
//! lapsed key wait for the flight at most `caller_wait` ([`TokenCache::get`]); the flight itself
//! runs in its own task and carries on when they give up, so the next caller joins it.

pub mod health;
pub mod schedule;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use imsgate_ims::{AccessToken, ImsError, ScopeSet};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::clock::SharedClock;
use crate::config::RefreshConfig;
use crate::metrics::Metrics;

/// What a token is for: a credential, optionally a customer org, and a scope set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub credential: Arc<str>,
    pub org_id: Option<Arc<str>>,
    pub scopes: ScopeSet,
}

/// Obtains a fresh token from IMS for a key. Implemented over HTTP by the broker and by fakes in
/// unit tests.
pub trait Fetcher: Send + Sync + 'static {
    fn fetch<'a>(
        &'a self,
        key: &'a TokenKey,
    ) -> Pin<Box<dyn Future<Output = Result<AccessToken, ImsError>> + Send + 'a>>;
}

/// A token as the cache holds it, with the monotonic times that drive refresh and serving.
#[derive(Debug)]
pub struct CachedToken {
    pub token: AccessToken,
    /// Stop serving at this instant (expiry minus the safety margin).
    pub serve_until: Instant,
    /// Start refreshing at this instant.
    pub refresh_at: Instant,
}

/// Why no token could be served.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no valid token: {cause}")]
pub struct Unavailable {
    /// The last upstream error.
    pub cause: ImsError,
    /// When the next upstream attempt is due.
    pub retry_after: Duration,
}

type Outcome = Result<Arc<CachedToken>, Unavailable>;

#[derive(Debug, Default)]
struct Flight {
    inflight: Option<watch::Receiver<Option<Outcome>>>,
    failure: Option<(ImsError, Instant)>,
    attempts: u32,
    /// When the current run of failures began, for the recovery log line.
    failing_since: Option<Instant>,
    /// When an operator last forced a fetch of this key.
    forced_at: Option<Instant>,
}

impl Flight {
    /// The flight in progress, if its task is still alive. A task that died without reporting
    /// (a panic in a fetcher) must not leave every later caller waiting on it.
    fn live(&self) -> Option<&watch::Receiver<Option<Outcome>>> {
        self.inflight.as_ref().filter(|rx| rx.has_changed().is_ok())
    }
}

/// One cache entry. Handlers on a fixed key hold this directly and skip the map.
#[derive(Debug)]
pub struct Entry {
    key: TokenKey,
    current: ArcSwapOption<CachedToken>,
    flight: Mutex<Flight>,
    /// Milliseconds since the cache's epoch at which a caller last asked for this key.
    last_used_ms: AtomicU64,
    /// Pinned keys are refreshed whether or not anyone asked recently (the client-token key).
    pinned: std::sync::atomic::AtomicBool,
    wake: Notify,
    /// What the fetches of this key did, for the operator console.
    health: Mutex<health::HealthRecord>,
}

struct Shared {
    clock: SharedClock,
    fetcher: Arc<dyn Fetcher>,
    tuning: RefreshConfig,
    metrics: Arc<Metrics>,
    /// The hit counter, resolved once: hits are the hot path.
    hits: prometheus_client::metrics::counter::Counter,
    epoch: Instant,
}

/// The cache. Cloning is cheap; background refreshers stop when the last clone is dropped.
#[derive(Clone)]
pub struct TokenCache {
    shared: Arc<Shared>,
    entries: Arc<RwLock<HashMap<TokenKey, Arc<Entry>>>>,
    _guard: Arc<DropGuard>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.entries.read().len())
            .finish()
    }
}

/// Aborts the refresher tasks when the cache goes away.
#[derive(Default)]
struct DropGuard {
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        for t in self.tasks.get_mut().drain(..) {
            t.abort();
        }
    }
}

/// A handle on one key's entry, for callers that always ask for the same key.
#[derive(Clone, Debug)]
pub struct TokenHandle {
    entry: Arc<Entry>,
    cache: TokenCache,
}

impl TokenHandle {
    /// The token, waiting for a fetch at most the configured caller wait.
    pub async fn get(&self) -> Result<Arc<CachedToken>, Unavailable> {
        self.cache
            .get_entry(&self.entry, Some(self.cache.shared.tuning.caller_wait))
            .await
    }

    /// The token currently servable without waiting, if any.
    pub fn peek(&self) -> Option<Arc<CachedToken>> {
        self.cache.servable(&self.entry)
    }

    /// The hot path: the servable token as an `arc_swap` guard, which reads it without touching
    /// its shared reference count (no cache-line traffic between cores). Counts a hit. `None`
    /// means the caller must go through [`TokenHandle::get`].
    pub fn cached(&self) -> Option<arc_swap::Guard<Option<Arc<CachedToken>>>> {
        let now = Instant::now();
        self.cache.touch(&self.entry, now);
        let guard = self.entry.current.load();
        if guard.as_ref().is_some_and(|t| now < t.serve_until) {
            self.cache.shared.hits.inc();
            Some(guard)
        } else {
            None
        }
    }
}

impl TokenCache {
    pub fn new(
        fetcher: Arc<dyn Fetcher>,
        clock: SharedClock,
        tuning: RefreshConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let hits = metrics
            .cache
            .get_or_create(&crate::metrics::EventLabels { event: "hit" })
            .clone();
        Self {
            shared: Arc::new(Shared {
                clock,
                fetcher,
                tuning,
                hits,
                metrics,
                epoch: Instant::now(),
            }),
            entries: Arc::default(),
            _guard: Arc::default(),
        }
    }

    /// The handle for a key, creating its entry (and its background refresher) on first use.
    pub fn handle(&self, key: TokenKey) -> TokenHandle {
        TokenHandle {
            entry: self.entry(key),
            cache: self.clone(),
        }
    }

    /// Like [`TokenCache::handle`], but the key is kept fresh even when idle, and fetched now.
    pub fn pinned(&self, key: TokenKey) -> TokenHandle {
        let handle = self.handle(key);
        handle.entry.pinned.store(true, Ordering::Relaxed);
        let warm = handle.clone();
        tokio::spawn(async move {
            let _ = warm.get().await;
        });
        handle
    }

    /// Forgets a key's token and failure memory, so the next caller fetches afresh. For when what
    /// the token stands for changed at IMS: an org's consent revoked, or granted again.
    pub fn reset(&self, key: &TokenKey) {
        let Some(entry) = self.entries.read().get(key).cloned() else {
            return;
        };
        let mut flight = entry.flight.lock();
        flight.failure = None;
        flight.attempts = 0;
        flight.failing_since = None;
        entry.current.store(None);
    }

    /// A snapshot of every key's health, sorted by credential then org. Reads no token value.
    pub fn health(&self) -> Vec<health::KeyHealth> {
        let entries: Vec<Arc<Entry>> = self.entries.read().values().cloned().collect();
        let now = Instant::now();
        let mut out: Vec<health::KeyHealth> = entries
            .iter()
            .map(|e| {
                let current = e.current.load();
                health::KeyHealth {
                    key: e.key.clone(),
                    token_expires_at_ms: current.as_ref().map(|t| t.token.expires_at_unix_ms()),
                    servable: current.as_ref().is_some_and(|t| now < t.serve_until),
                    in_flight: e.flight.lock().live().is_some(),
                    record: e.health.lock().clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.key.credential, &a.key.org_id).cmp(&(&b.key.credential, &b.key.org_id))
        });
        out
    }

    /// Fetches a new token for `key` now, through the single flight: a fetch already at IMS is
    /// joined, and within [`FORCE_REFRESH_DEBOUNCE`] of the last forced fetch the token it got is
    /// returned as it is ([`Forced::Recent`], so the operator is told nothing was sent), so
    /// pressing the button repeatedly sends one request. Ignores the failure backoff (an operator
    /// asked), but not a flight in progress. Waits for the fetch until it ends.
    pub async fn force_refresh(&self, key: TokenKey) -> Result<Forced, Unavailable> {
        let entry = self.entry(key);
        self.touch(&entry, Instant::now());
        let mut rx = {
            let mut flight = entry.flight.lock();
            match flight.live() {
                Some(rx) => rx.clone(),
                None => {
                    let now = Instant::now();
                    let recent = flight
                        .forced_at
                        .is_some_and(|at| now.duration_since(at) < FORCE_REFRESH_DEBOUNCE);
                    match entry.current.load_full() {
                        Some(t) if recent => return Ok(Forced::Recent(t)),
                        _ => {
                            flight.forced_at = Some(now);
                            self.shared.metrics.cache_event("forced_refresh");
                            start_flight(&self.shared, &entry, &mut flight)
                        }
                    }
                }
            }
        };
        loop {
            if let Some(outcome) = rx.borrow_and_update().clone() {
                return outcome.map(Forced::Fetched);
            }
            if rx.changed().await.is_err() {
                return Err(Unavailable {
                    cause: ImsError::transport("token refresh was cancelled"),
                    retry_after: Duration::from_secs(1),
                });
            }
        }
    }

    /// The token for `key`, for a request handler: a fetch is waited for at most the configured
    /// caller wait, then the caller is told to come back (503 with `Retry-After`) while the fetch
    /// carries on. A slow IMS must not hold every caller's connection for the whole IMS timeout.
    pub async fn get(&self, key: TokenKey) -> Result<Arc<CachedToken>, Unavailable> {
        let entry = self.entry(key);
        self.get_entry(&entry, Some(self.shared.tuning.caller_wait))
            .await
    }

    /// Like [`TokenCache::get`], but waits for a fetch until it ends (it is bounded by the IMS
    /// request timeout). For one-shot tools such as `imsgate token`, where nobody else is queued
    /// behind the caller and a later retry would only start over.
    pub async fn get_waiting(&self, key: TokenKey) -> Result<Arc<CachedToken>, Unavailable> {
        let entry = self.entry(key);
        self.get_entry(&entry, None).await
    }

    fn entry(&self, key: TokenKey) -> Arc<Entry> {
        if let Some(e) = self.entries.read().get(&key) {
            return e.clone();
        }
        let mut map = self.entries.write();
        if let Some(e) = map.get(&key) {
            return e.clone();
        }
        let entry = Arc::new(Entry {
            key: key.clone(),
            current: ArcSwapOption::empty(),
            flight: Mutex::default(),
            last_used_ms: AtomicU64::new(0),
            pinned: std::sync::atomic::AtomicBool::new(false),
            wake: Notify::new(),
            health: Mutex::default(),
        });
        map.insert(key, entry.clone());
        let task = tokio::spawn(refresher(Arc::downgrade(&self.shared), entry.clone()));
        self._guard.tasks.lock().push(task.abort_handle());
        entry
    }

    fn servable(&self, entry: &Entry) -> Option<Arc<CachedToken>> {
        self.servable_at(entry, Instant::now())
    }

    fn servable_at(&self, entry: &Entry, now: Instant) -> Option<Arc<CachedToken>> {
        let current = entry.current.load_full()?;
        (now < current.serve_until).then_some(current)
    }

    fn touch(&self, entry: &Entry, now: Instant) {
        let now = now.duration_since(self.shared.epoch).as_millis() as u64;
        // Only write when the value moves by a second, so hot keys do not bounce a cache line.
        if now.saturating_sub(entry.last_used_ms.load(Ordering::Relaxed)) >= 1000 {
            entry.last_used_ms.store(now, Ordering::Relaxed);
            // A key that had gone idle has a sleeping refresher; let it reschedule.
            entry.wake.notify_one();
        }
    }

    async fn get_entry(
        &self,
        entry: &Arc<Entry>,
        wait: Option<Duration>,
    ) -> Result<Arc<CachedToken>, Unavailable> {
        let now = Instant::now();
        self.touch(entry, now);
        if let Some(t) = self.servable_at(entry, now) {
            self.shared.hits.inc();
            return Ok(t);
        }
        self.shared.metrics.cache_event("miss");
        let mut rx = {
            let mut flight = entry.flight.lock();
            // A flight may have finished between the fast check and taking the lock.
            if let Some(t) = self.servable(entry) {
                return Ok(t);
            }
            match flight.live() {
                Some(rx) => rx.clone(),
                None => {
                    if let Some((cause, retry_at)) = &flight.failure {
                        let now = Instant::now();
                        if now < *retry_at {
                            return Err(Unavailable {
                                cause: cause.clone(),
                                retry_after: *retry_at - now,
                            });
                        }
                    }
                    start_flight(&self.shared, entry, &mut flight)
                }
            }
        };
        let outcome = async {
            loop {
                if let Some(outcome) = rx.borrow_and_update().clone() {
                    return outcome;
                }
                if rx.changed().await.is_err() {
                    // The flight task was cancelled (the cache is shutting down).
                    return Err(Unavailable {
                        cause: ImsError::transport("token refresh was cancelled"),
                        retry_after: Duration::from_secs(1),
                    });
                }
            }
        };
        let Some(wait) = wait else {
            return outcome.await;
        };
        match tokio::time::timeout(wait, outcome).await {
            Ok(outcome) => outcome,
            Err(_) => {
                // Dropping the receiver leaves the flight running; its result lands in the entry.
                self.shared.metrics.cache_event("caller_timeout");
                Err(Unavailable {
                    cause: ImsError::transport("IMS has not answered yet; the request continues"),
                    retry_after: CALLER_RETRY_AFTER,
                })
            }
        }
    }
}

/// A forced refresh within this long of the previous one returns the token it got instead of
/// asking IMS again: double clicks and several operators pressing at once cost one request.
pub const FORCE_REFRESH_DEBOUNCE: Duration = Duration::from_secs(5);

/// What a forced refresh did.
#[derive(Debug, Clone)]
pub enum Forced {
    /// IMS was asked (or a request already at IMS was joined); this is the token it gave.
    Fetched(Arc<CachedToken>),
    /// A forced fetch ended less than [`FORCE_REFRESH_DEBOUNCE`] ago; nothing was sent and this
    /// is the token it got.
    Recent(Arc<CachedToken>),
}

impl Forced {
    pub fn token(&self) -> &Arc<CachedToken> {
        match self {
            Forced::Fetched(t) | Forced::Recent(t) => t,
        }
    }
}

/// What a caller that gave up waiting is told: the flight may land any moment, and the next caller
/// joins it rather than starting another.
const CALLER_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Starts an upstream fetch for `entry`. Must be called with the entry's flight lock held and no
/// flight in progress. The fetch runs in its own task so a caller giving up does not cancel it.
fn start_flight(
    shared: &Arc<Shared>,
    entry: &Arc<Entry>,
    flight: &mut Flight,
) -> watch::Receiver<Option<Outcome>> {
    let (tx, rx) = watch::channel(None);
    flight.inflight = Some(rx.clone());
    let shared = shared.clone();
    let entry = entry.clone();
    tokio::spawn(async move {
        let result = shared.fetcher.fetch(&entry.key).await;
        let outcome = finish_flight(&shared, &entry, result);
        let _ = tx.send(Some(outcome));
        entry.wake.notify_one();
    });
    rx
}

fn finish_flight(shared: &Shared, entry: &Entry, result: Result<AccessToken, ImsError>) -> Outcome {
    let mut flight = entry.flight.lock();
    flight.inflight = None;
    let now_ms = crate::clock::unix_ms(shared.clock.now());
    {
        let mut h = entry.health.lock();
        match &result {
            Ok(_) => {
                h.last_success_ms = Some(now_ms);
                h.successes += 1;
            }
            Err(e) => {
                h.last_failure = Some(health::FailureRecord::from_error(e, now_ms));
                h.failures += 1;
            }
        }
    }
    match result {
        Ok(token) => {
            let now = shared.clock.now();
            shared.metrics.token_obtained(
                &entry.key.credential,
                entry.key.org_id.is_some(),
                token.expires_at,
                now,
            );
            let cached = Arc::new(schedule_token(now, token));
            entry.current.store(Some(cached.clone()));
            if flight.attempts > 0 {
                let over = flight
                    .failing_since
                    .map(|t| t.elapsed().as_secs_f64())
                    .unwrap_or_default();
                tracing::info!(
                    credential = %entry.key.credential,
                    org_id = entry.key.org_id.as_deref().unwrap_or(""),
                    failures = flight.attempts,
                    seconds = over,
                    "IMS token requests for credential {} succeed again after {} failure{} over {:.1} s",
                    entry.key.credential,
                    flight.attempts,
                    if flight.attempts == 1 { "" } else { "s" },
                    over,
                );
            }
            flight.failure = None;
            flight.attempts = 0;
            flight.failing_since = None;
            Ok(cached)
        }
        Err(cause) => {
            flight.attempts = flight.attempts.saturating_add(1);
            let now = Instant::now();
            flight.failing_since.get_or_insert(now);
            // How long callers are still served without IMS: while that outlasts the backoff,
            // nobody waits on the retry; once it does not, callers are refused until it succeeds.
            let served_for = entry
                .current
                .load()
                .as_ref()
                .map(|t| t.serve_until.saturating_duration_since(now))
                .unwrap_or_default();
            let tuning = &shared.tuning;
            let wait = schedule::retry_delay(
                flight.attempts,
                schedule::RetryPolicy {
                    initial: tuning.backoff_initial,
                    max: tuning.backoff_max,
                    max_without_token: tuning.backoff_max_without_token,
                },
                cause.retry_after,
                served_for,
                cause.kind.is_retryable(),
                rand::random::<f64>(),
            );
            tracing::warn!(
                credential = %entry.key.credential,
                org_id = entry.key.org_id.as_deref().unwrap_or(""),
                error = %cause,
                attempt = flight.attempts,
                retry_in_ms = wait.as_millis() as u64,
                "IMS token request failed"
            );
            flight.failure = Some((cause.clone(), now + wait));
            Err(Unavailable {
                cause,
                retry_after: wait,
            })
        }
    }
}

/// Converts a token's wall-clock expiry into the monotonic instants the cache works with.
fn schedule_token(now: SystemTime, token: AccessToken) -> CachedToken {
    let lifetime = token.lifetime();
    let remaining = token
        .expires_at
        .duration_since(now)
        .unwrap_or(Duration::ZERO);
    let base = Instant::now();
    let expires = base + remaining;
    CachedToken {
        serve_until: expires - schedule::safety_margin(lifetime).min(remaining),
        refresh_at: expires
            - schedule::refresh_margin(lifetime, rand::random::<f64>()).min(remaining),
        token,
    }
}

/// Background refresh for one entry: wakes at the refresh point or the retry point, and refreshes
/// only while the key is in use, so tokens nobody asks for are left to lapse instead of being
/// minted forever (each mint counts against Adobe's throttling).
async fn refresher(shared: std::sync::Weak<Shared>, entry: Arc<Entry>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        let next = {
            let flight = entry.flight.lock();
            if flight.live().is_some() {
                None
            } else if let Some((_, retry_at)) = flight.failure {
                in_use(&s, &entry).then_some(retry_at)
            } else {
                entry
                    .current
                    .load()
                    .as_ref()
                    .filter(|_| in_use(&s, &entry))
                    .map(|t| t.refresh_at)
            }
        };
        let notified = entry.wake.notified();
        drop(s);
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = notified => continue,
                }
            }
            None => {
                notified.await;
                continue;
            }
        }
        let Some(s) = shared.upgrade() else { return };
        let rx = {
            let mut flight = entry.flight.lock();
            let due = flight.live().is_none()
                && match flight.failure {
                    Some((_, retry_at)) => Instant::now() >= retry_at,
                    None => entry
                        .current
                        .load()
                        .as_ref()
                        .is_some_and(|t| Instant::now() >= t.refresh_at),
                };
            if due && in_use(&s, &entry) {
                s.metrics.cache_event("refresh");
                Some(start_flight(&s, &entry, &mut flight))
            } else {
                None
            }
        };
        drop(s);
        if let Some(mut rx) = rx {
            // Wait for the flight so the next iteration sees its result.
            while rx.borrow_and_update().is_none() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }
    }
}

/// A key is in use if a caller asked for it within the last token lifetime (at least 5 minutes).
fn in_use(shared: &Shared, entry: &Entry) -> bool {
    if entry.pinned.load(Ordering::Relaxed) {
        return true;
    }
    let lifetime = entry
        .current
        .load()
        .as_ref()
        .map(|t| t.token.lifetime())
        .unwrap_or_default()
        .max(Duration::from_secs(300));
    let now_ms = shared.epoch.elapsed().as_millis() as u64;
    let last = entry.last_used_ms.load(Ordering::Relaxed);
    now_ms.saturating_sub(last) <= lifetime.as_millis() as u64
}
