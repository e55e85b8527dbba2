//! A JWKS fetched from a configured URL, cached, with one rate-limited refetch on an unknown `kid`
//! so key rotation works without letting a stream of bogus kids hammer the key server.
//!
//! Invariant: keys come only from the configured URL, never from a token's header.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use parking_lot::RwLock;
use tokio::time::Instant;
use url::Url;

/// Minimum spacing between refetches triggered by unknown kids. A routine load does not count, so
/// a key rotated just after a load is picked up at once.
const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Keys are refetched in the background of a lookup once this old.
const MAX_AGE: Duration = Duration::from_secs(3600);
const MAX_JWKS_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct JwksKey {
    pub key: Arc<DecodingKey>,
    pub family: jsonwebtoken::AlgorithmFamily,
    /// The raw RSA components, for the id_token verifier in `imsgate-ims`.
    pub rsa: Option<Arc<imsgate_ims::id_token::RsaPublicKey>>,
}

impl std::fmt::Debug for JwksKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksKey")
            .field("family", &self.family)
            .finish()
    }
}

#[derive(Default)]
struct Snapshot {
    keys: HashMap<String, JwksKey>,
    fetched_at: Option<Instant>,
    /// When an unknown kid last forced a refetch.
    forced_at: Option<Instant>,
}

/// A cached key set.
pub struct JwksCache {
    url: Url,
    http: reqwest::Client,
    snapshot: RwLock<Snapshot>,
    /// Serialises fetches so concurrent misses cause one request.
    fetch_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &self.url.as_str())
            .finish()
    }
}

impl JwksCache {
    pub fn new(url: Url, timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            url,
            http,
            snapshot: RwLock::default(),
            fetch_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The key for `kid`, fetching the set if it is absent, stale, or lacks that kid (at most once
    /// per [`REFETCH_INTERVAL`]).
    pub async fn key(&self, kid: &str) -> Option<JwksKey> {
        {
            let snap = self.snapshot.read();
            let fresh = snap.fetched_at.is_some_and(|t| t.elapsed() < MAX_AGE);
            if let Some(k) = snap.keys.get(kid)
                && fresh
            {
                return Some(k.clone());
            }
        }
        let _guard = self.fetch_lock.lock().await;
        // Another caller may have fetched while we waited for the lock.
        let forced = {
            let snap = self.snapshot.read();
            let fresh = snap.fetched_at.is_some_and(|t| t.elapsed() < MAX_AGE);
            let recently_forced = snap
                .forced_at
                .is_some_and(|t| t.elapsed() < REFETCH_INTERVAL);
            match snap.keys.get(kid) {
                Some(k) if fresh || recently_forced => return Some(k.clone()),
                // Known but stale: a routine reload, keeping the old key if it fails.
                Some(_) => false,
                // Unknown kid: one forced refetch per interval, whatever kids callers send.
                None if recently_forced => return None,
                None => fresh,
            }
        };
        let result = self.fetch().await;
        let mut snap = self.snapshot.write();
        let now = Instant::now();
        if forced {
            snap.forced_at = Some(now);
        }
        match result {
            Ok(keys) => {
                snap.keys = keys;
                snap.fetched_at = Some(now);
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed");
                // Keep the old keys; a failed load counts as a forced fetch so failures cannot be
                // turned into a request storm against the key server.
                snap.forced_at = Some(now);
            }
        }
        snap.keys.get(kid).cloned()
    }

    async fn fetch(&self) -> Result<HashMap<String, JwksKey>, String> {
        let mut resp = self
            .http
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err("JWKS too large".into());
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("invalid JWKS: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            // Keys we cannot use (other types, encryption keys) are skipped, not fatal.
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                let (family, rsa) = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(p) => (
                        jsonwebtoken::AlgorithmFamily::Rsa,
                        imsgate_ims::id_token::RsaPublicKey::from_jwk_components(&p.n, &p.e)
                            .map(Arc::new),
                    ),
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => {
                        (jsonwebtoken::AlgorithmFamily::Ec, None)
                    }
                    _ => continue,
                };
                keys.insert(
                    kid,
                    JwksKey {
                        key: Arc::new(key),
                        family,
                        rsa,
                    },
                );
            }
        }
        Ok(keys)
    }
}
