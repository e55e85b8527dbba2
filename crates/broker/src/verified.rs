//! A bounded cache of caller tokens that already passed verification, so a browser polling with
//! the same caller token costs a hash lookup instead of a signature check and two JSON parses.
//!
//! Only successes are cached, expiry is re-checked on every hit, and the size is capped, so the
//! cache can neither extend a token's life nor be grown without bound by an attacker (who cannot
//! produce tokens that verify). Entries are keyed by the token's SHA-256, not the token: each
//! entry is a fixed [`ENTRY_BYTES`] however large the token, and hashing needs no allocation.

use aws_lc_rs::digest::{SHA256, digest};
use dashmap::DashMap;

use crate::caller_auth::Caller;

/// Most entries kept. Past this, expired entries are swept; if still full, new ones are not cached.
const MAX_ENTRIES: usize = 50_000;

/// SHA-256 of the whole compact token. A collision would need a second token with the same digest,
/// which SHA-256's collision resistance rules out.
type TokenDigest = [u8; 32];

/// The size of one entry's key and value, before the map's own per-slot overhead.
pub const ENTRY_BYTES: usize = std::mem::size_of::<(TokenDigest, Verified)>();

#[derive(Debug, Clone, Copy)]
pub struct Verified {
    pub caller: Caller,
    /// `exp` in seconds since the epoch.
    pub exp: u64,
}

#[derive(Debug, Default)]
pub struct VerifiedCache {
    map: DashMap<TokenDigest, Verified>,
    /// When a full cache was last swept (seconds): at most one sweep a second, so a cache full
    /// of live entries does not cost every new verification a pass over all of them.
    swept_at: std::sync::atomic::AtomicU64,
}

fn key(token: &str) -> TokenDigest {
    let d = digest(&SHA256, token.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

impl VerifiedCache {
    /// The cached result for `token` if it is still within `exp` (plus `leeway`) at `now`.
    pub fn get(&self, token: &str, now: u64, leeway: u64) -> Option<Verified> {
        let k = key(token);
        let hit = self.map.get(&k)?;
        if hit.exp.saturating_add(leeway) > now {
            return Some(*hit);
        }
        drop(hit);
        self.map.remove(&k);
        None
    }

    pub fn insert(&self, token: &str, verified: Verified, now: u64) {
        if self.map.len() >= MAX_ENTRIES {
            use std::sync::atomic::Ordering;
            let last = self.swept_at.load(Ordering::Relaxed);
            if now > last
                && self
                    .swept_at
                    .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                self.map.retain(|_, v| v.exp > now);
            }
            if self.map.len() >= MAX_ENTRIES {
                return;
            }
        }
        self.map.insert(key(token), verified);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            token_id: uuid::Uuid::from_u128(7),
        }
    }

    #[test]
    fn hits_only_until_expiry() {
        let c = VerifiedCache::default();
        c.insert(
            "t",
            Verified {
                caller: caller(),
                exp: 100,
            },
            50,
        );
        assert_eq!(c.get("t", 99, 0).unwrap().caller, caller());
        assert!(c.get("t", 100, 0).is_none());
        assert!(c.is_empty(), "expired entries are dropped on lookup");
        assert!(c.get("other", 0, 0).is_none());
    }

    #[test]
    fn stays_bounded() {
        let c = VerifiedCache::default();
        for i in 0..MAX_ENTRIES + 10 {
            c.insert(
                &format!("t{i}"),
                Verified {
                    caller: caller(),
                    exp: 1000,
                },
                0,
            );
        }
        assert_eq!(c.len(), MAX_ENTRIES);
        // Once the old ones expire, a sweep makes room.
        c.insert(
            "fresh",
            Verified {
                caller: caller(),
                exp: 5000,
            },
            2000,
        );
        assert_eq!(c.len(), 1);
    }
}
