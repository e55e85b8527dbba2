//! A JWKS fetched from a configured URL, cached, with refetches on an unknown `kid` limited by a
//! small token bucket, so a rotated key is picked up within seconds while a stream of bogus kids
//! cannot hammer the key server.
//!
//! Invariants: keys come only from the configured URL, never from a token's header; a key is
//! handed out only for a token algorithm it permits ([`imsgate_ims::jwk::KeyUse::permits`], the
//! one key-selection rule for caller tokens and both id_token flows); a set that is malformed or
//! names a `kid` twice is refused whole, with a log line and a metric, and the last good set stays.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use imsgate_ims::id_token::RsaPublicKey;
use imsgate_ims::jwk::{self, KeyMaterial, KeyRefusal, KeyUse};
use jsonwebtoken::DecodingKey;
use parking_lot::RwLock;
use tokio::time::Instant;
use url::Url;

use crate::metrics::Metrics;

/// Unknown-kid refetches allowed back to back after a quiet spell.
const REFETCH_BURST: u32 = 4;
/// One refetch is earned back this often; under a sustained storm of bogus kids this is the
/// longest a genuinely rotated key waits, since every refetch also brings in the new key.
const REFETCH_REFILL: Duration = Duration::from_secs(3);
/// Minimum spacing between refetches, whatever the budget.
const REFETCH_SPACING: Duration = Duration::from_secs(1);
/// Keys are reloaded on a lookup once this old.
const MAX_AGE: Duration = Duration::from_secs(3600);
const MAX_JWKS_BYTES: usize = 64 * 1024;

/// A verification key from the set, with what it may be used for.
#[derive(Clone)]
pub struct JwksKey {
    usage: Arc<KeyUse>,
    /// For caller tokens (RS256 or ES256, through jsonwebtoken).
    pub key: Arc<DecodingKey>,
    /// The raw RSA components, for the id_token verifier in `imsgate-ims`.
    pub rsa: Option<Arc<RsaPublicKey>>,
}

impl std::fmt::Debug for JwksKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksKey")
            .field("kty", &self.usage.kty)
            .finish()
    }
}

/// Why no key was handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// No key with that `kid` (after the refetch the budget allowed).
    Unknown,
    /// A key with that `kid` exists but may not verify this algorithm.
    NotUsable(KeyRefusal),
}

/// The unknown-kid refetch budget: a token bucket of [`REFETCH_BURST`] refilled one per
/// [`REFETCH_REFILL`], with at least [`REFETCH_SPACING`] between refetches. Pure, so it is tested
/// with plain instants.
#[derive(Debug)]
struct RefetchBudget {
    tokens: u32,
    refilled_at: Option<Instant>,
    last: Option<Instant>,
}

impl Default for RefetchBudget {
    fn default() -> Self {
        Self {
            tokens: REFETCH_BURST,
            refilled_at: None,
            last: None,
        }
    }
}

impl RefetchBudget {
    fn try_take(&mut self, now: Instant) -> bool {
        let since = self.refilled_at.get_or_insert(now);
        let earned =
            now.saturating_duration_since(*since).as_millis() / REFETCH_REFILL.as_millis().max(1);
        let earned = u32::try_from(earned).unwrap_or(u32::MAX);
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(REFETCH_BURST);
            *since += REFETCH_REFILL * earned;
        }
        if self.tokens >= REFETCH_BURST {
            // A full bucket earns nothing while it waits.
            self.refilled_at = Some(now);
        }
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < REFETCH_SPACING)
            || self.tokens == 0
        {
            return false;
        }
        self.tokens -= 1;
        self.last = Some(now);
        true
    }
}

#[derive(Default)]
struct Snapshot {
    keys: HashMap<String, JwksKey>,
    fetched_at: Option<Instant>,
    /// When the last fetch was attempted, and whether it failed.
    attempted_at: Option<Instant>,
    failed: bool,
    budget: RefetchBudget,
}

/// A cached key set. Cheap to clone: clones share the set.
#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

struct Inner {
    url: Url,
    http: reqwest::Client,
    snapshot: RwLock<Snapshot>,
    /// Serialises fetches so concurrent misses cause one request.
    fetch_lock: tokio::sync::Mutex<()>,
    /// A background reload of a stale set is under way.
    reloading: std::sync::atomic::AtomicBool,
    /// A set older than this is reloaded ([`MAX_AGE`]; shorter in tests).
    max_age: Duration,
    metrics: Arc<Metrics>,
    /// The request timeout, named when a fetch times out.
    timeout: Duration,
    /// Whose keys these are, for the fetch metric: [`JwksSource`].
    source: &'static str,
}

/// Whose key set a cache holds, as the `source` label of `imsgate_jwks_fetches_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksSource {
    /// IMS's keys, for consent and sign-in id_tokens.
    Ims,
    /// The partner's caller-token keys.
    Caller,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &self.inner.url.as_str())
            .finish()
    }
}

/// Why a fetched set was not used; the code is the metric label.
#[derive(Debug)]
enum LoadError {
    Fetch(String),
    Refused(jwk::JwksError),
}

impl LoadError {
    fn code(&self) -> &'static str {
        match self {
            Self::Fetch(_) => "fetch",
            Self::Refused(e) => e.code(),
        }
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fetch(e) => f.write_str(e),
            Self::Refused(e) => write!(f, "{e}"),
        }
    }
}

impl JwksCache {
    pub fn new(
        url: Url,
        timeout: Duration,
        metrics: Arc<Metrics>,
        source: JwksSource,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                url,
                http,
                snapshot: RwLock::default(),
                fetch_lock: tokio::sync::Mutex::new(()),
                reloading: std::sync::atomic::AtomicBool::new(false),
                max_age: MAX_AGE,
                metrics,
                source: match source {
                    JwksSource::Ims => "ims",
                    JwksSource::Caller => "caller",
                },
                timeout,
            }),
        })
    }

    #[cfg(test)]
    fn with_max_age(url: Url, timeout: Duration, max_age: Duration) -> Self {
        let mut c = Self::new(url, timeout, Arc::new(Metrics::new()), JwksSource::Ims).unwrap();
        Arc::get_mut(&mut c.inner).unwrap().max_age = max_age;
        c
    }

    /// The key for `kid` if it may verify a token signed with `alg` (the header's, already on the
    /// verifier's allow-list).
    pub async fn key_for(&self, kid: &str, alg: &str) -> Result<JwksKey, KeyError> {
        let key = self.key(kid).await.ok_or(KeyError::Unknown)?;
        key.usage.permits(alg).map_err(KeyError::NotUsable)?;
        Ok(key)
    }

    /// The key for `kid`, fetching the set if it was never loaded or lacks that kid (then within
    /// the refetch budget). A known kid in a stale set is served at once while the set reloads in
    /// the background, so a slow or hanging key server never holds up tokens whose key is known.
    async fn key(&self, kid: &str) -> Option<JwksKey> {
        let arrived = Instant::now();
        {
            let snap = self.inner.snapshot.read();
            if let Some(k) = snap.keys.get(kid) {
                let stale = snap
                    .fetched_at
                    .is_none_or(|t| t.elapsed() >= self.inner.max_age);
                let k = k.clone();
                drop(snap);
                if stale {
                    self.reload_in_background();
                }
                return Some(k);
            }
        }
        let _guard = self.inner.fetch_lock.lock().await;
        {
            let mut snap = self.inner.snapshot.write();
            // A fetch that started after this lookup arrived already answers it.
            if snap.attempted_at.is_some_and(|t| t >= arrived) {
                return snap.keys.get(kid).cloned();
            }
            let now = Instant::now();
            let fresh = snap
                .fetched_at
                .is_some_and(|t| now.saturating_duration_since(t) < self.inner.max_age);
            let known = snap.keys.get(kid).cloned();
            match known {
                Some(k) if fresh => return Some(k),
                // Unknown kid in a fresh set: a refetch within the budget.
                None if fresh => {
                    if !snap.budget.try_take(now) {
                        return None;
                    }
                }
                // Never loaded or stale: a routine load, unless the last attempt failed, in which
                // case retries also come out of the budget so failures cannot become a storm.
                k => {
                    if snap.failed && !snap.budget.try_take(now) {
                        return k;
                    }
                }
            }
        }
        self.load().await;
        self.inner.snapshot.read().keys.get(kid).cloned()
    }

    /// Starts one reload of a stale set unless one is under way; after a failed load, reloads
    /// come out of the refetch budget, so a failing key server is not retried in a loop.
    fn reload_in_background(&self) {
        use std::sync::atomic::Ordering;
        if self.inner.reloading.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut snap = self.inner.snapshot.write();
            if snap.failed && !snap.budget.try_take(Instant::now()) {
                self.inner.reloading.store(false, Ordering::Release);
                return;
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            {
                let _guard = this.inner.fetch_lock.lock().await;
                let fresh = this
                    .inner
                    .snapshot
                    .read()
                    .fetched_at
                    .is_some_and(|t| t.elapsed() < this.inner.max_age);
                if !fresh {
                    this.load().await;
                }
            }
            this.inner.reloading.store(false, Ordering::Release);
        });
    }

    /// Fetches the set and installs it, or keeps the previous one and records the failure. Must
    /// be called with `fetch_lock` held.
    async fn load(&self) {
        let result = self.fetch().await;
        let mut snap = self.inner.snapshot.write();
        let now = Instant::now();
        snap.attempted_at = Some(now);
        match result {
            Ok(keys) => {
                self.inner.metrics.jwks_fetch(self.inner.source, "ok");
                snap.keys = keys;
                snap.fetched_at = Some(now);
                snap.failed = false;
            }
            Err(e) => {
                self.inner.metrics.jwks_load_failure(e.code());
                self.inner.metrics.jwks_fetch(self.inner.source, e.code());
                tracing::warn!(url = %crate::net_error::shown_url(&self.inner.url), reason = e.code(), error = %e, "JWKS not loaded; keeping the previous keys");
                snap.failed = true;
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, JwksKey>, LoadError> {
        let fetch = |e: String| LoadError::Fetch(e);
        // Names the URL and the cause (DNS, refused, TLS, timeout).
        let net = |e: reqwest::Error| {
            let t = self.inner.timeout;
            fetch(crate::net_error::describe(
                "the JWKS",
                &e,
                &self.inner.url,
                (t, t),
            ))
        };
        let mut resp = self
            .inner
            .http
            .get(self.inner.url.clone())
            .send()
            .await
            .map_err(net)?;
        if !resp.status().is_success() {
            return Err(fetch(format!("HTTP {}", resp.status().as_u16())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(net)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(fetch("JWKS too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        let set = jwk::parse_set(&body).map_err(LoadError::Refused)?;
        let mut keys = HashMap::new();
        for k in set {
            if let Some(key) = usable(&k) {
                keys.insert(k.kid, key);
            }
        }
        Ok(keys)
    }
}

/// The key material as verifiers take it; `None` for keys no verifier here can use (RSA under
/// 2048 bits, curves other than P-256, bad encodings).
fn usable(k: &jwk::Jwk) -> Option<JwksKey> {
    let (key, rsa) = match &k.material {
        KeyMaterial::Rsa { n, e } => {
            let rsa = RsaPublicKey::from_jwk_components(n, e)?;
            (DecodingKey::from_rsa_components(n, e).ok()?, Some(rsa))
        }
        KeyMaterial::Ec { crv, x, y } if crv == "P-256" => {
            (DecodingKey::from_ec_components(x, y).ok()?, None)
        }
        KeyMaterial::Ec { .. } => return None,
    };
    Some(JwksKey {
        usage: Arc::new(k.usage.clone()),
        key: Arc::new(key),
        rsa: rsa.map(Arc::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed fetch names the URL and the cause, for the warning it is logged with.
    #[tokio::test]
    async fn a_failed_fetch_names_the_url_and_the_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url: Url = format!("http://127.0.0.1:{port}/ims/keys").parse().unwrap();
        let cache = JwksCache::new(
            url,
            Duration::from_secs(2),
            Arc::new(Metrics::new()),
            JwksSource::Ims,
        )
        .unwrap();
        let Err(e) = cache.fetch().await else {
            panic!("nothing listens there")
        };
        assert_eq!(
            e.to_string(),
            format!(
                "cannot reach the JWKS at http://127.0.0.1:{port}/ims/keys: connection refused (nothing is listening on that port)"
            )
        );
    }

    /// A key server that hangs once the set is stale: known keys are still served at once while
    /// one reload waits in the background, and the reload installs the set when it answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_set_serves_known_keys_at_once_while_it_reloads() {
        use imsgate_emulator::{Emulator, EmulatorConfig, Endpoint, Fault};
        let emulator = Emulator::new(EmulatorConfig::default())
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let url: Url = format!("{}/ims/keys", emulator.base_url()).parse().unwrap();
        let set: serde_json::Value = reqwest::get(url.clone())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let kid = set["keys"][0]["kid"].as_str().unwrap().to_owned();
        let cache =
            JwksCache::with_max_age(url, Duration::from_secs(10), Duration::from_millis(200));
        assert!(cache.key(&kid).await.is_some());
        let loads = emulator.count(Endpoint::Keys);

        emulator.set_fault(Endpoint::Keys, Fault::latency(Duration::from_secs(3)));
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..20 {
            let t = std::time::Instant::now();
            assert!(cache.key(&kid).await.is_some());
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "a known key waited {:?} for a stale set's reload",
                t.elapsed()
            );
        }
        // One reload is under way, however many lookups saw the stale set.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(emulator.count(Endpoint::Keys), loads + 1);
    }

    /// A storm of bogus kids gets at most the burst plus one refetch per refill period, and a
    /// refetch is always available again within the refill period (so a real rotation is seen).
    #[test]
    fn the_refetch_budget_bounds_storms_and_recovers_quickly() {
        let start = Instant::now();
        let mut b = RefetchBudget::default();
        // Ten minutes of one lookup every 10 ms.
        let mut granted = Vec::new();
        for i in 0..60_000u64 {
            let t = start + Duration::from_millis(i * 10);
            if b.try_take(t) {
                granted.push(t);
            }
        }
        let allowed = REFETCH_BURST as u64 + 600 / REFETCH_REFILL.as_secs();
        assert!(
            granted.len() as u64 <= allowed,
            "{} refetches, at most {allowed}",
            granted.len()
        );
        for w in granted.windows(2) {
            let gap = w[1] - w[0];
            assert!(gap >= REFETCH_SPACING, "spacing {gap:?}");
            assert!(gap <= REFETCH_REFILL, "a refetch waited {gap:?}");
        }
        // After a quiet spell the burst is back: refetches one spacing apart.
        let later = start + Duration::from_secs(3600);
        let mut b2 = b;
        let quick: Vec<bool> = (0..REFETCH_BURST as u64)
            .map(|i| b2.try_take(later + REFETCH_SPACING * i as u32))
            .collect();
        assert!(quick.iter().all(|g| *g), "{quick:?}");
        // Never two within the spacing.
        let mut b3 = RefetchBudget::default();
        assert!(b3.try_take(start));
        assert!(!b3.try_take(start + REFETCH_SPACING - Duration::from_millis(1)));
        assert!(b3.try_take(start + REFETCH_SPACING));
    }
}
